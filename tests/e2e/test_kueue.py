"""Kueue on the real cluster (tests/cluster/kueue.sh builds v0.17.0 from its Go module): a job
sent to a LocalQueue whose quota a blocker holds is reported queued with Kueue's reason (an
event, its status, ``fairing list``), runs once the blocker ends and returns its value;
Ctrl-C or SIGTERM while it is queued leaves nothing behind (job, Workload, pods, result key);
a TFJob, a TrainJob and a map's Indexed Job with ``queue=`` are labelled and admitted; a
queue that does not exist fails fast.

Each test makes its own ClusterQueue (cohort-less, so no other test can borrow from it or
lend to it) and LocalQueue pair: tests on other workers never share a quota."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import fairing
from fairing import ConfigurationError, QueueNotFoundError
from fairing.backends import Backend
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import TFJobDeployer
from fairing.events import Queued
from fairing.kube.kueue import GROUP, QUEUE_LABEL, VERSION

from conftest import wait_until

pytestmark = pytest.mark.e2e

FLAVOR = "fairing-default"  # made by tests/cluster/kueue.sh
ROOT = Path(__file__).parents[2]
# Each job asks 200m of the queue's 300m: one runs, the next waits.
QUOTA, REQUEST = "300m", "200m"


def _queue_pair(kube, cluster_queue: str, local_queue: str, *, quota: str = QUOTA) -> None:
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kube.namespace}},
                 "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{
                     "name": FLAVOR, "resources": [{"name": "cpu", "nominalQuota": quota},
                                                   {"name": "memory", "nominalQuota": "2Gi"}]}]}]}})
    _local_queue(kube, local_queue, cluster_queue)


def _local_queue(kube, name: str, cluster_queue: str) -> None:
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, "localqueues", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue", "metadata": {"name": name},
        "spec": {"clusterQueue": cluster_queue}})


@pytest.fixture
def queue(kube):
    """A LocalQueue in the test's namespace on a ClusterQueue of its own (300m CPU), active."""
    suffix = uuid.uuid4().hex[:8]
    cluster_queue, local_queue = f"fairing-e2e-cq-{suffix}", "team"
    _queue_pair(kube, cluster_queue, local_queue)
    wait_until(lambda: _active(kube, local_queue), 60, f"LocalQueue {local_queue} active")
    yield local_queue
    # The ClusterQueue's finalizer holds it while a workload is admitted: it goes with the namespace's jobs.
    try:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue)
    except kube.api_errors:
        pass


def _active(kube, local_queue: str) -> bool:
    obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, "localqueues", local_queue)
    return any(c.get("type") == "Active" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _workloads(kube) -> list:
    return kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.namespace, "workloads")["items"]


def _left_in(kube, keep: str = "") -> list[str]:
    """Every job, pod, Kueue Workload and result key in the namespace (but ``keep``'s)."""
    names = [j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
    names += [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    names += [w["metadata"]["name"] for w in _workloads(kube)]
    names += [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items
              if s.metadata.name.endswith("-result-key")]
    return sorted(n for n in names if not (keep and n.startswith(keep) or keep and f"-{keep}-" in n))


def _small():
    return m.resources(cpu=REQUEST, memory="64Mi")


def _fairing_list(kubeconfig: str, namespace: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "fairing", "list", "--backend", "kubernetes", "--namespace",
                           namespace, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "KUBECONFIG": kubeconfig})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_queued_job_says_why_then_runs_when_the_blocker_ends(builder, kube, queue, kubeconfig):
    deployer = JobDeployer(kube=kube, queue=queue, mutators=[_small()])

    @fairing.train(backend=Backend("kubernetes", builder, deployer), quiet=True, timeout=600)
    def blocker(seconds):
        import time

        time.sleep(seconds)
        return "blocker done"

    events: list = []

    @fairing.train(backend=Backend("kubernetes", builder, deployer), quiet=True, on_event=events.append, timeout=600)
    def waits(x):
        return x * 2

    first = blocker.submit(50)
    second = None
    try:
        wait_until(lambda: first.status().phase == "Running", 300, "the blocker running")
        started = time.monotonic()
        second = waits.submit(21)
        job = kube.batch.read_namespaced_job(second.name, kube.namespace)
        assert job.metadata.labels[QUEUE_LABEL] == queue
        assert job.spec.suspend is True  # Kueue's webhook suspended it at creation
        status = wait_until(lambda: (lambda s: s if s.phase == "Queued" and "quota" in s.message else None)(
            second.status()), 60, "the second job reported queued with Kueue's reason")
        assert queue in status.message and "insufficient" in status.message, status.message
        # the handle's queue thread reports it within a poll or two
        wait_until(lambda: any(isinstance(e, Queued) and e.reason == "Pending" for e in events), 30,
                   "a Queued event with Kueue's reason")
        queued = [e for e in events if isinstance(e, Queued)]
        assert queued[0].status == "started"
        assert all(e.queue == queue and e.job == second.name for e in queued)
        pending = [e for e in queued if e.reason == "Pending"]
        assert pending and "insufficient unused quota for cpu" in pending[0].message, queued
        assert queue in pending[0].detail

        listed = _fairing_list(kubeconfig, kube.namespace)
        row = next(line for line in listed.splitlines() if line.startswith(second.name + " "))
        assert "Queued" in row.split(), listed
        assert f"{second.name}: queued in the LocalQueue {queue}: " in listed and "insufficient" in listed, listed
        import json

        document = json.loads(_fairing_list(kubeconfig, kube.namespace, "--output", "json"))
        mine = next(d for d in document if d["name"] == second.name)
        assert mine["phase"] == "Queued" and mine["queue"] == queue and "quota" in mine["message"]
        proc = subprocess.run([sys.executable, "-m", "fairing", "status", second.name, "--namespace", kube.namespace],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "KUBECONFIG": kubeconfig})
        assert proc.stdout.startswith(f"{second.name} Queued: queued in the LocalQueue {queue}: "), proc.stdout + proc.stderr

        # queued, never unschedulable: still waiting (not raised) while the blocker runs
        assert first.result(600) == "blocker done"
        assert second.result(600) == 42
        assert time.monotonic() - started > 10  # it did wait for the blocker
        admitted = [e for e in events if isinstance(e, Queued) and e.status == "finished"]
        assert admitted and queue in admitted[0].detail
    finally:
        first.delete()
        if second is not None:
            second.delete()
    assert _left_in(kube) == []


