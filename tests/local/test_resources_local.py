"""cpu=, memory=, gpus= on the local backend, for real: the README's block as written, a job held
to its CPUs and its memory, and the command line's flags."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fairing

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("no_leftovers")


def _readme_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- resources-usage[^>]*-->\n```python\n(.*?)```", readme, re.S)
    assert match, "README.md has no resources-usage block"
    return match.group(1)


def test_the_readme_resources_block_runs_as_written(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _readme_block()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[-2] == "1", proc.stdout  # the job saw one CPU
    assert lines[-1].startswith("memory='4GB' is not a memory quantity in Kubernetes' units. Did you mean 4G or 4Gi?")
    # the block's comments say what it prints
    block = _readme_block()
    assert "# 1: the job ran on one CPU" in block and "Did you mean 4G or 4Gi? ..." in block
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fairing-local-")]


def test_a_local_job_over_its_memory_fails_with_a_memory_error_and_under_it_runs(workdir):
    @fairing.train(backend="local", memory="256Mi", quiet=True)
    def allocate(mib: int) -> int:
        return len(bytearray(mib * 2 ** 20))

    assert allocate(16) == 16 * 2 ** 20
    with pytest.raises(MemoryError):
        allocate(1024)


def test_a_local_job_sees_its_cpus_and_gpus(workdir):
    available = len(os.sched_getaffinity(0))

    @fairing.train(backend="local", cpu="500m", gpus=0, quiet=True)
    def seen() -> tuple:
        return len(os.sched_getaffinity(0)), os.environ.get("CUDA_VISIBLE_DEVICES")

    assert seen() == (1, "")  # half a core: one CPU (a fraction cannot be held); no GPU visible

    @fairing.train(backend="local", cpu=available + 4, quiet=True)
    def all_of_them() -> int:
        return len(os.sched_getaffinity(0))

    assert all_of_them() == available  # more than the machine has: all of it


def test_the_command_line_takes_the_same_flags_and_refuses_a_bad_quantity(workdir):
    (workdir / "show.py").write_text("import os\nprint('cpus', len(os.sched_getaffinity(0)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fairing", "run", "show.py", "--cpu", "1", "--memory", "1Gi"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "cpus 1" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "fairing", "run", "show.py", "--memory", "4GB"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Error: --memory='4GB' is not a memory quantity" in proc.stderr and "Did you mean 4G or 4Gi?" in proc.stderr
    assert "Traceback" not in proc.stderr
