"""Attacks on queue=: a running job Kueue evicts (it waits again, then runs; it does not
fail), a ClusterQueue stopped with ``stopPolicy: Hold`` (the timeout says why, nothing left,
no thread of the handle left), a LocalQueue deleted while its job waits (QueueNotFoundError,
nothing left)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import fairing
from fairing import JobTimeoutError, QueueNotFoundError
from fairing.backends import Backend
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.events import Queued
from fairing.kube.kueue import GROUP, VERSION

from conftest import wait_until
from test_kueue import _left_in, _local_queue, _queue_pair, _small, _workloads, queue  # noqa: F401

pytestmark = pytest.mark.e2e


def _threads_of(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith(name) or f"-{name}-" in t.name]


def test_an_evicted_job_is_queued_again_then_runs(builder, kube, queue):
    events: list = []
    deployer = JobDeployer(kube=kube, queue=queue, mutators=[_small()])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, on_event=events.append, timeout=600)
    def slow():
        import time

        time.sleep(25)
        return "done"

    handle = slow.submit()
    try:
        wait_until(lambda: handle.status().phase == "Running", 300, "the job running")
        workload = _workloads(kube)[0]["metadata"]["name"]
        # Kueue evicts it (as a preemption does): the job is suspended, its pods deleted.
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, kube.namespace, "workloads", workload,
                                                   {"spec": {"active": False}})
        wait_until(lambda: handle.status().phase == "Queued", 60, "the evicted job reported queued again")
        time.sleep(8)  # pods deleted by the eviction must not read as a failure
        assert handle.status().phase == "Queued", handle.status()
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, kube.namespace, "workloads", workload,
                                                   {"spec": {"active": True}})
        assert handle.result(600) == "done"
        assert handle.status().phase == "Succeeded"  # finished: no longer read as queued
        assert [e for e in events if isinstance(e, Queued) and e.status == "started"], events
    finally:
        handle.delete()
    assert _left_in(kube) == []
    assert f"fairing-queue-{handle.name}" not in _threads_of(handle.name)


def test_a_held_cluster_queue_times_out_saying_so_and_leaves_nothing(builder, kube):
    cluster_queue = f"fairing-e2e-held-{uuid.uuid4().hex[:8]}"
    _queue_pair(kube, cluster_queue, "held")
    kube.custom.patch_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue,
                                            {"spec": {"stopPolicy": "Hold"}})
    try:
        deployer = JobDeployer(kube=kube, queue="held", mutators=[_small()])

        @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, timeout=30)
        def never():
            return "ran"

        with pytest.raises(JobTimeoutError) as err:
            never()
        assert "held" in str(err.value), str(err.value)
        assert _left_in(kube) == []
        time.sleep(3)
        assert [t for t in _threads_of("") if t.startswith("fairing-queue-")] == []
    finally:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue)


def test_a_local_queue_deleted_while_its_job_waits_fails_typed_and_leaves_nothing(builder, kube):
    cluster_queue = f"fairing-e2e-gone-{uuid.uuid4().hex[:8]}"
    _queue_pair(kube, cluster_queue, "going")
    kube.custom.patch_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue,
                                            {"spec": {"stopPolicy": "Hold"}})
    try:
        events: list = []
        deployer = JobDeployer(kube=kube, queue="going", mutators=[_small()])

        @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, on_event=events.append, timeout=300)
        def never():
            return "ran"

        handle = never.submit()
        try:
            wait_until(lambda: handle.status().phase == "Queued", 60, "queued")
            kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.namespace, "localqueues", "going")
            with pytest.raises(QueueNotFoundError) as err:
                handle.result(120)
            assert "going" in str(err.value)
        finally:
            handle.delete()
        assert _left_in(kube) == []
    finally:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue)


@pytest.fixture
def dead_job_webhook(kube, api_client):
    """What a cluster looks like while Kueue's controller is down: a Job admission webhook
    (failurePolicy Fail) whose Service has no endpoint, scoped to this test's namespace."""
    from kubernetes import client

    name = f"fairing-e2e-dead-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespaced_service(kube.namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="webhook"),
        spec=client.V1ServiceSpec(selector={"app": "nothing-here"}, ports=[client.V1ServicePort(port=443)])))
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_mutating_webhook_configuration(client.V1MutatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name=name),
        webhooks=[client.V1MutatingWebhook(
            name="mjob.fairing-e2e.test", admission_review_versions=["v1"], side_effects="None",
            failure_policy="Fail", timeout_seconds=5,
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": kube.namespace}},
            client_config=client.AdmissionregistrationV1WebhookClientConfig(
                service=client.AdmissionregistrationV1ServiceReference(namespace=kube.namespace, name="webhook",
                                                                       path="/mutate--v1-job")),
            rules=[client.V1RuleWithOperations(api_groups=["batch"], api_versions=["v1"], operations=["CREATE"],
                                               resources=["jobs"])])]))
    yield name
    admission.delete_mutating_webhook_configuration(name)


@pytest.mark.parametrize("queued", [False, True], ids=["no-queue", "queue"])
def test_a_dead_admission_webhook_is_a_typed_error_naming_it_and_leaves_nothing(builder, kube, queue,
                                                                                dead_job_webhook, queued):
    from fairing import DeployError

    deployer = JobDeployer(kube=kube, queue=queue if queued else None, mutators=[_small()])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, timeout=120)
    def never():
        return "ran"

    with pytest.raises(DeployError) as err:
        never()
    message = str(err.value)
    assert "mjob.fairing-e2e.test" in message and "webhook" in message, message
    assert "no endpoints available" in message or "connection refused" in message, message
    assert "kubectl get mutatingwebhookconfiguration" in message, message  # says how to find whose it is
    assert _left_in(kube) == []


def test_a_map_asking_more_than_the_queue_ever_has_fails_fast_saying_so(builder, kube, queue):
    from fairing import QueueTooSmallError

    deployer = JobDeployer(kube=kube, queue=queue, mutators=[m.resources(cpu="100m", memory="64Mi")])

    @fairing.train(backend=Backend("e2e", builder, deployer), quiet=True, timeout=300)
    def square(x):
        return x * x

    started = time.monotonic()
    with pytest.raises(QueueTooSmallError) as err:
        square.map(range(5), parallelism=5)  # 500m at once on a 300m queue
    assert time.monotonic() - started < 120
    message = str(err.value)
    assert queue in message and "maximum capacity" in message and "parallelism" in message, message
    assert _left_in(kube) == []
