"""The README's ``fairing config`` / ``fairing doctor`` block, executed as written, against the
test registry, base image and Docker engine (given through FAIRING_* variables, as a user's
environment would)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group("docker-engine")


def _block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- config-doctor[^>]*-->\n```sh\n(.*?)```", readme, re.S)
    assert match, "README.md has no config-doctor block"
    return match.group(1)


def test_readme_config_and_doctor_block_runs_as_written(tmp_path, registry, base_image, docker_engine):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "project"
    work.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
           "FAIRING_REGISTRY": f"{registry.address}/team", "FAIRING_BASE_IMAGE": str(base_image),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name in ("FAIRING_BACKEND", "FAIRING_INSECURE_REGISTRIES", "FAIRING_NAMESPACE", "DOCKER_CONFIG"):
        env.pop(name, None)
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", _block()], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    toml = str(work / "fairing.toml")
    assert f"backend    = docker  ({toml})" in proc.stdout
    assert f"registry   = {registry.address}/team  (FAIRING_REGISTRY)" in proc.stdout
    assert f"settings files: {toml}" in proc.stdout
    # the docker backend's checks pass; the kubernetes one fails on the missing kubeconfig
    assert "PASS         Docker engine" in proc.stdout and "PASS         base image Python" in proc.stdout
    assert "see doctor.json" in proc.stdout
    doc = json.loads((work / "doctor.json").read_text())
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is False and checks["kubeconfig and context"]["status"] == "FAIL"
    assert "No kubeconfig at" in checks["kubeconfig and context"]["detail"]
