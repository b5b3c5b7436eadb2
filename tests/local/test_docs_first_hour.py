"""Every code block of docs/kubeflow-fairing.md and docs/configuration.md runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("kubeflow-fairing.md", "configuration.md")

pytestmark = pytest.mark.usefixtures("no_leftovers")


def _blocks(doc: str, lang: str) -> list[str]:
    text = (ROOT / "docs" / doc).read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.fixture
def clean_env(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    return env


@pytest.mark.parametrize("doc", DOCS)
def test_python_blocks_run(doc, workdir, clean_env):
    blocks = _blocks(doc, "python")
    assert blocks
    for block in blocks:
        proc = subprocess.run([sys.executable, "-c", block], cwd=workdir, env=clean_env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        for expected in re.findall(r'# prints "(.*?)"', block):
            assert expected in proc.stdout.splitlines(), (expected, proc.stdout)
        for expected in re.findall(r"^# (\[.*\])$", block, flags=re.M):
            assert proc.stdout.splitlines()[-1] == expected


def test_sh_blocks_run_after_the_python_ones(workdir, clean_env):
    for block in _blocks("configuration.md", "python"):
        subprocess.run([sys.executable, "-c", block], cwd=workdir, env=clean_env, check=True, capture_output=True,
                       timeout=120)
    for block in _blocks("configuration.md", "sh"):
        proc = subprocess.run(["sh", "-ec", block], cwd=workdir, env=clean_env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "accuracy 0.93" in proc.stdout.splitlines()


def test_toml_blocks_are_valid_settings(workdir, clean_env, monkeypatch):
    from fairing.settings import resolve

    monkeypatch.setenv("XDG_CONFIG_HOME", clean_env["XDG_CONFIG_HOME"])
    for var in [k for k in os.environ if k.startswith("FAIRING_")]:
        monkeypatch.delenv(var)
    pyproject, fairing_toml = _blocks("configuration.md", "toml")
    (workdir / "pyproject.toml").write_text(pyproject)
    s = resolve(cwd=workdir)
    assert (s.backend, s.namespace, s.insecure_registries) == ("kubernetes", "ml-jobs", ("registry.example.com:5000",))
    (workdir / "fairing.toml").write_text(fairing_toml)
    s = resolve(cwd=workdir)
    assert (s.registry, s.platform, s.ca_bundle) == ("localhost:5000", "linux/arm64", str(workdir / "certs/registry-ca.pem"))
