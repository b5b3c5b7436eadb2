"""The unit tier again on every other Python this machine has (3.9 to 3.13 but the one running
the suite), and on the oldest and newest of them also the local backend's own tests
(tests/local/test_local_backend.py, test_packaging.py, test_kubeflow_fairing_style.py): one
test per version, in that version's environment (tests/services/pythons.py: made once per
machine and dependency change, in seconds from uv's cache). The whole local tier on one
version takes some 11 minutes of a core (measured); four of them beside the parallel phase
would hold four of its six workers for that long, so the suite runs this part and
``python3 -m tests.services.pythons [3.9 ...]`` runs both whole tiers by hand.

Each version is its own xdist group (so the four spread over the workers) and runs serially
inside (``-n 0``) at a lower CPU priority (``nice``), beside the parallel phase, whose e2e and
browser tests mostly wait on the cluster and the browser: what they add to the run is measured
in README ("Times"). ``FAIRING_TEST_PYTHONS`` (interpreters, ``:``-separated) chooses others."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.services import pythons

FOUND = pythons.interpreters()
#: Workers of each version's own run: one, so the versions add one process to the machine.
INNER_WORKERS = os.environ.get("FAIRING_TEST_PYTHONS_WORKERS", "0")
#: The local tests run on the oldest and newest version: the local backend end to end.
LOCAL_CORE = ("tests/local/test_local_backend.py", "tests/local/test_packaging.py",
              "tests/local/test_kubeflow_fairing_style.py")


def test_the_machine_has_the_other_supported_pythons():
    """A missing interpreter is a failure, not a silent skip (the README names 3.9 to 3.13)."""
    if os.environ.get("FAIRING_TEST_PYTHONS"):
        assert FOUND, "FAIRING_TEST_PYTHONS names no supported interpreter"
        return
    expected = {"3.9", "3.10", "3.11", "3.12", "3.13"} - {"%d.%d" % sys.version_info[:2]}
    assert set(FOUND) == expected, f"found {sorted(FOUND)}; install the others (pyenv install 3.X)"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("version", [pytest.param(v, marks=pytest.mark.xdist_group(f"python-{v}"))
                                     for v in sorted(FOUND, key=lambda v: tuple(map(int, v.split("."))))])
def test_the_unit_tier_and_the_local_backend_pass_on(version):
    started = time.monotonic()
    venv = pythons.environment(version, FOUND[version], log=None)
    made = time.monotonic() - started
    ordered = sorted(FOUND, key=lambda v: tuple(map(int, v.split("."))))
    tiers = ("tests/unit", *(LOCAL_CORE if version in (ordered[0], ordered[-1]) else ()))
    # the README's Pipelines row imports kfp, which these environments leave out (OTHER_TIERS_ONLY)
    argv, env = pythons.test_command(venv, "-n", INNER_WORKERS, "-x", "--timeout", "600",
                                     "-k", "not Kubeflow-Pipelines", tiers=tiers)
    # TMPDIR stays the worker's own (short: a test binds an AF_UNIX socket, at most 107 bytes of path)
    proc = subprocess.run(["nice", "-n", "10", *argv], cwd=pythons.ROOT, env=env, capture_output=True, text=True,
                          timeout=1700)
    tail = "\n".join(proc.stdout.splitlines()[-40:])
    assert proc.returncode == 0, f"Python {version} (environment {made:.0f} s):\n{tail}\n{proc.stderr[-3000:]}"
    summary = re.findall(r"^=*\s*(\d+ passed.*?)\s*=*$", proc.stdout, re.M)
    assert summary and "failed" not in summary[-1], tail
    print(f"Python {version}: {summary[-1]} (environment {made:.0f} s, whole {time.monotonic() - started:.0f} s)")
