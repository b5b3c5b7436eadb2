"""False refusals, on the cluster: a controller's FailedCreate about another workload whose
name starts with this one's, or about an earlier job of the same name (events outlive their
objects), must not fail a job that runs; a map whose next index the quota refuses until its
own earlier pod ends finishes; the permission pre-flight asks for nothing the chosen path
does without (events, which only diagnose; secrets for an endpoint that writes none)."""

from __future__ import annotations

import time
import uuid

import pytest

from fairing import PermissionDeniedError
from fairing.deployers.job import JobDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.deployers.trainjob import TrainJobDeployer
from fairing.kube import KubeClient
from fairing.kube.access import preflight

pytestmark = pytest.mark.e2e


def _command(*argv):
    def mutate(spec):
        spec["containers"][0]["command"] = list(argv)
        spec["containers"][0].pop("args", None)
        return spec
    return mutate


def _refused_job(kube, name, image):
    kube.batch.create_namespaced_job(kube.namespace, {
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "serviceAccountName": "no-such-account",
            "containers": [{"name": "c", "image": image, "command": ["true"]}]}}}})


def _failed_create_for(kube, *names):
    deadline = time.monotonic() + 60
    while True:
        seen = {e.involved_object.name for e in kube.core.list_namespaced_event(kube.namespace).items
                if e.reason == "FailedCreate"}
        if set(names) <= seen:
            return
        assert time.monotonic() < deadline, f"no FailedCreate for {set(names) - seen}"
        time.sleep(0.5)


def test_refusals_of_a_neighbour_and_of_an_earlier_job_of_the_name_are_not_this_jobs(kube, base_image):
    name = f"fj-{uuid.uuid4().hex[:6]}"
    _refused_job(kube, f"{name}-2", base_image)  # a neighbour: its name starts with ours
    _refused_job(kube, name, base_image)  # an earlier job of our name...
    _failed_create_for(kube, name, f"{name}-2")
    kube.batch.delete_namespaced_job(name, kube.namespace, propagation_policy="Background")
    deadline = time.monotonic() + 60
    while any(j.metadata.name == name for j in kube.batch.list_namespaced_job(kube.namespace).items):
        assert time.monotonic() < deadline
        time.sleep(0.5)  # ...gone; its event stays
    handle = JobDeployer(kube=kube, mutators=[_command("sh", "-c", "echo ran-fine")]).deploy(base_image, name=name)
    try:
        assert handle.wait(120).phase == "Succeeded"  # not PodsRefusedError about the others' FailedCreate
    finally:
        handle.delete()


def test_a_map_whose_next_index_waits_for_the_quota_its_own_pod_holds(kube, base_image):
    kube.core.create_namespaced_resource_quota(kube.namespace, {
        "metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}})
    deadline = time.monotonic() + 30
    while not (kube.core.read_namespaced_resource_quota("one-pod", kube.namespace).status.hard or {}):
        assert time.monotonic() < deadline, "the ResourceQuota was never counted"
        time.sleep(0.5)
    deployer = JobDeployer(kube=kube, mutators=[_command("sh", "-c", "sleep 4; echo index-done")])
    handle = deployer.deploy(base_image, count=3, parallelism=3)  # every index at once: all but one refused
    try:
        assert handle.wait(240).phase == "Succeeded"
        refusals = [e for e in kube.core.list_namespaced_event(kube.namespace).items
                    if e.reason == "FailedCreate" and "exceeded quota" in (e.message or "")]
        assert refusals, "the quota never refused an index: the test proves nothing"
    finally:
        handle.delete()


def test_preflight_asks_for_no_events_and_an_endpoint_for_no_secrets(make_profile):
    prof = make_profile(drop=[("list", "", "events"), ("watch", "", "events"), ("get", "", "events"),
                              *((v, "", "secrets") for v in ("create", "update", "patch", "delete", "get"))])
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    assert not prof.can("list", "", "events") and not prof.can("create", "", "secrets")
    preflight(ServingDeployer(kube=kube, pull_credentials=False))  # no secret is written: none is asked for
    with pytest.raises(PermissionDeniedError) as err:  # a Job writes its result key: secrets are asked for, events never
        preflight(JobDeployer(kube=kube))
    assert {r for _v, r, _ns in err.value.missing} == {"secrets"}


def test_upstream_kubeflow_edit_may_not_create_trainjobs_and_preflight_says_so(make_profile):
    """kubeflow/trainer's kubeflow-trainer-edit grants create on trainjobs of kubeflow.org,
    not trainer.kubeflow.org (tests/cluster/manifests/kubeflow-edit-role.yaml): a profile's
    default-editor is refused before anything is built, naming the real group."""
    prof = make_profile()
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    with pytest.raises(PermissionDeniedError) as err:
        preflight(TrainJobDeployer(kube=kube))
    assert set(err.value.missing) == {("create", "trainjobs.trainer.kubeflow.org", prof.namespace),
                                      ("delete", "trainjobs.trainer.kubeflow.org", prof.namespace)}
    assert "apiGroups [trainer.kubeflow.org], resources [trainjobs]" in str(err.value)  # not only "bind kubeflow-edit"
    fixed = make_profile(trainer_fix=True)
    preflight(TrainJobDeployer(kube=KubeClient(kubeconfig=fixed.kubeconfig)))


def test_the_cluster_builder_asks_for_no_secret_update_it_never_does(make_profile, base_image, registry_address):
    from fairing.builders.cluster import ClusterBuilder

    prof = make_profile(drop=[("update", "", "secrets")])
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    preflight(ClusterBuilder(base_image, f"{registry_address}/fairing-e2e", kube=kube))
