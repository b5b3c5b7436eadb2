"""Jobs, TFJobs and PyTorchJobs on the real cluster (tests/cluster), with images the append
builder pushed to the cluster's registry. Each test runs in a fresh namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

import fairing
from fairing import (ImagePullError, JobFailedError, MissingCRDError, PermissionDeniedError, TrainJob,
                     UnschedulableError, config)
from fairing.backends import Backend
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import PyTorchJobDeployer, TFJobDeployer
from fairing.kube import KubeClient

pytestmark = pytest.mark.e2e


def _left_in(kube: KubeClient) -> list[str]:
    jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    crs = [o["metadata"]["name"] for plural in ("tfjobs", "pytorchjobs")
           for o in kube.custom.list_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, plural)["items"]]
    return jobs + pods + crs


def test_decorator_returns_a_value_from_a_job(backend, kube):
    lines = []

    @fairing.train(backend=backend, timeout=600, on_event=lines.append)
    def fit(alpha):
        import os
        import platform

        print("fitting with", alpha, flush=True)
        return {"alpha": alpha * 2, "python": platform.python_version(), "runtime": os.environ.get("FAIRING_RUNTIME")}

    out = fit(0.25)
    assert out["alpha"] == 0.5 and out["python"].startswith("3.11") and out["runtime"] == "1"
    assert any(getattr(e, "line", "") == "fitting with 0.25" for e in lines)
    assert _left_in(kube) == []


def test_a_large_result_comes_back_through_the_log(backend, kube):
    @fairing.train(backend=backend, timeout=600)
    def big():
        return "x" * 200_000  # far over the 4 KiB termination message

    assert big() == "x" * 200_000


def test_remote_exception_and_failing_exit(backend, kube):
    @fairing.train(backend=backend, timeout=600)
    def broken():
        print("about to fail", flush=True)
        raise ValueError("column 'price' has NaNs")

    with pytest.raises(ValueError, match="NaNs") as err:
        fairing.train(broken.func, backend=backend, timeout=600, quiet=True)()
    assert "in broken" in str(err.value.__cause__)  # quiet: the traceback is chained, as nothing showed it

    @fairing.train(backend=backend, timeout=600)
    def exits():
        import os

        print("giving up", flush=True)
        os._exit(7)

    with pytest.raises(JobFailedError) as err:
        exits()
    assert err.value.exit_code == 7 and "giving up" in str(err.value)
    assert _left_in(kube) == []


def test_trainjob_with_script_input_files_and_requirements(backend, kube, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/rows.csv").write_text("a,1\nb,2\n")
    (tmp_path / "requirements.txt").write_text("tabulate==0.9.0\n")
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import sys, tabulate
        rows = [l.split(",") for l in open("data/rows.csv").read().split()]
        print(tabulate.tabulate(rows, headers=["k", "v"], tablefmt="github"))
        print("args", sys.argv[1:])
    """))
    handle = TrainJob(str(tmp_path / "train.py"), input_files=[str(tmp_path / "data")], args=["--epochs", "2"],
                      backend=backend).submit()
    try:
        assert handle.result(timeout=600) is None
        logs = list(handle.logs(follow=False))
        assert handle.status().phase == "Succeeded"
    finally:
        handle.delete()
    assert "| k   |   v |" in logs and "args ['--epochs', '2']" in logs
    assert _left_in(kube) == []


def test_one_liner_on_a_converted_notebook(base_image, registry_address, kubeconfig, namespace, kube, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from fairing import config\nconfig.set_deployer('job')\nconfig.run()"),
        nbformat.v4.new_code_cell("!pip list\nimport platform\nprint('notebook ran on', platform.node())"),
    ]
    path = tmp_path / "analysis.ipynb"
    nbformat.write(nb, str(path))
    events = []
    config.reset()
    try:
        config.set_deployer("job", kubeconfig=kubeconfig, namespace=namespace)
        config.set_preprocessor("notebook", notebook_file=str(path), allow_shell=True)  # for !pip list
        config.set_builder("append", base_image=base_image, registry=f"{registry_address}/fairing-e2e", insecure=True)
        config.set_options(timeout=600, on_event=events.append)
        assert config.run() is None
    finally:
        config.reset()
    assert any(getattr(e, "line", "").startswith("notebook ran on fairing-") for e in events), events
    assert _left_in(kube) == []


