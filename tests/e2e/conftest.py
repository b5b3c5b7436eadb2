"""Fixtures for the end-to-end tier: a real Kubernetes cluster.

The cluster is started before pytest, never by it: ``tests/run`` runs
``tests/cluster/up`` as an explicit step (a cold build takes about 20 minutes,
which no per-test timeout should count), so these fixtures only connect.

* ``kubeconfig`` (session): ``$KUBECONFIG`` when set (kind, minikube, a cloud
  cluster...), else ``<state>/kubeconfig`` of the local cluster
  (``<state>`` = ``$FAIRING_CLUSTER_STATE`` or ``/var/lib/fairing-cluster``),
  which must answer.
* ``registry_address`` (session): ``$FAIRING_TEST_REGISTRY`` when set, else the
  local cluster's ``<state>/registry``; pods must be able to pull from it.
* ``node_exec`` (session): the argv prefix that runs a server where the
  cluster's pods can reach it (inside the local cluster's network namespace).
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


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def local_cluster_in_use() -> bool:
    """True when the tests run against tests/cluster/up's cluster (KUBECONFIG unset, or naming
    its kubeconfig)."""
    env = os.environ.get("KUBECONFIG")
    return not env or Path(env.split(os.pathsep)[0]).resolve() == (STATE / "kubeconfig").resolve()


def _local_api_answers(kubeconfig: Path) -> str | None:
    """None when the local cluster's API server answers, else why not."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure means "not running"; reported as such
        return f"{api.configuration.host} does not answer ({e})"
    finally:
        api.close()
    return None


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG")
    if env:
        path = env.split(os.pathsep)[0]
        if not Path(path).is_file():
            pytest.fail(f"KUBECONFIG={env!r} does not name a file; unset it to use the local test cluster")
        return path
    path = STATE / "kubeconfig"
    why = f"{path} does not exist" if not path.is_file() else _local_api_answers(path)
    if why:
        pytest.fail(f"the local test cluster is not running: {why}. Start it with `tests/cluster/up` "
                    f"(tests/run does, before pytest; logs in {STATE}/logs), or set KUBECONFIG to another cluster.")
    return str(path)


@pytest.fixture(scope="session")
def node_exec(kubeconfig) -> list[str]:
    """Prefix for a server the pods must reach: inside the local cluster's network
    namespace (it has the node address); nothing with another cluster."""
    if not local_cluster_in_use():
        return []
    netns = (STATE / "netns").read_text().strip()
    return ["nsenter", f"--net={netns}"]


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


def pod_log(core_v1, name: str, namespace: str, **kwargs) -> str:
    """A pod's log as text. The kubernetes client before v31 turns a log that happens to be
    one JSON document into a Python repr (``{'a': 1}``) unless the raw response is read."""
    response = core_v1.read_namespaced_pod_log(name, namespace, _preload_content=False, **kwargs)
    return response.data.decode("utf-8", "replace")


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
