"""Ensure a Docker engine (Debian's docker.io) answers on the default socket.

``ensure_docker()`` returns a :class:`DockerEngine`: if ``docker info`` already works it
is used as is (and left running); otherwise ``dockerd`` is started with its log in a
temporary file, and ``stop()`` ends it again. It fails with a clear message (never
skips) when the engine cannot be had.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SOCKET = "/var/run/docker.sock"


def _docker() -> str:
    docker = shutil.which("docker") or "/usr/local/bin/docker"
    if not os.path.exists(docker):
        raise RuntimeError("The docker CLI is not installed: apt-get install -y docker.io")
    return docker


def docker_ok() -> bool:
    try:
        return subprocess.run([_docker(), "info"], capture_output=True, timeout=20).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


@dataclass
class DockerEngine:
    cli: str
    process: Optional[subprocess.Popen] = None
    log: Optional[Path] = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def ensure_docker(timeout: float = 60) -> DockerEngine:
    cli = _docker()
    if docker_ok():
        return DockerEngine(cli)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("No Docker engine answers and dockerd is not installed: apt-get install -y docker.io")
    fd, log = tempfile.mkstemp(prefix="fairing-dockerd-", suffix=".log")
    proc = subprocess.Popen([dockerd, "--host", f"unix://{SOCKET}"], stdout=fd, stderr=fd,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(fd)
    engine = DockerEngine(cli, proc, Path(log))
    deadline = time.monotonic() + timeout
    while not docker_ok():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = Path(log).read_text(errors="replace")[-3000:]
            engine.stop()
            raise RuntimeError(f"dockerd did not start (exit {proc.poll()}); its log ends with:\n{tail}")
        time.sleep(0.5)
    return engine
