"""The one waiting loop (Workload.wait_until) driven by watch events from another thread, as the
watch threads deliver them; no cluster: the events are the dicts the API server would send."""

import threading
import time

import pytest

from fairing import DeployError, ImagePullError, JobTimeoutError
from fairing.kube import Workload


class _Job(Workload):
    kind = "Job"

    def _phase(self, obj):
        return (obj.get("status") or {}).get("phase")


def _later(seconds, fn, *args):
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    return timer


def _pod(state):
    return {"metadata": {"name": "j-1-abc"}, "status": {"phase": "Pending", "containerStatuses": [
        {"name": "main", "image": "registry.local/app:v1", "state": state}]}}


def test_wakes_up_on_the_event_not_on_a_poll():
    job = _Job(None, "j-1", "ns", on_event=lambda e: None)
    _later(0.2, job._on_object, "MODIFIED", {"metadata": {"name": "j-1"}, "status": {"phase": "Succeeded"}})
    start = time.monotonic()
    assert job.wait_until(job._ended, timeout=30, tick=30) is True
    assert time.monotonic() - start < 5  # woken by the event, long before the 30 s tick


def test_a_pod_that_cannot_start_is_raised_while_waiting():
    job = _Job(None, "j-1", "ns", on_event=lambda e: None)
    _later(0.1, job._on_pod, "ADDED", _pod({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}))
    with pytest.raises(ImagePullError, match="registry.local/app:v1"):
        job.wait_until(job._ended, timeout=30)


def test_timeouts_raise_what_the_caller_says_or_return_false():
    job = _Job(None, "j-1", "ns", on_event=lambda e: None)
    job._on_pod("ADDED", _pod({"waiting": {"reason": "ContainerCreating"}}))  # not an error (yet)
    with pytest.raises(JobTimeoutError, match="gave up"):
        job.wait_until(job._ended, timeout=0.2, on_timeout=lambda: JobTimeoutError("gave up", job="j-1"))
    assert job.wait_until(job._ended, timeout=0.2, diagnose_pods=False) is False


def test_a_deleted_workload_and_a_failed_watch_end_the_wait():
    job = _Job(None, "j-1", "ns", on_event=lambda e: None)
    _later(0.1, job._on_object, "DELETED", {"metadata": {"name": "j-1"}})
    with pytest.raises(DeployError, match="was deleted while fairing waited"):
        job.wait_until(job._finished, timeout=30)

    watched = _Job(None, "j-2", "ns", on_event=lambda e: None)

    def fail():
        with watched._cond:
            watched._watch_error = ConnectionResetError("connection reset by peer")
            watched._cond.notify_all()

    _later(0.1, fail)
    with pytest.raises(DeployError, match="Could not reach the Kubernetes API server to watch Job j-2"):
        watched.wait_until(watched._ended, timeout=30, on_timeout=lambda: JobTimeoutError("no"))
    assert watched.wait_until(watched._ended, timeout=30) is False  # a quiet wait just stops