def test_tfjob_chief_ps_and_workers_get_tf_config(builder, kube, tmp_path):
    (tmp_path / "tf.py").write_text(textwrap.dedent("""
        import json, os
        cfg = json.loads(os.environ["TF_CONFIG"])
        print("TF_CONFIG", json.dumps(cfg, sort_keys=True))
    """))
    deployer = TFJobDeployer({"Chief": 1, "PS": 1, "Worker": 2}, kube=kube)
    handle = fairing.submit(fairing.api.preprocessor_for(str(tmp_path / "tf.py")), builder=builder, deployer=deployer)
    try:
        handle.result(timeout=600)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    configs = {}
    for line in logs:
        prefix, _, rest = line.partition("] TF_CONFIG ")
        if rest:
            configs[prefix.lstrip("[")] = json.loads(rest)
    assert set(configs) == {"chief-0", "ps-0", "worker-0", "worker-1"}, logs
    cluster = configs["worker-1"]["cluster"]
    assert len(cluster["worker"]) == 2 and len(cluster["ps"]) == 1 and len(cluster["chief"]) == 1
    assert configs["worker-1"]["task"] == {"type": "worker", "index": 1}
    assert configs["chief-0"]["task"]["type"] == "chief"
    assert _left_in(kube) == []


def test_pytorchjob_master_and_workers_get_rank_and_world_size(builder, kube, tmp_path):
    # A real rendezvous: the master accepts one connection per worker on MASTER_PORT.
    (tmp_path / "pt.py").write_text(textwrap.dedent("""
        import os, socket, time
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        print("DIST", rank, world, addr, port, flush=True)
        if rank == 0:
            server = socket.create_server(("", port))
            seen = sorted(int(server.accept()[0].recv(16)) for _ in range(world - 1))
            print("master heard from ranks", seen, flush=True)
        else:
            for _ in range(120):
                try:
                    socket.create_connection((addr, port), timeout=2).sendall(str(rank).encode())
                    break
                except OSError:
                    time.sleep(1)
    """))
    deployer = PyTorchJobDeployer({"Master": 1, "Worker": 2}, kube=kube)
    handle = fairing.submit(fairing.api.preprocessor_for(str(tmp_path / "pt.py")), builder=builder, deployer=deployer)
    try:
        handle.result(timeout=600)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    seen = {}
    for line in logs:
        prefix, _, rest = line.partition("] DIST ")
        if rest:
            rank, world, addr, port = rest.split()
            seen[prefix.lstrip("[")] = (int(rank), int(world), addr)
    assert sorted(r for r, _, _ in seen.values()) == [0, 1, 2], logs
    assert {w for _, w, _ in seen.values()} == {3}
    assert seen["master-0"][0] == 0 and {k for k in seen} == {"master-0", "worker-0", "worker-1"}
    assert "[master-0] master heard from ranks [1, 2]" in logs
    assert _left_in(kube) == []


def _run_job(builder, deployer, source: str, tmp_path: Path, timeout=600):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(source))
    return TrainJob(str(script), backend=Backend("e2e", builder, deployer)).run(timeout=timeout)


def test_a_log_that_is_one_json_document_reads_as_written(builder, kube, tmp_path):
    # The kubernetes client before v31 (kfp 2.x pins it) turns such a log into a Python repr.
    script = tmp_path / "job.py"
    script.write_text('import json\nprint(json.dumps({"accuracy": 0.9}))\n')
    handle = TrainJob(str(script), backend=Backend("e2e", builder, JobDeployer(kube=kube))).submit()
    try:
        handle.result(timeout=300)
        pods = kube.core.list_namespaced_pod(kube.namespace).items
        assert pods, "the job's pod is gone before its log was read"
        assert kube.pod_log(pods[0].metadata.name, kube.namespace).splitlines()[0] == '{"accuracy": 0.9}'
    finally:
        handle.delete()
    assert _left_in(kube) == []


def test_missing_image_is_an_image_pull_error(kube, registry_address):
    handle = JobDeployer(kube=kube).deploy(f"{registry_address}/fairing-e2e/does-not-exist:nope")
    try:
        with pytest.raises(ImagePullError) as err:
            handle.wait(300)
    finally:
        handle.delete()
    assert "does-not-exist" in str(err.value) and "pushed" in str(err.value)
    assert _left_in(kube) == []


def test_impossible_cpu_request_is_unschedulable(builder, kube, tmp_path):
    with pytest.raises(UnschedulableError, match="Insufficient cpu"):
        _run_job(builder, JobDeployer(kube=kube, mutators=[m.resources(cpu="64")]), "print('never')", tmp_path)
    assert _left_in(kube) == []


def test_memory_limit_exceeded_is_oomkilled(builder, kube, tmp_path):
    source = """
        blocks = []
        while True:
            blocks.append(bytearray(16 * 1024 * 1024))
    """
    with pytest.raises(JobFailedError, match="OOMKilled"):
        _run_job(builder, JobDeployer(kube=kube, mutators=[m.resources(memory="64Mi")]), source, tmp_path)
    assert _left_in(kube) == []


