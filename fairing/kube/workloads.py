"""What a workload is and how far it got: the kinds fairing starts, declared once, and its
phase read from its status in one place.

Each handle class declares its :class:`WorkloadKind` (``WORKLOAD``: the kind its record
and ``fairing list`` show, the API version, the Kubernetes kind and plural); job records,
listing and attaching (:mod:`fairing.jobs`) iterate those declarations
(:data:`fairing._names.WORKLOAD_HANDLES`) instead of naming kinds. :func:`condition_phase`
is the one reading of a workload's conditions: ``SuccessCriteriaMet`` and
``FailureTarget`` (set by Kubernetes 1.31+ before ``Complete``/``Failed``, while a Job's
pods are cleaned up) decide the outcome for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["WorkloadKind", "condition_phase", "listed_phase", "read_object", "list_objects"]

SUCCEEDED = ("Complete", "Succeeded", "SuccessCriteriaMet")
FAILED = ("Failed", "FailureTarget")


@dataclass(frozen=True)
class WorkloadKind:
    """``record_kind``: what a job record and ``fairing list`` call it ('Job', 'Endpoint'...);
    ``api_version``, ``kind``, ``plural``: the object on the cluster; ``endpoint``: a server
    (it has no outcome, only readiness)."""

    record_kind: str
    api_version: str
    kind: str
    plural: str
    endpoint: bool = False

    @property
    def custom(self) -> bool:
        """A custom resource (its operator may not be installed), not a built-in kind."""
        return "." in self.group_version[0]

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version


def condition_phase(obj: dict) -> Optional[str]:
    """'Succeeded' or 'Failed' when one of the object's true conditions decides it, else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True":
            if cond.get("type") in SUCCEEDED:
                return "Succeeded"
            if cond.get("type") in FAILED:
                return "Failed"
    return None


def listed_phase(workload: WorkloadKind, obj: dict) -> tuple[str, Optional[int]]:
    """(phase, exit code) of a listed object: 'Pending', 'Running', 'Succeeded' or 'Failed'."""
    status = obj.get("status") or {}
    if workload.endpoint:
        if workload.kind == "Deployment":
            return ("Running" if (status.get("readyReplicas") or 0) > 0 else "Pending"), None
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return ("Running" if ready else "Pending"), None
    decided = condition_phase(obj)
    if decided:
        return decided, (0 if decided == "Succeeded" else None)
    if workload.kind == "Job":
        if status.get("succeeded"):
            return "Succeeded", 0
        if status.get("failed"):
            return "Failed", None
        return ("Running" if status.get("active") else "Pending"), None
    running = any(cond.get("type") == "Running" and cond.get("status") == "True"
                  for cond in status.get("conditions") or [])
    running = running or any(job.get("active") for job in status.get("jobsStatus") or [])  # a TrainJob
    return ("Running" if running else "Pending"), None


def read_object(kube: Any, workload: WorkloadKind, name: str) -> dict:
    """The object ``name`` of this kind in ``kube``'s namespace, as a dict (raises the client's ApiException)."""
    if workload.api_version == "batch/v1" and workload.kind == "Job":
        return kube.to_dict(kube.batch.read_namespaced_job(name, kube.namespace))
    if workload.api_version == "apps/v1" and workload.kind == "Deployment":
        return kube.to_dict(kube.apps.read_namespaced_deployment(name, kube.namespace))
    group, version = workload.group_version
    return kube.custom.get_namespaced_custom_object(group, version, kube.namespace, workload.plural, name)


def list_objects(kube: Any, workload: WorkloadKind, namespace: str, selector: str, timeout: float) -> list[dict]:
    """The objects of this kind in ``namespace`` matching ``selector``, as dicts."""
    if workload.api_version == "batch/v1" and workload.kind == "Job":
        return [kube.to_dict(o) for o in kube.batch.list_namespaced_job(
            namespace, label_selector=selector, _request_timeout=timeout).items]
    if workload.api_version == "apps/v1" and workload.kind == "Deployment":
        return [kube.to_dict(o) for o in kube.apps.list_namespaced_deployment(
            namespace, label_selector=selector, _request_timeout=timeout).items]
    group, version = workload.group_version
    return kube.custom.list_namespaced_custom_object(group, version, namespace, workload.plural,
                                                      label_selector=selector,
                                                      _request_timeout=timeout).get("items", [])