def _submitter(tmp_path, base_image, registry_address, kubeconfig, namespace, queue) -> Path:
    script = tmp_path / f"submit-{uuid.uuid4().hex[:6]}.py"
    script.write_text(textwrap.dedent(f"""
        import fairing
        from fairing.backends import Backend
        from fairing.builders.append import AppendBuilder
        from fairing.deployers import mutators as m
        from fairing.deployers.job import JobDeployer
        from fairing.kube import KubeClient

        kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={namespace!r})
        backend = Backend("e2e", AppendBuilder({base_image!r}, {registry_address + '/fairing-e2e'!r}, insecure=True),
                          JobDeployer(kube=kube, queue={queue!r}, mutators=[m.resources(cpu={REQUEST!r})]))

        @fairing.train(backend=backend, on_event=lambda e: print(repr(e), flush=True))
        def never_runs():
            return "ran"
        print("RESULT=" + never_runs(), flush=True)
    """))
    return script


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_while_queued_leaves_nothing(builder, kube, queue, base_image, registry_address, kubeconfig,
                                                 tmp_path, sig):
    deployer = JobDeployer(kube=kube, queue=queue, mutators=[_small()])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True)
    def blocker():
        import time

        time.sleep(900)

    first = blocker.submit()
    try:
        wait_until(lambda: first.status().phase == "Running", 300, "the blocker running")
        script = _submitter(tmp_path, base_image, registry_address, kubeconfig, kube.namespace, queue)
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seen = []
        try:
            for line in proc.stdout:
                seen.append(line)
                if line.startswith("Queued(") and "insufficient unused quota" in line:
                    break
            assert "insufficient unused quota" in "".join(seen), "".join(seen)
            # held: the job and its Workload exist, and no pod of it
            assert len(_left_in(kube, keep=first.name)) >= 3, _left_in(kube)
            proc.send_signal(sig)
            rest = proc.communicate(timeout=120)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
        if sig == signal.SIGINT:
            assert "KeyboardInterrupt" in rest, rest
        else:
            assert proc.returncode == -signal.SIGTERM, rest
        assert "RESULT=ran" not in rest
        assert _left_in(kube, keep=first.name) == []  # job, Workload, pods and result key of it: gone
    finally:
        first.delete()
    assert _left_in(kube) == []


def test_a_tfjob_with_a_queue_is_labelled_and_admitted(builder, kube, queue):
    def chief():
        return "chief"

    deployer = TFJobDeployer({"Chief": 1}, kube=kube, queue=queue, mutators=[_small()])
    events: list = []
    handle = fairing.submit(fairing.api.preprocessor_for(chief), builder=builder, deployer=deployer, quiet=True,
                            on_event=events.append)
    try:
        obj = kube.custom.get_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, "tfjobs", handle.name)
        assert obj["metadata"]["labels"][QUEUE_LABEL] == queue
        assert handle.result(600) == "chief"
        uid = obj["metadata"]["uid"]
        mine = [w for w in _workloads(kube) if any(o["uid"] == uid for o in w["metadata"].get("ownerReferences", []))]
        assert len(mine) == 1 and mine[0]["spec"]["queueName"] == queue
        conditions = {c["type"]: c["status"] for c in mine[0]["status"]["conditions"]}
        assert conditions.get("Admitted") == "True" or conditions.get("Finished") == "True", conditions
    finally:
        handle.delete()
    assert _left_in(kube) == []


