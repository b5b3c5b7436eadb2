"""The README's "Pipelines" block runs as written: two fairing functions as KFP components,
compiled to pipeline YAML and run by kfp.local's DockerRunner on the real Docker engine, the
images built on the test base image and pushed to the loopback registry."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

import pytest

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")

ROOT = Path(__file__).resolve().parents[2]


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    marker = "<!-- pipelines: executed as written by tests/integration/test_readme_pipelines.py -->"
    assert marker in text
    return re.search(r"```python\n(.*?)```", text.split(marker, 1)[1], flags=re.S).group(1)


def test_the_readme_pipelines_block_runs(registry, base_image, docker_engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    env.update(FAIRING_BASE_IMAGE=str(base_image), FAIRING_REGISTRY=registry.address,
               DOCKER_HOST=docker_engine.base_url, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    block = _block()
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.splitlines()[-1] == re.search(r"# prints (\S+)", block).group(1)
        spec = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
        assert sorted(spec["deploymentSpec"]["executors"]) == ["exec-evaluate", "exec-train"]
    finally:
        for ref in set(re.findall(rf"{re.escape(registry.address)}/\S+@sha256:[0-9a-f]{{64}}",
                                  (tmp_path / "pipeline.yaml").read_text() if (tmp_path / "pipeline.yaml").exists()
                                  else "")):
            docker_engine.run("image", "rm", "-f", ref, check=False)
