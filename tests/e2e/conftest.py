"""Fixtures for the end-to-end tier: a real Kubernetes cluster.

* ``kubeconfig`` (session): ``$KUBECONFIG`` when set (kind, minikube, a cloud
  cluster...), else ``tests/cluster/up`` is run and ``<state>/kubeconfig`` used
  (``<state>`` = ``$FAIRING_CLUSTER_STATE`` or ``/var/lib/fairing-cluster``).
* ``registry_address`` (session): ``$FAIRING_TEST_REGISTRY`` when set, else the
  local cluster's ``<state>/registry``; pods must be able to pull from it.
* ``namespace`` (function): a fresh ``fairing-e2e-<uuid>`` namespace, deleted
  (and waited for) afterwards.

A missing cluster fails the tests with a clear message; nothing is skipped.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / "tests" / "cluster"
STATE = Path(os.environ.get("FAIRING_CLUSTER_STATE", "/var/lib/fairing-cluster"))
UP_TIMEOUT = int(os.environ.get("FAIRING_CLUSTER_UP_TIMEOUT", "5400"))


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def local_cluster_in_use() -> bool:
    """True when the tests run against tests/cluster/up's cluster."""
    return not os.environ.get("KUBECONFIG")


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG")
    if env:
        path = env.split(os.pathsep)[0]
        if not Path(path).is_file():
            pytest.fail(f"KUBECONFIG={env!r} does not name a file; unset it to use the local test cluster")
        return path
    try:
        proc = subprocess.run(
            [str(CLUSTER_DIR / "up")], capture_output=True, text=True, timeout=UP_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"tests/cluster/up did not finish in {UP_TIMEOUT}s:\n{_tail(str(e.stderr or ''))}")
    if proc.returncode != 0:
        pytest.fail(
            f"tests/cluster/up failed (exit {proc.returncode}); logs in {STATE}/logs. "
            f"To use another cluster, set KUBECONFIG.\n{_tail(proc.stderr)}"
        )
    return str(STATE / "kubeconfig")


@pytest.fixture(scope="session")
def registry_address(kubeconfig) -> str:
    env = os.environ.get("FAIRING_TEST_REGISTRY")
    if env:
        return env
    f = STATE / "registry"
    if local_cluster_in_use() and f.is_file():
        return f.read_text().strip()
    pytest.fail(
        "no registry for the e2e tests: set FAIRING_TEST_REGISTRY=host:port (one the cluster's nodes "
        f"pull from over plain HTTP) when KUBECONFIG points at another cluster (looked for {f})"
    )


@pytest.fixture(scope="session")
def api_client(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core_v1):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = f"fairing-e2e-{uuid.uuid4().hex[:10]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The namespace's default service account appears shortly after creation.
    wait_until(lambda: _sa_exists(core_v1, name), 60, f"default service account in {name}")
    yield name
    core_v1.delete_namespace(name, propagation_policy="Foreground")

    def gone():
        try:
            core_v1.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404

    wait_until(gone, 180, f"deletion of namespace {name}")


def _sa_exists(core_v1, ns):
    from kubernetes.client.rest import ApiException

    try:
        core_v1.read_namespaced_service_account("default", ns)
        return True
    except ApiException:
        return False


def wait_until(cond, timeout: float, what: str, interval: float = 1.0):
    """Polls cond() until truthy; fails the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def push_appended_image(registry: str, name: str, files: dict[str, str], base: str = "python:3", cmd=None) -> str:
    """Appends one layer holding `files` (path -> text) to `registry/base` and
    pushes it as `registry/name:<tag>`. Returns the image reference."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path, text in sorted(files.items()):
            data = text.encode()
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.size = len(data)
            ti.mode = 0o755
            tar.addfile(ti, io.BytesIO(data))
    tag = uuid.uuid4().hex[:12]
    ref = f"{registry}/{name}:{tag}"
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(layer.getvalue())
        f.flush()
        args = [sys.executable, str(CLUSTER_DIR / "imgtool.py"), "push", ref, "--base", f"{registry}/{base}", "--layer", f.name]
        if cmd is not None:
            import json

            args += ["--cmd", json.dumps(cmd)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pushing {ref} failed:\n{proc.stdout}\n{proc.stderr}")
    return ref
