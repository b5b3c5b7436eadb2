"""Kueue (sigs.k8s.io/kueue): sending a workload to a LocalQueue, and reading what Kueue
says about it.

A workload goes to a queue by one label on the object, ``kueue.x-k8s.io/queue-name``
(:data:`QUEUE_LABEL`), on a Job, TFJob, PyTorchJob, TrainJob or JobSet alike. Kueue's
admission webhook suspends it at creation (``spec.suspend`` of a Job, JobSet or TrainJob,
``spec.runPolicy.suspend`` of a TFJob or PyTorchJob), and its controller makes a
``Workload`` object (``kueue.x-k8s.io/v1beta2``, owned by the job, so it goes with it)
whose conditions say why it waits: ``QuotaReserved`` False with reason ``Pending`` and a
message such as "insufficient unused quota for cpu in flavor ..."; reason ``Inadmissible``
when the LocalQueue or its ClusterQueue does not exist or is stopped. Once quota is
reserved, ``Admitted`` turns True and Kueue unsuspends the job.

Only the label and the reading are here: fairing never suspends a job itself (without
Kueue's webhook the job would then never start) and never touches queues.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigurationError, QueueNotFoundError
from .client import is_status

__all__ = ["QUEUE_LABEL", "GROUP", "VERSION", "QueueState", "check_queue_name", "check_local_queue", "queue_of",
           "suspended", "workload_state", "queue_states"]

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"

# A LocalQueue's name is a DNS-1123 subdomain, and as a label value it has at most 63 characters.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # each dot-part a DNS label


def check_queue_name(queue: Any, where: str = "queue=") -> Optional[str]:
    """``queue`` as given, checked: None (no queue) or a LocalQueue name."""
    if queue is None:
        return None
    if not isinstance(queue, str) or not _NAME.fullmatch(queue) or len(queue) > 63:
        raise ConfigurationError(
            f"{where} takes the name of a Kueue LocalQueue in the job's namespace (lowercase letters, digits, '-' "
            f"and '.', at most 63 characters, e.g. queue='team-a'); got {queue!r}.")
    return queue


def _queue_names(kube: Any, namespace: str) -> list[str]:
    try:
        items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues",
                                                          _request_timeout=15).get("items", [])
    except kube.api_errors:
        return []
    return sorted((q.get("metadata") or {}).get("name", "") for q in items)


def check_local_queue(kube: Any, namespace: str, queue: str) -> None:
    """Raise :class:`~fairing.errors.QueueNotFoundError` unless the LocalQueue ``queue``
    exists in ``namespace`` (or Kueue is not installed). When the identity may not read
    LocalQueues, this cannot tell: it passes, and the job's Workload says it later."""
    try:
        kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", queue,
                                                 _request_timeout=15)
        return
    except kube.api_errors as exc:
        if is_status(exc, 403) or is_status(exc, 401):
            return  # cannot tell here; Kueue's own reason is reported while the job waits
        if not is_status(exc, 404):
            from .client import raise_for_api_error

            raise_for_api_error(exc, action=f"read the LocalQueue {queue}", kind="LocalQueue", namespace=namespace)
        body = str(getattr(exc, "body", "") or "")
    # A missing object is a Status naming it; a missing API (no Kueue) is a bare 404.
    if f'"name":"{queue}"' not in body.replace(" ", ""):
        raise QueueNotFoundError(
            f"queue={queue!r} sends the job to a Kueue LocalQueue, but this cluster has no Kueue (no "
            f"{GROUP}/{VERSION} LocalQueue API). Drop queue= (and the queue setting), or install Kueue.",
            queue=queue, namespace=namespace)
    names = _queue_names(kube, namespace)
    if names:
        close = difflib.get_close_matches(queue, names, n=1)
        fix = (f"{f'Did you mean {close[0]!r}? ' if close else ''}The LocalQueues there: {', '.join(names)}; send "
               "the job to one of them, or ask the cluster's admins for another")
    else:
        fix = "There is no LocalQueue there: ask the cluster's admins for one"
    raise QueueNotFoundError(
        f"There is no Kueue LocalQueue {queue!r} in namespace {namespace!r}. {fix} (kind: LocalQueue, apiVersion: "
        f"{GROUP}/{VERSION}, spec.clusterQueue: the ClusterQueue it draws quota from).", queue=queue,
        namespace=namespace)


