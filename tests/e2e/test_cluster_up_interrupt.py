"""An interrupted tests/cluster/up leaves no build process behind, and the next up
resumes from what was built. Runs `up --build-only` against a throwaway state directory
(the real cluster is not touched), interrupts it while `go build` of the Kubernetes
binary runs, and looks for any survivor of the build's process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLUSTER_DIR

pytestmark = [pytest.mark.local_cluster, pytest.mark.exclusive]  # a Go build: both cores


def _descendants(root: int) -> dict[int, int]:
    """pid -> process group of every live descendant of `root`."""
    parent, pgid = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(d.name)], pgid[int(d.name)] = int(fields[1]), int(fields[2])
    found, todo = {}, [root]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found[child] = pgid[child]
                todo.append(child)
    return found


def _alive_in_groups(groups: set[int]) -> list[str]:
    alive = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:
                alive.append(f"{d.name}: {cmd[:200]}")
    return alive


def _start_up(state: Path) -> subprocess.Popen:
    # Without the operators: the Kubernetes and CoreDNS builds are enough to interrupt and resume.
    env = {**os.environ, "FAIRING_CLUSTER_STATE": str(state), "FAIRING_CLUSTER_SKIP_OPERATORS": "1",
           "PATH": os.environ["PATH"] + ":/usr/local/go/bin"}
    return subprocess.Popen([str(CLUSTER_DIR / "up"), "--build-only"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _interrupt_during_k8s_build(state: Path, sig: int) -> None:
    up = _start_up(state)
    log = state / "logs" / "up.log"
    deadline = time.monotonic() + 300
    builders: dict[int, int] = {}
    while time.monotonic() < deadline:
        # pause builds in seconds: once it is done, the k8s build (minutes) is under way.
        if log.is_file() and "building k8s" in log.read_text() and (state / "bin" / "pause.stamp").is_file():
            builders = {p: g for p, g in _descendants(up.pid).items() if g != os.getpgid(up.pid)}
            if any(Path(f"/proc/{p}/comm").read_text().strip() in ("go", "compile", "link")
                   for p in builders if Path(f"/proc/{p}").exists()):
                break
        assert up.poll() is None, f"up ended before the k8s build started:\n{up.stderr.read()}"
        time.sleep(0.2)
    else:
        pytest.fail("the k8s build did not start within 300 s")
    time.sleep(2)  # let go start its compilers
    groups = {g for g in _descendants(up.pid).values() if g != os.getpgid(up.pid)} | set(builders.values())
    os.kill(up.pid, sig)
    up.wait(60)
    deadline = time.monotonic() + 20
    while (left := _alive_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"build processes left after {signal.Signals(sig).name} to up:\n" + "\n".join(left)
    assert not (state / "bin" / "k8s").exists()


def test_interrupted_up_leaves_no_build_process_and_resumes(tmp_path):
    state = tmp_path / "state"
    _interrupt_during_k8s_build(state, signal.SIGTERM)
    assert "terminated" in (state / "logs" / "up.log").read_text()
    _interrupt_during_k8s_build(state, signal.SIGKILL)  # no trap runs: the parent-death signal ends the build

    up = _start_up(state)
    _, err = up.communicate(timeout=1500)
    assert up.returncode == 0, err[-3000:]
    log = (state / "logs" / "up.log").read_text()
    assert "build pause: up to date" in log  # resumed: what was built before is kept
    assert (state / "bin" / "k8s").is_file() and os.access(state / "bin" / "k8s", os.X_OK)
