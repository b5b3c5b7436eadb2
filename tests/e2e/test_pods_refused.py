"""Pods the cluster refuses at creation (the controller's FailedCreate: a missing service
account, a ResourceQuota they exceed) fail the job within seconds with PodsRefusedError, for
every workload kind, and the cleanup leaves nothing behind."""

from __future__ import annotations

import time

import pytest

from fairing import PodsRefusedError
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import PyTorchJobDeployer, TFJobDeployer
from fairing.deployers.trainjob import TRAINER_API, TrainJobDeployer

pytestmark = pytest.mark.e2e


def _left_in(kube) -> list[str]:
    ns = kube.namespace
    group, version = TRAINER_API.split("/")
    found = [f"pod/{p.metadata.name}" for p in kube.core.list_namespaced_pod(ns).items]
    found += [f"job/{j.metadata.name}" for j in kube.batch.list_namespaced_job(ns).items]
    for g, v, plural in ((group, version, "trainjobs"), ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
                         ("kubeflow.org", "v1", "tfjobs"), ("kubeflow.org", "v1", "pytorchjobs")):
        found += [f"{plural}/{o['metadata']['name']}" for o in
                  kube.custom.list_namespaced_custom_object(g, v, ns, plural)["items"]]
    found += [f"secret/{s.metadata.name}" for s in kube.core.list_namespaced_secret(ns).items
              if s.metadata.name.endswith("-result-key")]
    return found


def _deployer(kind: str, kube, mutators, cpu: str | None = None):
    if cpu:
        mutators = [*mutators, m.resources(cpu=cpu, memory="64Mi")]
    if kind == "job":
        return JobDeployer(kube=kube, mutators=mutators)
    if kind == "map":
        return JobDeployer(kube=kube, mutators=mutators)
    if kind == "tfjob":
        return TFJobDeployer({"Chief": 1, "Worker": 1}, kube=kube, mutators=mutators)
    if kind == "pytorchjob":
        return PyTorchJobDeployer({"Master": 1}, kube=kube, mutators=mutators)
    resources = {"requests": {"cpu": cpu, "memory": "64Mi"}} if cpu else None
    return TrainJobDeployer(kube=kube, mutators=mutators, resources_per_node=resources)


def _refused(kind, deployer, image):
    start = time.monotonic()
    handle = deployer.deploy(image, count=2) if kind == "map" else deployer.deploy(image)
    try:
        with pytest.raises(PodsRefusedError) as err:
            handle.wait(120)
        took = time.monotonic() - start
    finally:
        handle.delete()
    return err.value, took


KINDS = ["job", "map", "tfjob", "pytorchjob", "trainjob"]


@pytest.mark.parametrize("kind", KINDS)
def test_missing_service_account(kind, kube, base_image):
    deployer = _deployer(kind, kube, [m.service_account("no-such-account")])
    err, took = _refused(kind, deployer, base_image)
    assert took < 30, f"took {took:.1f} s"
    assert 'serviceaccount "no-such-account" not found' in str(err) or "no-such-account" in err.refusal
    assert "service account" in str(err) and err.job
    assert _left_in(kube) == []


@pytest.mark.parametrize("kind", ["job", "tfjob", "trainjob"])
def test_resource_quota_exceeded(kind, kube, base_image):
    kube.core.create_namespaced_resource_quota(kube.namespace, {
        "metadata": {"name": "small"}, "spec": {"hard": {"requests.cpu": "100m", "requests.memory": "1Gi"}}})
    # the quota controller must have counted the namespace before it refuses anything
    deadline = time.monotonic() + 30
    while not (kube.core.read_namespaced_resource_quota("small", kube.namespace).status.hard or {}):
        assert time.monotonic() < deadline, "the ResourceQuota was never counted"
        time.sleep(0.5)
    err, took = _refused(kind, _deployer(kind, kube, [], cpu="500m"), base_image)
    assert took < 30, f"took {took:.1f} s"
    assert "exceeded quota" in str(err) and "small" in str(err) and "ResourceQuota" in str(err)
    assert _left_in(kube) == []


def test_from_a_profile_identity_with_the_default_cleanup(make_profile, base_image, registry_address, api_client):
    """The issue's case: submitted as a profile's default-editor, naming a service account the
    namespace lacks; the one-liner's default cleanup removes everything."""
    import fairing
    from fairing.backends import Backend
    from fairing.builders.append import AppendBuilder
    from fairing.events import Stage
    from fairing.kube import KubeClient

    prof = make_profile()
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    deployer = JobDeployer(kube=kube, mutators=[m.service_account("not-in-this-profile")])
    backend = Backend("profile", AppendBuilder(base_image, f"{registry_address}/fairing-e2e", insecure=True),
                      deployer, None)
    deployed = []

    def on_event(event):
        if isinstance(event, Stage) and event.name == "deploy" and event.status == "finished":
            deployed.append(time.monotonic())

    @fairing.train(backend=backend, timeout=300, on_event=on_event)
    def fit():
        return 1

    with pytest.raises(PodsRefusedError) as err:
        fit()
    assert deployed and time.monotonic() - deployed[0] < 30
    assert 'serviceaccount "not-in-this-profile" not found' in str(err.value)
    assert _left_in(KubeClient(api_client=api_client, namespace=prof.namespace)) == []  # as the admin sees it


def test_limit_range_and_pod_security_refusals(kube, base_image):
    """The other admissions a profile namespace carries: a LimitRange the pod exceeds, then
    Pod Security's restricted level, which fairing's default pod does not meet."""
    kube.core.create_namespaced_limit_range(kube.namespace, {
        "metadata": {"name": "small-pods"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "100m"}}]}})
    err, took = _refused("job", _deployer("job", kube, [], cpu="500m"), base_image)
    # LimitRanger gives the container the maximum as its limit, under the 500m it requests
    assert took < 30 and "cpu limit of 100m" in str(err) and "LimitRange" in str(err)
    kube.core.delete_namespaced_limit_range("small-pods", kube.namespace)
    kube.core.patch_namespace(kube.namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    err, took = _refused("job", _deployer("job", kube, []), base_image)
    assert took < 30 and 'violates PodSecurity "restricted' in str(err) and "Pod Security" in str(err)
    assert _left_in(kube) == []
