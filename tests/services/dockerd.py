"""A real Docker engine for tests: Debian's docker.io, started when it is not running.

``ensure_dockerd()`` pings the engine at ``$DOCKER_HOST`` (default
``unix:///var/run/docker.sock``) through the Docker API; when nothing answers it starts
``dockerd`` with its default socket (as root, in its own session, logging to
``~/.cache/fairing-tests/dockerd.log``) and waits until it answers. The engine is left
running afterwards: other test sessions and engineers share it. A missing
``dockerd`` binary is a clear failure, never a skip.

    python -m tests.services.dockerd     # start it by hand
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("FAIRING_TESTS_CACHE", Path.home() / ".cache" / "fairing-tests"))
DEFAULT_SOCKET = "/var/run/docker.sock"
CLUSTER_REGISTRY_NET = "10.200.0.0/24"  # tests/cluster/lib.sh: the node network


def _ping(base_url: str | None) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=5) if base_url else docker.from_env(timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def ensure_dockerd(timeout: float = 90.0) -> str:
    """Make sure a Docker engine answers; returns its base URL."""
    base_url = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if _ping(base_url):
        return base_url
    if os.environ.get("DOCKER_HOST") and not os.environ["DOCKER_HOST"].endswith(DEFAULT_SOCKET):
        raise RuntimeError(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer; start that engine or unset it.")
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(binary):
        raise RuntimeError("The Docker tests need a Docker engine and dockerd is not installed: "
                           "apt-get install -y docker.io")
    if os.geteuid() != 0:
        raise RuntimeError("No Docker engine answers, and only root can start dockerd: start it "
                           "(sudo systemctl start docker) and run the tests again.")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".dockerd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        if _ping(base_url):
            return base_url
        log_path = CACHE_DIR / "dockerd.log"
        with open(log_path, "ab") as log:
            # The local test cluster's registry (plain HTTP, in its network namespace) is
            # trusted the way a user's daemon.json would list it.
            proc = subprocess.Popen([binary, "--insecure-registry", CLUSTER_REGISTRY_NET], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while not _ping(base_url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dockerd exited with {proc.returncode} at start:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer on {base_url} within {timeout:g} s; see {log_path}")
            time.sleep(0.25)
    return base_url


class DockerEngine:
    """The engine for tests that drive the docker CLI (the append tests, the benchmark)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cli = shutil.which("docker") or "/usr/bin/docker"
        if not os.path.exists(self.cli):
            raise RuntimeError("The docker CLI is not installed: apt-get install -y docker.io")

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=self.base_url)
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")
        return proc

    def stop(self) -> None:
        """Nothing to do: the engine is shared and left running (see the module docstring)."""


def ensure_docker(timeout: float = 90.0) -> DockerEngine:
    """:func:`ensure_dockerd`, returning a handle that runs the docker CLI against it."""
    return DockerEngine(ensure_dockerd(timeout))


if __name__ == "__main__":
    print(ensure_dockerd())
