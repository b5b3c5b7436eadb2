"""A settings file that is not a readable regular file (a link loop, a dangling link, a pipe, a
device, a directory) or is megabytes long is a one-line ConfigurationError naming it; it was
skipped silently (the settings the user wrote did not apply and nothing said so) and a pipe or
a huge file could hang or fill memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairing import ConfigurationError
from fairing.settings import resolve

REPO = Path(__file__).resolve().parents[2]


def _make(kind: str, path: Path) -> str:
    if kind == "loop":
        path.symlink_to(path.name)
        return "Too many levels of symbolic links"
    if kind == "dangling":
        path.symlink_to("nowhere.toml")
        return "No such file"
    if kind == "fifo":
        os.mkfifo(path)
        return "not a regular file"
    if kind == "device":
        path.symlink_to("/dev/zero")
        return "not a regular file"
    if kind == "directory":
        path.mkdir()
        return "not a regular file"
    path.write_bytes(b"#" * (2 << 20))
    return "a settings file is a few lines"


@pytest.mark.parametrize("name", ["fairing.toml", "pyproject.toml"])
@pytest.mark.parametrize("kind", ["loop", "dangling", "fifo", "device", "directory", "huge"])
def test_a_hostile_settings_file_is_a_typed_error_naming_it(tmp_path, name, kind):
    says = _make(kind, tmp_path / name)
    with pytest.raises(ConfigurationError, match=says) as info:
        resolve(cwd=tmp_path, environ={})
    assert str(tmp_path / name) in str(info.value)


def test_the_cli_says_it_in_one_line_and_does_not_hang_on_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "fairing.toml")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    proc = subprocess.run([sys.executable, "-m", "fairing", "config"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**clean, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"fairing: error: {tmp_path / 'fairing.toml'} is not a regular file; "
                                                "a settings file must be one. Remove it."]
