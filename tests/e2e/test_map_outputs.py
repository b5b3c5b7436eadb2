"""Beyond one job, on the real cluster: files that come back as an OCI artifact and a
PredictionEndpoint that serves them straight from it, a 50 MB result, a map as one Indexed
Job, a sweep, and every replica's result of a PyTorchJob. Each test checks that nothing
is left in the namespace or in the registry afterwards."""

from __future__ import annotations

import hashlib
import json
import random
import urllib.error
import urllib.request

import pytest
from conftest import pod_log

import fairing
from fairing import MapError, PredictionEndpoint
from fairing.backends import Backend
from fairing.deployers.job import JobDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.deployers.training import PyTorchJobDeployer

pytestmark = pytest.mark.e2e


def _sklearn() -> list:
    from importlib.metadata import version

    return [f"scikit-learn=={version('scikit-learn')}"]  # the submitter's, so the model loads here too


@pytest.fixture
def outputs_backend(builder, kube):
    """The test registry speaks plain HTTP: the job pushes (and the endpoint pulls) over it."""
    return Backend("e2e", builder, JobDeployer(kube=kube, insecure_registry=True),
                   ServingDeployer(kube=kube, insecure_registry=True))


def _tags(registry_address: str, repository: str) -> list:
    try:
        with urllib.request.urlopen(f"http://{registry_address}/v2/{repository}/tags/list", timeout=30) as resp:
            return json.load(resp).get("tags") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _outputs_repo(handle) -> str:
    return handle.outputs_target.split("/", 1)[1].rsplit(":", 1)[0]


def _left_in(kube) -> list:
    ns = kube.namespace
    left = [f"job/{j.metadata.name}" for j in kube.batch.list_namespaced_job(ns).items]
    left += [f"pod/{p.metadata.name}" for p in kube.core.list_namespaced_pod(ns).items]
    left += [f"deployment/{d.metadata.name}" for d in kube.apps.list_namespaced_deployment(ns).items]
    left += [f"service/{s.metadata.name}" for s in kube.core.list_namespaced_service(ns).items]
    left += [f"secret/{s.metadata.name}" for s in kube.core.list_namespaced_secret(ns).items
             if s.metadata.name.endswith("-result-key")]
    return left


class IrisModel:
    def load(self):
        import joblib

        self.model = joblib.load("model.joblib")  # the job's output, mounted where the training code wrote it

    def predict(self, X):
        return self.model.predict(X)


def test_a_job_trains_and_an_endpoint_serves_its_model_from_the_artifact(outputs_backend, kube, registry_address,
                                                                        tmp_path):
    @fairing.train(backend=outputs_backend, timeout=900, requirements=_sklearn(), outputs=["model.joblib"])
    def train():
        import joblib
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        X, y = load_iris(return_X_y=True)
        joblib.dump(LogisticRegression(max_iter=500).fit(X, y), "model.joblib")
        return "trained"

    handle = train.submit()
    try:
        assert handle.result(900) == "trained"
        artifact = handle.outputs_artifact()
        assert artifact.files() == ["model.joblib"]
        assert artifact.manifest()["artifactType"] == "application/vnd.fairing.outputs.v1"
        import joblib

        local_model = joblib.load(handle.outputs(tmp_path)["model.joblib"])
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
        endpoint = PredictionEndpoint(IrisModel, model=handle, requirements=_sklearn(), model_name="iris",
                                      backend=outputs_backend)
        endpoint.create(timeout=600)
        try:
            pod_spec = kube.apps.read_namespaced_deployment(endpoint.name, kube.namespace).spec.template.spec
            assert [c.name for c in pod_spec.init_containers] == ["fairing-model"]
            assert artifact.ref in pod_spec.init_containers[0].command  # pulled in the cluster, not from here
            assert endpoint.predict(rows) == local_model.predict(rows).tolist()
        finally:
            endpoint.delete()
        repo = _outputs_repo(handle)
        assert _tags(registry_address, repo) != []
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []
    assert _left_in(kube) == []


def test_a_50_mb_result_round_trips(outputs_backend, kube, registry_address):
    @fairing.train(backend=outputs_backend, timeout=900, cleanup="never")
    def big():
        import random

        return random.Random(7).randbytes(50 * 2**20)

    handle = big.submit()
    try:
        value = handle.result(900)
        expected = random.Random(7).randbytes(50 * 2**20)
        assert len(value) == len(expected) and hashlib.sha256(value).digest() == hashlib.sha256(expected).digest()
        pod, terminated = handle.terminated()
        assert len(terminated["message"]) < 4096  # only a pointer went through the termination message
        log = pod_log(kube.core, pod["metadata"]["name"], kube.namespace)
        assert len(log) < 10_000  # and not 67 MB of base64 through the log
        repo = _outputs_repo(handle)
        assert len(_tags(registry_address, repo)) == 1
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []
    assert _left_in(kube) == []


def test_a_map_over_8_inputs_with_2_failing_returns_6_values_and_names_the_2(outputs_backend, kube):
    def square(x):
        if x in (3, 6):
            print(f"failing on purpose at {x}", flush=True)
            raise ValueError(f"bad input {x}")
        return x * x

    on_cluster = fairing.train(square, backend=outputs_backend, timeout=900)
    handle = on_cluster.map_submit([((x,), {}) for x in range(8)], parallelism=4)
    try:
        job = kube.batch.read_namespaced_job(handle.name, kube.namespace).spec
        assert (job.completion_mode, job.completions, job.parallelism, job.backoff_limit_per_index) == \
            ("Indexed", 8, 4, 0)
        with pytest.raises(MapError) as info:
            handle.result(900)
    finally:
        handle.delete()
    err = info.value
    assert err.failed_indexes == [3, 6]
    assert err.results == [0, 1, 4, None, 16, 25, None, 49]
    assert all(isinstance(e, ValueError) for e in err.failures.values()) and str(err.failures[6]) == "bad input 6"
    assert "failing on purpose at 3" in err.logs[3] and "[6] ValueError: bad input 6" in str(err)
    assert _left_in(kube) == []
    # the decorated call: the same, cleaned up afterwards
    with pytest.raises(MapError, match=r"2 of 8 calls .* failed \(indexes 3, 6\)"):
        on_cluster.map(range(8), parallelism=8)
    assert _left_in(kube) == []