@pytest.mark.exclusive  # every TFJob in the cluster goes with the CRD
def test_tfjob_without_its_crd_is_a_clear_error(builder, kube):
    ext = kube.k8s.client.ApiextensionsV1Api(kube.api_client)
    crd = kube.to_dict(ext.read_custom_resource_definition("tfjobs.kubeflow.org"))
    ext.delete_custom_resource_definition("tfjobs.kubeflow.org")
    try:
        # Deletion waits until every TFJob in the cluster is gone (other tests' namespaces too).
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                ext.read_custom_resource_definition("tfjobs.kubeflow.org")
                time.sleep(0.5)
            except kube.k8s.client.ApiException:
                break
        else:
            pytest.fail("the TFJob CRD was still terminating after 240 s")
        with pytest.raises(MissingCRDError, match="training operator"):
            TFJobDeployer({"Worker": 1}, kube=kube).deploy("busybox")
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            crd["metadata"].pop(key, None)
        crd.pop("status", None)
        ext.create_custom_resource_definition(crd)
        deadline = time.time() + 60
        while time.time() < deadline:
            got = kube.to_dict(ext.read_custom_resource_definition("tfjobs.kubeflow.org"))
            if any(c["type"] == "Established" and c["status"] == "True" for c in got.get("status", {}).get("conditions", [])):
                break
            time.sleep(0.5)


def test_service_account_without_rights_is_permission_denied(kube):
    core = kube.core
    core.create_namespaced_service_account(kube.namespace, {"metadata": {"name": "no-rights"}})
    token = core.create_namespaced_service_account_token(
        "no-rights", kube.namespace, {"spec": {"expirationSeconds": 600}}).status.token
    configuration = kube.api_client.configuration.__class__()
    configuration.host = kube.api_client.configuration.host
    configuration.ssl_ca_cert = kube.api_client.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}", "BearerToken": f"Bearer {token}"}  # old, new clients
    weak = KubeClient(api_client=kube.k8s.client.ApiClient(configuration), namespace=kube.namespace)
    with pytest.raises(PermissionDeniedError) as err:
        JobDeployer(kube=weak).deploy("busybox")
    message = str(err.value)
    # the first thing a job needs is the Secret with its result key
    assert "no-rights" in message and "create" in message and "secrets" in message


def test_ctrl_c_deletes_the_job(base_image, registry_address, kubeconfig, namespace, kube, tmp_path):
    submitter = tmp_path / "submit.py"
    submitter.write_text(textwrap.dedent(f"""
        import fairing
        from fairing.backends import Backend
        from fairing.builders.append import AppendBuilder
        from fairing.deployers.job import JobDeployer
        from fairing.kube import KubeClient

        kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={namespace!r})
        backend = Backend("e2e", AppendBuilder({base_image!r}, {registry_address + '/fairing-e2e'!r}, insecure=True),
                          JobDeployer(kube=kube))

        @fairing.train(backend=backend, on_event=lambda e: print(e, flush=True))
        def slow():
            import time
            print("started", flush=True)
            time.sleep(600)
        slow()
    """))
    proc = subprocess.Popen([sys.executable, str(submitter)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "started" in line and "LogLine" in line:
            break
    assert kube.batch.list_namespaced_job(namespace).items, "".join(seen)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    assert "KeyboardInterrupt" in rest
    assert _left_in(kube) == []


def test_registry_credentials_become_an_image_pull_secret(backend, kube, registry_address):
    from fairing.images.auth import StaticCredentials

    host = registry_address
    deployer = JobDeployer(kube=kube, pull_credentials=StaticCredentials("robot", "s3cret", host=host))

    @fairing.train(backend=Backend("e2e", backend.builder, deployer), timeout=600, cleanup="never")
    def hello():
        return "pulled"

    handle = hello.submit()
    try:
        assert handle.result(600) == "pulled"
        job = kube.batch.read_namespaced_job(handle.name, kube.namespace)
        secrets = [s.name for s in job.spec.template.spec.image_pull_secrets or []]
        assert secrets == [f"{handle.name}-pull"]  # the job's own
        secret = kube.core.read_namespaced_secret(secrets[0], kube.namespace)
        assert [(o.kind, o.name) for o in secret.metadata.owner_references] == [("Job", handle.name)]
    finally:
        handle.delete()
    assert secret.type == "kubernetes.io/dockerconfigjson"
    config = json.loads(__import__("base64").b64decode(secret.data[".dockerconfigjson"]))
    assert set(config["auths"]) == {host}
    assert secrets[0] not in [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items]
    container = job.spec.template.spec.containers[0]
    assert all("s3cret" not in (e.value or "") for e in container.env or [])  # never a plain env var
