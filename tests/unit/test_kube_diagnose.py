"""fairing.kube.diagnose over pod fixtures: what the API server reports, judged without a cluster."""

from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client as k8s

from fairing import DeployError, ImagePullError, JobFailedError, UnschedulableError
from fairing.kube import diagnose

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def _pod(*, conditions=(), containers=(), init=(), name="job-1-abcde"):
    return {"metadata": {"name": name},
            "status": {"phase": "Pending", "conditions": list(conditions), "containerStatuses": list(containers),
                       "initContainerStatuses": list(init)}}


def _waiting(reason, message="", image="registry.local/app@sha256:" + "a" * 64):
    return {"name": "main", "image": image, "state": {"waiting": {"reason": reason, "message": message}}}


def _unschedulable(seconds_ago, message="0/1 nodes are available: 1 Insufficient nvidia.com/gpu."):
    when = (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": when,
            "message": message}


def test_a_healthy_or_starting_pod_has_no_diagnosis():
    running = {"name": "main", "image": "x", "state": {"running": {"startedAt": "2026-01-01T11:59:00Z"}}}
    assert diagnose(_pod(containers=[running]), now=NOW.timestamp()) is None
    assert diagnose(_pod(containers=[_waiting("ContainerCreating")]), now=NOW.timestamp()) is None
    assert diagnose({"metadata": {"name": "p"}}) is None  # no status yet


def test_unschedulable_only_after_the_grace_period():
    young = _pod(conditions=[_unschedulable(5)])
    assert diagnose(young, now=NOW.timestamp(), grace=20) is None
    old = _pod(conditions=[_unschedulable(30)])
    error = diagnose(old, kind="Job", workload="train-1", now=NOW.timestamp(), grace=20)
    assert isinstance(error, UnschedulableError)
    assert "job-1-abcde of Job train-1 cannot be scheduled" in str(error)
    assert "Insufficient nvidia.com/gpu" in str(error) and "Ask for fewer resources" in str(error)


def test_a_claim_being_bound_is_waited_for_longer_and_then_named():
    unbound = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found"
    assert diagnose(_pod(conditions=[_unschedulable(60, unbound)]), now=NOW.timestamp(), grace=20) is None
    error = diagnose(_pod(conditions=[_unschedulable(400, unbound)]), now=NOW.timestamp(), grace=20)
    assert isinstance(error, UnschedulableError)
    assert "has not been bound to a volume" in str(error) and "kubectl describe pvc" in str(error)


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"])
def test_image_pull_verdicts(reason):
    error = diagnose(_pod(containers=[_waiting(reason, "back-off pulling image")]))
    assert isinstance(error, ImagePullError) and isinstance(error, DeployError)
    assert f"({reason})" in str(error) and "registry.local/app@sha256:" in str(error)
    assert "image pull secret" in str(error)


def test_err_image_pull_waits_for_the_back_off_unless_the_image_is_missing():
    transient = _pod(containers=[_waiting("ErrImagePull", "dial tcp 10.0.0.1:5000: i/o timeout")])
    assert diagnose(transient) is None
    missing = _pod(containers=[_waiting("ErrImagePull", "registry.local/app: manifest unknown")])
    assert isinstance(diagnose(missing), ImagePullError)


def test_init_containers_are_judged_too():
    error = diagnose(_pod(init=[_waiting("ImagePullBackOff", "not found")]))
    assert isinstance(error, ImagePullError)


def test_container_that_cannot_be_created():
    error = diagnose(_pod(containers=[_waiting("CreateContainerConfigError", 'secret "wandb" not found')]))
    assert type(error) is DeployError
    assert 'secret "wandb" not found' in str(error) and "secrets, config maps and volumes" in str(error)


def test_crash_loop_names_the_exit_code_and_leaves_the_log_to_the_caller():
    status = _waiting("CrashLoopBackOff", "back-off 10s restarting failed container")
    status["lastState"] = {"terminated": {"exitCode": 3, "reason": "Error"}}
    error = diagnose(_pod(containers=[status]), kind="Job", workload="train-1")
    assert isinstance(error, JobFailedError)
    assert error.exit_code == 3 and error.job == "train-1" and error.logs_tail is None
    assert "keeps crashing" in str(error) and "last exit code 3" in str(error)


def test_v1pod_objects_are_read_like_dicts():
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="kaniko-1"),
        status=k8s.V1PodStatus(phase="Pending", container_statuses=[k8s.V1ContainerStatus(
            name="kaniko", image="gcr.io/kaniko-project/executor:missing", image_id="", ready=False,
            restart_count=0, state=k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(
                reason="ImagePullBackOff", message="Back-off pulling image")))]),
    )
    error = diagnose(pod)
    assert isinstance(error, ImagePullError) and "executor:missing" in str(error) and "kaniko-1" in str(error)
    scheduled_late = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p"), status=k8s.V1PodStatus(conditions=[
        k8s.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable", message="no nodes",
                           last_transition_time=NOW - timedelta(minutes=5))]))
    assert isinstance(diagnose(scheduled_late, now=NOW.timestamp()), UnschedulableError)