def test_an_unknown_local_queue_fails_before_the_build(kube, queue):
    class NoBuild:
        accepts = ()

        def build(self, *_a, **_k):
            raise AssertionError("built although the queue does not exist")

    deployer = JobDeployer(kube=kube, queue="no-such-queue")
    started = time.monotonic()
    with pytest.raises(QueueNotFoundError) as err:
        fairing.submit(fairing.api.preprocessor_for(len, args=([],)), builder=NoBuild(), deployer=deployer,
                       quiet=True)
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert "no-such-queue" in message and kube.namespace in message and f"The LocalQueues there: {queue};" in message
    assert err.value.queue == "no-such-queue" and err.value.namespace == kube.namespace
    assert _left_in(kube) == []
    with pytest.raises(ConfigurationError, match="LocalQueue"):
        JobDeployer(kube=kube, queue="Not A Queue!")


def test_a_local_queue_without_its_cluster_queue_fails_with_kueues_reason(builder, kube):
    missing = f"fairing-e2e-absent-{uuid.uuid4().hex[:8]}"
    _local_queue(kube, "orphan", missing)  # exists, so the check before the build passes
    deployer = JobDeployer(kube=kube, queue="orphan", mutators=[_small()])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, timeout=300)
    def never():
        return "ran"

    started = time.monotonic()
    with pytest.raises(QueueNotFoundError) as err:
        never()
    assert time.monotonic() - started < 120
    assert f"ClusterQueue {missing} doesn't exist" in str(err.value) and "orphan" in str(err.value)
    assert _left_in(kube) == []


def test_a_trainjob_with_a_queue_is_labelled_and_admitted(builder, kube, queue):
    """Admitted only: Kueue v0.17's TrainJob integration starts an admitted TrainJob through
    Trainer v2.2's ``runtimePatches``; the cluster's Trainer v2.1.0 lacks them, so Kueue logs
    "kueue runtime patch not found" and the TrainJob stays suspended (the run itself is
    tests/e2e/test_trainjob_v2.py, without a queue)."""
    from fairing.deployers.trainjob import TRAINER_API, TrainJobDeployer

    small = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    deployer = TrainJobDeployer(kube=kube, num_nodes=1, resources_per_node=small, queue=queue)
    handle = fairing.submit(fairing.api.preprocessor_for(len, args=([],)), builder=builder, deployer=deployer,
                            quiet=True)
    group, version = TRAINER_API.split("/")
    try:
        obj = kube.custom.get_namespaced_custom_object(group, version, kube.namespace, "trainjobs", handle.name)
        assert obj["metadata"]["labels"][QUEUE_LABEL] == queue
        uid = obj["metadata"]["uid"]

        def admitted():
            mine = [w for w in _workloads(kube) if any(o["uid"] == uid for o in w["metadata"].get("ownerReferences", []))]
            return mine if mine and any(c["type"] == "Admitted" and c["status"] == "True"
                                        for c in (mine[0].get("status") or {}).get("conditions") or []) else None

        mine = wait_until(admitted, 120, "the TrainJob's Workload admitted")
        assert len(mine) == 1 and mine[0]["spec"]["queueName"] == queue
    finally:
        handle.delete()
    wait_until(lambda: _left_in(kube) == [], 60, "the TrainJob, its Workload and result key gone")


def test_a_map_goes_to_the_queue_as_one_indexed_job(builder, kube, queue):
    deployer = JobDeployer(kube=kube, queue=queue, mutators=[m.resources(cpu="100m", memory="64Mi")])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, timeout=600)
    def square(x):
        return x * x

    handle = square.map_submit([((x,), {}) for x in (1, 2, 3)], parallelism=2)
    try:
        job = kube.batch.read_namespaced_job(handle.name, kube.namespace)
        assert job.metadata.labels[QUEUE_LABEL] == queue and job.spec.completion_mode == "Indexed"
        assert handle.result(600) == [1, 4, 9]
        uid = job.metadata.uid
        assert [w["spec"]["queueName"] for w in _workloads(kube)
                if any(o["uid"] == uid for o in w["metadata"].get("ownerReferences", []))] == [queue]
    finally:
        handle.delete()
    assert _left_in(kube) == []