def queue_of(obj: Optional[dict]) -> Optional[str]:
    """The LocalQueue a workload object was sent to (its label), or None."""
    return (((obj or {}).get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)


def suspended(obj: Optional[dict]) -> bool:
    """Whether a Job, JobSet, TrainJob (``spec.suspend``), TFJob or PyTorchJob
    (``spec.runPolicy.suspend``) is suspended."""
    spec = (obj or {}).get("spec") or {}
    return bool(spec.get("suspend") or (spec.get("runPolicy") or {}).get("suspend"))


@dataclass(frozen=True)
class QueueState:
    """What Kueue says of a workload: ``admitted``, or held with ``reason`` (a Workload
    condition's: 'Pending', 'Inadmissible'...) and ``message`` (Kueue's words); ``missing``:
    the queue (LocalQueue or its ClusterQueue) does not exist, so it never will be admitted."""

    queue: str
    admitted: bool
    reason: str = ""
    message: str = ""

    @property
    def missing(self) -> bool:
        return self.reason == "Inadmissible" and ("doesn't exist" in self.message
                                                  or "terminating or missing" in self.message)

    @property
    def too_small(self) -> bool:
        """The job asks more than the queue's maximum capacity (nominal quota plus what it may
        borrow): Kueue keeps it pending, but only a change of the queue could ever admit it."""
        return self.reason == "Pending" and "> maximum capacity" in self.message

    def describe(self) -> str:
        if self.admitted:
            return f"admitted by Kueue from the LocalQueue {self.queue}"
        why = self.message or self.reason or "Kueue has not looked at it yet"
        return f"queued in the LocalQueue {self.queue}: {why}"


def _state(queue: str, workload: Optional[dict]) -> QueueState:
    if workload is None:
        return QueueState(queue, False, "", "waiting for Kueue to see it")
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    if (conditions.get("Admitted") or {}).get("status") == "True":
        return QueueState(queue, True)
    for kind in ("Evicted", "QuotaReserved", "Requeued"):
        cond = conditions.get(kind)
        if cond and (cond.get("status") == "False" or kind == "Evicted" and cond.get("status") == "True"):
            return QueueState(queue, False, cond.get("reason") or "", cond.get("message") or "")
    return QueueState(queue, False, "", "waiting for Kueue to see it")


def _owned_by(workload: dict, uid: str) -> bool:
    return any(o.get("uid") == uid for o in (workload.get("metadata") or {}).get("ownerReferences") or [])


def workload_state(kube: Any, namespace: str, obj: dict) -> QueueState:
    """What Kueue says of the workload object ``obj`` (which has a queue label)."""
    uid = (obj.get("metadata") or {}).get("uid", "")
    items = kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "workloads", label_selector=f"kueue.x-k8s.io/job-uid={uid}",
        _request_timeout=15).get("items", [])
    mine = [w for w in items if _owned_by(w, uid)] or items
    return _state(queue_of(obj) or "", mine[0] if mine else None)


def queue_states(kube: Any, namespace: str, objects: list) -> dict:
    """{uid: QueueState} of the objects among ``objects`` that Kueue holds (suspended, with
    a queue label), read with one listing; {} when none is or the Workloads cannot be read."""
    held = [o for o in objects if queue_of(o) and suspended(o)]
    if not held:
        return {}
    try:
        items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "workloads",
                                                          _request_timeout=15).get("items", [])
    except kube.api_errors:
        items = []
    out = {}
    for obj in held:
        uid = (obj.get("metadata") or {}).get("uid", "")
        found = next((w for w in items if _owned_by(w, uid)), None)
        out[uid] = _state(queue_of(obj) or "", found)
    return out
