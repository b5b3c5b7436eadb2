"""A real Podman engine for tests: ``podman system service`` on a private socket and storage.

``start_podman()`` runs Debian's podman (rootful) with its own configuration, storage,
events log and socket in a temporary directory, so it shares nothing with any other
engine on the machine, and returns a :class:`Podman` handle whose ``base_url`` is the
Docker-compatible API. Settings, all for the sandboxed test machines:

* containers use the host's network namespace (no bridge, no firewall rules);
* ``cgroupfs`` and a file events log (no systemd);
* default ulimits equal to the service's own (read from /proc after a first start), since
  a container may not raise them: podman otherwise asks for nofile/nproc maxima, which
  needs CAP_SYS_RESOURCE, and the sandboxes have none;
* registries on 127.0.0.1 may be plain HTTP.

``handle.stop()`` ends the service, removes every container and image it holds
(``podman system reset``) and deletes the directory.
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


@dataclass
class Podman:
    root: Path
    process: subprocess.Popen

    @property
    def socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict:
        return _env(self.root)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # unmounts the overlay storage and removes containers, images and volumes
        subprocess.run(["podman", "--tmpdir", str(self.root / "tmp"), "system", "reset", "--force"],
                       env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Podman":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _env(root: Path) -> dict:
    return {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
    }


def _limits(pid: int) -> dict:
    """The soft=hard values a container may have: the service process's own hard limits."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        for name, label in (("nofile", "Max open files"), ("nproc", "Max processes")):
            if line.startswith(label):
                hard = line[len(label):].split()[1]
                out[name] = hard if hard != "unlimited" else "1048576"
    return out


def _write_config(root: Path, ulimits: dict) -> None:
    limits = ", ".join(f'"{k}={v}:{v}"' for k, v in sorted(ulimits.items()))
    (root / "containers.conf").write_text(
        "[containers]\n"
        'netns = "host"\n'
        'cgroupns = "host"\n'
        'log_driver = "k8s-file"\n'
        f"default_ulimits = [{limits}]\n"
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{root}/events.log"\n'
        'runtime = "runc"\n'
        "[network]\n"
        'network_backend = "netavark"\n'
        f'network_config_dir = "{root}/networks"\n'
    )


def _serve(root: Path, timeout: float) -> Podman:
    log = open(root / "service.log", "ab")
    proc = subprocess.Popen(
        ["podman", "--tmpdir", str(root / "tmp"), "system", "service", "--time=0", f"unix://{root}/podman.sock"],
        env=_env(root), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    handle = Podman(root, proc)
    deadline = time.monotonic() + timeout
    while not handle.socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            text = (root / "service.log").read_text(errors="replace")[-3000:]
            handle.stop()
            raise RuntimeError(f"podman system service did not start (exit {proc.poll()}):\n{text}")
        time.sleep(0.1)
    return handle


def start_podman(timeout: float = 30.0) -> Podman:
    if shutil.which("podman") is None:
        raise RuntimeError("The Podman tests need podman, which is not installed: apt-get install -y podman")
    root = Path(tempfile.mkdtemp(prefix="fairing-podman-"))
    try:
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/storage"\nrunroot = "{root}/run"\n'
        )
        (root / "registries.conf").write_text(
            'unqualified-search-registries = []\n[[registry]]\nlocation = "127.0.0.1"\ninsecure = true\n'
        )
        (root / "tmp").mkdir()
        _write_config(root, {})
        probe = _serve(root, timeout)  # podman sets its own limits at start: learn them, then start for real
        ulimits = _limits(probe.process.pid)
        probe.process.terminate()
        probe.process.wait(20)
        probe.socket.unlink(missing_ok=True)
        _write_config(root, ulimits)
        return _serve(root, timeout)
    except BaseException:
        subprocess.run(["podman", "--tmpdir", str(root / "tmp"), "system", "reset", "--force"], env=_env(root),
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        raise


if __name__ == "__main__":
    with start_podman() as p:
        print(p.base_url, (p.root / "containers.conf").read_text())
