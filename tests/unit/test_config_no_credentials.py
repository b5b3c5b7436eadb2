"""``fairing config`` shows each setting's value: a registry or base image with credentials in
it (``user:password@host``, ``token@host``), from a settings file or the environment, is refused
without the secret appearing anywhere (text or JSON, stdout or stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairing import ConfigurationError
from fairing.settings import resolve

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2SECRETvalue"


def _config(cwd: Path, *args: str, env: dict = {}) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    return subprocess.run([sys.executable, "-m", "fairing", "config", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60,
                          env={**clean, "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd / "xdg"),
                               "PYTHONPATH": str(REPO), **env})


@pytest.mark.parametrize("setting, value", [
    ("registry", f"u:{SECRET}@reg.example.com:5000"),
    ("registry", f"https://u:{SECRET}@reg.example.com/team"),
    ("registry", f"{SECRET}@reg.example.com"),
    ("base_image", f"https://bob:{SECRET}@reg.example.com/img:1"),
    ("insecure_registries", [f"u:{SECRET}@reg.example.com:5000"]),
])
@pytest.mark.parametrize("output", ["text", "json"])
def test_credentials_in_a_settings_file_are_refused_and_never_printed(tmp_path, setting, value, output):
    shown = f'"{value}"' if isinstance(value, str) else f'["{value[0]}"]'
    (tmp_path / "pyproject.toml").write_text(f"[tool.fairing]\n{setting} = {shown}\n")
    proc = _config(tmp_path, "--output", output)
    assert proc.returncode != 0
    assert SECRET not in proc.stdout + proc.stderr
    assert "has credentials in it" in proc.stdout + proc.stderr and "docker login" in proc.stdout + proc.stderr


def test_credentials_in_the_environment_are_refused_and_never_printed(tmp_path):
    proc = _config(tmp_path, env={"FAIRING_REGISTRY": f"https://x:{SECRET}@r.io"})
    assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr
    assert "FAIRING_REGISTRY" in proc.stderr
    with pytest.raises(ConfigurationError) as info:
        resolve({"registry": f"x:{SECRET}@r.io"}, cwd=tmp_path, environ={})
    assert SECRET not in str(info.value)


def test_a_digest_is_not_taken_for_credentials(tmp_path):
    image = "python:3.11@sha256:" + "a" * 64
    (tmp_path / "pyproject.toml").write_text(f'[tool.fairing]\nbase_image = "{image}"\nregistry = "r.io:5000/t"\n')
    proc = _config(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert image in proc.stdout and "r.io:5000/t" in proc.stdout
