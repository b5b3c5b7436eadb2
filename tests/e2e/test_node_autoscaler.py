"""Nodes on demand: events posted to a pending pod exactly as cluster-autoscaler posts them
(core/v1 Events from its recorder: source component "cluster-autoscaler", type Normal, reason
TriggeredScaleUp "pod triggered scale-up: [...]" or NotTriggerScaleUp "pod didn't trigger
scale-up: ...") change what an unschedulable pod means; the grace is an option;
priority_class= reaches the pods."""

from __future__ import annotations

import datetime
import time
import uuid

import pytest

from fairing import ConfigurationError, PodsRefusedError, UnschedulableError
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.events import Stage
from fairing.kube import JOB_LABEL
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e

TOO_BIG = [m.resources(cpu="64")]  # no node of the test cluster has 64 CPUs


def _pending_pod(kube, name):
    def find():
        pods = kube.core.list_namespaced_pod(kube.namespace, label_selector=f"{JOB_LABEL}={name}").items
        return pods[0] if pods else None

    return wait_until(find, 30, f"the pod of {name}", interval=0.3)


def _autoscaler_event(kube, pod, reason, message):
    now = datetime.datetime.now(datetime.timezone.utc)
    kube.core.create_namespaced_event(kube.namespace, {
        "metadata": {"name": f"{pod.metadata.name}.{uuid.uuid4().hex[:16]}", "namespace": kube.namespace},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": kube.namespace, "name": pod.metadata.name,
                           "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
        "reason": reason, "message": message, "type": "Normal",
        "source": {"component": "cluster-autoscaler"}, "reportingComponent": "cluster-autoscaler",
        "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1})


def _left_in(kube):
    return ([j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
            + [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items])


def test_triggered_scale_up_waits_then_times_out(kube, base_image):
    events = []
    deployer = JobDeployer(kube=kube, mutators=TOO_BIG, unschedulable_grace=3, scale_up_timeout=20)
    handle = deployer.deploy(base_image, on_event=events.append)
    try:
        pod = _pending_pod(kube, handle.name)
        _autoscaler_event(kube, pod, "TriggeredScaleUp", "pod triggered scale-up: [{pool-cpu-64 0->1 (max: 3)}]")
        start = time.monotonic()
        # past the 3 s grace: still waiting for the node the autoscaler adds
        with pytest.raises(Exception) as waited:
            handle.wait(8)
        assert type(waited.value).__name__ == "JobTimeoutError", waited.value
        waiting = [e for e in events if isinstance(e, Stage) and e.name == "node" and e.status == "started"]
        assert waiting and "waiting for a new node" in waiting[0].detail and "pool-cpu-64 0->1" in waiting[0].detail
        with pytest.raises(UnschedulableError) as err:
            handle.wait(60)
        assert time.monotonic() - start < 40
        assert "waited 20 s for a new node" in str(err.value) and "pool-cpu-64" in str(err.value)
    finally:
        handle.delete()
    assert _left_in(kube) == []


def test_not_trigger_scale_up_fails_at_once(kube, base_image):
    handle = JobDeployer(kube=kube, mutators=TOO_BIG, unschedulable_grace=300).deploy(base_image)
    try:
        pod = _pending_pod(kube, handle.name)
        reason = "pod didn't trigger scale-up: 2 max node group size reached, 1 Insufficient cpu"
        _autoscaler_event(kube, pod, "NotTriggerScaleUp", reason)
        start = time.monotonic()
        with pytest.raises(UnschedulableError) as err:
            handle.wait(120)
        assert time.monotonic() - start < 15
        assert "max node group size reached" in str(err.value) and "will not add a node" in str(err.value)
    finally:
        handle.delete()
    assert _left_in(kube) == []


def test_the_grace_is_an_option(kube, base_image):
    handle = JobDeployer(kube=kube, mutators=TOO_BIG, unschedulable_grace=2).deploy(base_image)
    start = time.monotonic()
    try:
        with pytest.raises(UnschedulableError, match="Insufficient cpu"):
            handle.wait(120)
    finally:
        handle.delete()
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("bad", [-1, "20", True, float("nan"), float("inf")])
def test_bad_grace_and_timeout_are_refused(bad):
    with pytest.raises(ConfigurationError, match="unschedulable_grace"):
        JobDeployer(namespace="x", unschedulable_grace=bad)
    with pytest.raises(ConfigurationError, match="scale_up_timeout"):
        JobDeployer(namespace="x", scale_up_timeout=bad)


@pytest.mark.parametrize("bad", ["", "High", "a b", "x" * 300 + "/", 5])
def test_bad_priority_class_is_refused(bad):
    with pytest.raises(ConfigurationError, match="priority_class"):
        JobDeployer(namespace="x", priority_class=bad)


def test_priority_class_reaches_the_pods(kube, base_image):
    scheduling = kube.k8s.client.SchedulingV1Api(kube.api_client)
    name = f"fairing-e2e-{uuid.uuid4().hex[:8]}"
    scheduling.create_priority_class({"metadata": {"name": name}, "value": 1000})
    try:
        handle = JobDeployer(kube=kube, mutators=TOO_BIG, priority_class=name).deploy(base_image)
        try:
            pod = _pending_pod(kube, handle.name)
            assert pod.spec.priority_class_name == name and pod.spec.priority == 1000
        finally:
            handle.delete()
        # a class the cluster does not have: the pods are refused, and the job says so at once
        handle = JobDeployer(kube=kube, priority_class=name + "-missing").deploy(base_image)
        try:
            with pytest.raises(PodsRefusedError, match="PriorityClass"):
                handle.wait(60)
        finally:
            handle.delete()
    finally:
        scheduling.delete_priority_class(name)
    assert _left_in(kube) == []
