"""``--output json`` holds for usage errors too: a script reading fairing's stdout gets one JSON
error document (and exit code 2), whatever the mistake and wherever ``--output json`` stands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


def _fairing(args, cwd, cache):
    return subprocess.run([sys.executable, "-m", "fairing", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "XDG_CACHE_HOME": str(cache)})


@pytest.mark.parametrize("args, says", [
    (["list", "--output", "json", "--bogus"], "No such option '--bogus'"),
    (["--bogus", "list", "-o", "json"], "No such option '--bogus'"),
    (["run", "train.py", "--timeout", "soon", "--output=json"], "Invalid value for '--timeout'"),
    (["run", "-o", "json"], "Missing argument"),
    (["logs", "--output", "json"], "Missing argument 'JOB'"),
    (["list", "-o", "json", "--output", "yaml"], "'yaml' is not one of"),
    (["run", "--output", "json", "train.py", "--epochs", "3"], "The script's own options go after --"),
    (["delete", "--output", "json"], "Give a job's name or --all-finished"),
])
def test_usage_errors_with_output_json_print_one_json_error(args, says, tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    out = _fairing(args, tmp_path, tmp_path / "cache")
    assert out.returncode == 2, out
    doc = json.loads(out.stdout)  # the whole of stdout is one document
    assert doc["status"] == "Failed" and doc["exit_code"] == 2 and doc["error"] == "UsageError"
    # click before 8.2 (the newest on Python 3.9) says "No such option: --x"; 8.2 "No such option '--x'"
    click_8_2 = lambda text: re.sub(r"No such option: (--[\w-]+)", r"No such option '\1'", text)  # noqa: E731
    assert says in click_8_2(doc["message"])
    assert says in click_8_2(out.stderr)  # people still read it on stderr


def test_usage_errors_without_output_json_print_nothing_on_stdout(tmp_path):
    for args in (["list", "--bogus"], ["run", "x.py", "--", "--output", "json"], ["list", "--output", "yaml"]):
        out = _fairing(args, tmp_path, tmp_path / "cache")
        assert out.returncode == 2 and out.stdout == "", out
