"""The in-cluster Kaniko builder on the real cluster, with each context store: the stdin
stream (no object store), S3 (moto's server, speaking the S3 protocol) and GCS
(gcp-storage-emulator, speaking the GCS JSON API). The built image then runs as a Job.

Pods here resolve no names outside the cluster, so the generated Dockerfile's pip step
installs from a real package index on the node (pypiserver serving wheels downloaded
from PyPI by this process), through the builder's ``pip_args``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from fairing import BuildError, BuildPodError, ImagePullError, TrainJob
from fairing.backends import Backend
from fairing.builders.cluster import ClusterBuilder
from fairing.builders.context_stores import GCSContext, S3Context, StreamContext
from fairing.deployers.job import JobDeployer
from fairing.events import Stage

pytestmark = pytest.mark.e2e


def _free_port(host: str, node_exec: list[str]) -> int:
    """A free TCP port on `host`, asked where the server will run (node_exec)."""
    code = f"import socket; s = socket.socket(); s.bind(({host!r}, 0)); print(s.getsockname()[1])"
    return int(subprocess.run([*node_exec, sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=60).stdout)


def _serve(argv, host, port, env=None):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return proc
        except OSError:
            assert proc.poll() is None, f"{argv[0]} exited with {proc.returncode}"
            assert time.time() < deadline, f"{argv[0]} did not listen on {host}:{port}"
            time.sleep(0.2)


@pytest.fixture(scope="session")
def node_ip(registry_address):
    return registry_address.split(":")[0]


@pytest.fixture(scope="session")
def s3_server(node_ip, node_exec):
    port = _free_port(node_ip, node_exec)
    proc = _serve([*node_exec, sys.executable, "-m", "moto.server", "-H", node_ip, "-p", str(port)], node_ip, port)
    yield f"http://{node_ip}:{port}"
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="session")
def gcs_server(node_ip, node_exec):
    port = _free_port(node_ip, node_exec)
    proc = _serve([*node_exec, sys.executable, "-m", "gcp_storage_emulator", "start", f"--host={node_ip}", f"--port={port}",
                   "--in-memory"], node_ip, port)
    yield f"{node_ip}:{port}"
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="session")
def package_index(node_ip, node_exec, tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), "tabulate==0.9.0"],
                   check=True, timeout=300)
    port = _free_port(node_ip, node_exec)
    proc = _serve([*node_exec, sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", node_ip, "--disable-fallback",
                   str(wheels)], node_ip, port)
    yield ("--index-url", f"http://{node_ip}:{port}/simple/", "--trusted-host", node_ip)
    proc.terminate()
    proc.wait(30)


def _context_files(tmp_path):
    (tmp_path / "requirements.txt").write_text("tabulate==0.9.0\n")
    (tmp_path / "job.py").write_text(textwrap.dedent("""
        import tabulate
        print(tabulate.tabulate([["built", "by kaniko"]], tablefmt="plain"))
    """))
    return str(tmp_path / "job.py")


def _build_and_run(builder, kube, script):
    lines = []
    backend = Backend("kaniko", builder, JobDeployer(kube=kube))
    handle = TrainJob(script, backend=backend, on_event=lines.append).submit()
    try:
        handle.result(timeout=900)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    assert "built  by kaniko" in logs, logs
    return lines


def _assert_clean(kube):
    assert [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items] == []
    secrets = [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items]
    assert not [s for s in secrets if s.startswith("fairing-")], secrets


@pytest.fixture
def make_builder(base_image, registry_address, kaniko_image, kube, package_index):
    def make(store, **kw):
        return ClusterBuilder(base_image, f"{registry_address}/fairing-kaniko", kaniko_image=kaniko_image,
                              context_store=store, insecure=True, kube=kube, pip_args=package_index, **kw)

    return make


def test_stream_context_builds_and_runs(make_builder, kube, tmp_path):
    builder = make_builder(StreamContext(), repository=f"stream-{uuid.uuid4().hex[:6]}")
    events = _build_and_run(builder, kube, _context_files(tmp_path))
    assert any(getattr(e, "source", "").startswith("fairing-build-") for e in events)  # Kaniko's log streamed
    _assert_clean(kube)


def test_s3_context_builds_runs_and_is_removed(make_builder, kube, s3_server, tmp_path):
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="contexts")
    store = S3Context("contexts", endpoint_url=s3_server, session=session)
    builder = make_builder(store, repository=f"s3-{uuid.uuid4().hex[:6]}")
    _build_and_run(builder, kube, _context_files(tmp_path))
    assert s3.list_objects_v2(Bucket="contexts").get("KeyCount", 0) == 0
    _assert_clean(kube)


def test_gcs_context_builds_runs_and_is_removed(make_builder, kube, gcs_server, tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{gcs_server}")
    client = storage.Client(project="fairing-tests", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"contexts-{uuid.uuid4().hex[:6]}")
    store = GCSContext(bucket.name, client=client, pod_emulator_host=f"http://{gcs_server}")
    builder = make_builder(store, repository=f"gcs-{uuid.uuid4().hex[:6]}")
    _build_and_run(builder, kube, _context_files(tmp_path))
    assert list(client.list_blobs(bucket.name)) == []
    _assert_clean(kube)


def test_failing_run_step_raises_with_its_log(make_builder, base_image, kube, tmp_path):
    dockerfile = f"FROM {base_image}\nRUN echo 'compiling the extension' && exit 3\n"
    builder = make_builder(StreamContext(), dockerfile=dockerfile, repository=f"fail-{uuid.uuid4().hex[:6]}")
    with pytest.raises(BuildError) as err:
        TrainJob(_context_files(tmp_path), backend=Backend("kaniko", builder, JobDeployer(kube=kube))).run(timeout=900)
    assert "compiling the extension" in str(err.value) and "failed" in str(err.value)
    _assert_clean(kube)


def test_executor_image_that_cannot_be_pulled_is_a_build_error(base_image, registry_address, kube, tmp_path):
    missing = f"{registry_address}/fairing-e2e/no-such-executor:v0"
    builder = ClusterBuilder(base_image, f"{registry_address}/fairing-kaniko", kaniko_image=missing,
                             repository=f"nopull-{uuid.uuid4().hex[:6]}", insecure=True, kube=kube, timeout=300)
    events = []
    with pytest.raises(BuildError) as err:
        TrainJob(_context_files(tmp_path), backend=Backend("kaniko", builder, JobDeployer(kube=kube)),
                 on_event=events.append).submit()
    assert isinstance(err.value, BuildPodError)
    assert isinstance(err.value.__cause__, ImagePullError)  # what Kubernetes said, kept as the cause
    assert "no-such-executor" in str(err.value) and "Kaniko build" in str(err.value)
    kaniko = [e.status for e in events if isinstance(e, Stage) and e.name == "kaniko"]
    assert kaniko == ["started", "failed"]
    _assert_clean(kube)