def test_a_sweep_returns_the_best_of_a_grid(outputs_backend, kube, registry_address, tmp_path):
    @fairing.train(backend=outputs_backend, timeout=900, outputs=["params.json"])
    def fit(alpha, depth):
        import json

        with open("params.json", "w") as fh:
            json.dump({"alpha": alpha, "depth": depth}, fh)
        return {"accuracy": 1.0 - abs(alpha - 0.5) - 0.01 * depth}

    best = fairing.sweep(fit, {"alpha": [0.1, 0.5], "depth": [3, 5]}, metric="accuracy", mode="max",
                         outputs_dir=tmp_path)
    assert best.params == {"alpha": 0.5, "depth": 3}
    assert best.score == pytest.approx(0.97)
    assert json.loads((tmp_path / "params.json").read_text()) == {"alpha": 0.5, "depth": 3}
    assert _left_in(kube) == []


def test_a_pytorchjob_returns_rank_0s_value_and_raises_a_failing_workers_exception(builder, kube):
    deployer = PyTorchJobDeployer({"Master": 1, "Worker": 2}, kube=kube)

    def ranked(fail_rank):
        import os
        import socket
        import time

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        # a rendezvous, as a real distributed job has: the master hears from every worker
        addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        if rank == 0:
            server = socket.create_server(("", port))
            server.settimeout(300)
            for _ in range(world - 1):
                server.accept()[0].close()
            time.sleep(5)  # the last step, while a failing worker has failed already
        else:
            for _ in range(300):
                try:
                    socket.create_connection((addr, port), timeout=2).close()
                    break
                except OSError:
                    time.sleep(1)
        if rank == fail_rank:
            raise RuntimeError(f"rank {rank} gave up")
        return f"rank-{rank}"

    on_cluster = fairing.train(ranked, backend=Backend("e2e", builder, deployer), timeout=900)
    handle = on_cluster.submit(-1)
    try:
        assert handle.result(900) == "rank-0"
        assert handle.results() == {"master-0": "rank-0", "worker-0": "rank-1", "worker-1": "rank-2"}
    finally:
        handle.delete()
    with pytest.raises(RuntimeError, match="rank 2 gave up") as info:
        on_cluster(2)
    assert info.value.replica == "worker-1"
    assert any("replica worker-1 of the PyTorchJob" in note for note in info.value.__notes__)
    assert kube.custom.list_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, "pytorchjobs")["items"] == []
    assert _left_in(kube) == []


def test_ctrl_c_during_a_map_deletes_the_whole_job(outputs_backend, kube):
    import _thread

    from fairing.events import LogLine

    def interrupt_once_running(event):
        if isinstance(event, LogLine) and "started" in event.line and not interrupted:
            interrupted.append(event)
            _thread.interrupt_main()

    interrupted: list = []

    @fairing.train(backend=outputs_backend, timeout=900, on_event=interrupt_once_running, quiet=True)
    def slow(x):
        import time

        print("started", x, flush=True)
        time.sleep(600)

    with pytest.raises(KeyboardInterrupt):
        slow.map(range(4), parallelism=2)
    assert interrupted
    assert _left_in(kube) == []


def test_outputs_come_back_from_a_plain_http_registry_with_only_the_backends_options(
        kubeconfig, namespace, kube, registry_address, base_image, tmp_path):
    # As a user writes it: no deployer made by hand. The builder reached the registry over
    # plain HTTP (insecure=True), and the image it returns says so to the job that pushes back.
    def write_metrics():
        import json
        import os

        os.makedirs("metrics", exist_ok=True)
        with open("metrics/scores.json", "w") as fh:
            json.dump({"accuracy": 0.93}, fh)
        return "written"

    job = fairing.TrainJob(write_metrics, backend="kubernetes", registry=f"{registry_address}/fairing-e2e",
                           base_image=base_image, insecure=True, kubeconfig=kubeconfig, namespace=namespace,
                           outputs=["metrics/"])
    handle = job.submit()
    try:
        assert handle.result(600) == "written"
        files = handle.outputs(tmp_path)
        assert sorted(files) == ["metrics/scores.json"]
        assert json.loads(open(files["metrics/scores.json"]).read()) == {"accuracy": 0.93}
        repo = _outputs_repo(handle)
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []
    assert _left_in(kube) == []



def test_a_cluster_map_brings_each_calls_outputs_back_and_prefixes_its_lines(outputs_backend, kube, tmp_path,
                                                                              capsys):
    @fairing.train(backend=outputs_backend, timeout=900, outputs=["model.txt"], outputs_dir=tmp_path)
    def fit(x):
        print(f"fitting {x}", flush=True)
        with open("model.txt", "w") as fh:
            fh.write(f"model {x}")
        return x + 100

    assert fit.map([1, 2, 3], parallelism=3) == [101, 102, 103]
    for i in range(3):
        assert (tmp_path / str(i) / "model.txt").read_text() == f"model {i + 1}"
    printed = capsys.readouterr().out.splitlines()
    for i in range(3):
        assert f"[index-{i}] fitting {i + 1}" in printed, printed
    assert _left_in(kube) == []
