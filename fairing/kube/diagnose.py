"""What a pod's status says is wrong, as the FairingError that explains it: a pure function.

``diagnose(pod)`` reads only the pod (a dict as the API serves it, or a ``V1Pod``) and
the clock; it calls no API, so it is tested over pod fixtures. It returns ``None`` while
nothing is wrong yet, including states that may still heal: a pod unschedulable for
less than ``grace`` seconds (a claim being bound, a node being added), an
``ErrImagePull`` that is not a plain "not found" (Kubernetes retries and then reports
``ImagePullBackOff``).

A node autoscaler (cluster-autoscaler) says what it does about an unschedulable pod with
events on the pod; the caller passes the newest as ``autoscaler`` (reason, message):
``TriggeredScaleUp`` (a node is being added) stretches the grace to ``scale_up_timeout``;
``NotTriggerScaleUp`` (no node group can take it) is an error at once, quoting why.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Optional

from ..errors import DeployError, FairingError, ImagePullError, JobFailedError, UnschedulableError

__all__ = ["diagnose", "as_dict", "UNSCHEDULABLE_GRACE", "SCALE_UP_TIMEOUT", "SCALE_UP", "NO_SCALE_UP"]

#: Seconds a pod may stay unschedulable before it is an error.
UNSCHEDULABLE_GRACE = 20.0
#: ... once a node autoscaler said it adds a node for it: cloud nodes take minutes to join.
SCALE_UP_TIMEOUT = 600.0
#: The event reasons cluster-autoscaler posts on a pending pod.
SCALE_UP, NO_SCALE_UP = "TriggeredScaleUp", "NotTriggerScaleUp"
#: ... when what it waits for is a claim being bound: provisioning a volume (or the PV
#: controller of a loaded control plane) may take minutes, and is no reason to give up.
UNBOUND_CLAIM_GRACE = 300.0

_PULL_REASONS = ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ErrImagePull")
_CREATE_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")

_serializer: Any = None


def as_dict(obj: Any) -> dict:
    """An API object as the JSON-shaped dict the server sent (camelCase keys)."""
    if isinstance(obj, dict):
        return obj
    global _serializer
    if _serializer is None:
        from .client import kubernetes_module

        _serializer = kubernetes_module().client.ApiClient()
    return _serializer.sanitize_for_serialization(obj)


def _age(timestamp: Any, now: float) -> float:
    """Seconds from an API timestamp to ``now`` (0 when absent or unreadable)."""
    if not timestamp:
        return 0.0
    if isinstance(timestamp, datetime):
        return now - timestamp.timestamp()
    try:
        return now - datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def diagnose(pod: Any, *, kind: str = "", workload: str = "", grace: float = UNSCHEDULABLE_GRACE,
             now: Optional[float] = None, autoscaler: Optional[tuple[str, str]] = None,
             scale_up_timeout: float = SCALE_UP_TIMEOUT) -> Optional[FairingError]:
    """The error that explains why ``pod`` cannot start or keeps failing, or None.

    ``kind`` and ``workload`` name what the pod belongs to (``"Job"``, ``"train-1"``) in
    messages; ``now`` is the time to judge by [the clock's]. A
    :class:`~fairing.errors.JobFailedError` for a crash loop carries no log tail: the
    caller, which can read logs, adds it.
    """
    pod = as_dict(pod)
    now = time.time() if now is None else now
    name = (pod.get("metadata") or {}).get("name", "?")
    of = f" of {kind} {workload}" if workload else ""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            message = cond.get("message") or ""
            claim_unbound = "unbound immediate PersistentVolumeClaims" in message
            scaler_reason, scaler_message = autoscaler or ("", "")
            if scaler_reason == NO_SCALE_UP and not claim_unbound:
                return UnschedulableError(
                    f"The pod {name}{of} cannot be scheduled ({message}) and the node autoscaler will not add a node "
                    f"for it: {scaler_message}. Ask for fewer resources (cpu, memory, GPUs) or resources a node group "
                    "offers, or fix the node selector, affinity or tolerations.")
            limit = max(grace, UNBOUND_CLAIM_GRACE) if claim_unbound else grace
            if scaler_reason == SCALE_UP:
                limit = max(limit, scale_up_timeout)
            if _age(cond.get("lastTransitionTime"), now) < limit:
                continue
            if scaler_reason == SCALE_UP:
                return UnschedulableError(
                    f"The pod {name}{of} waited {limit:g} s for a new node and none took it (the autoscaler: "
                    f"{scaler_message}; the scheduler: {message}). Raise scale_up_timeout, or check the node group "
                    "(its quota, its instance type's availability).")
            if claim_unbound:
                return UnschedulableError(
                    f"The pod {name}{of} cannot be scheduled: {message}. A PersistentVolumeClaim it mounts has "
                    "not been bound to a volume: check the claim (kubectl describe pvc), its storage class "
                    "and that a PersistentVolume or a provisioner can satisfy it."
                )
            return UnschedulableError(
                f"The pod {name}{of} cannot be scheduled: {cond.get('message')}. "
                "Ask for fewer resources (cpu, memory, GPUs), or add nodes that have them."
            )
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        message = waiting.get("message", "") or ""
        if reason in _PULL_REASONS:
            if reason == "ErrImagePull" and "not found" not in message and "manifest unknown" not in message:
                continue  # maybe transient: wait for the back-off verdict
            return ImagePullError(
                f"The node cannot pull the image {cs.get('image')} for pod {name} ({reason}): {message}. "
                "Check that the image was pushed to a registry the cluster can reach, and that an image pull "
                "secret is set if the registry needs credentials."
            )
        if reason in _CREATE_REASONS:
            return DeployError(f"The container of pod {name} could not be created ({reason}): {message}. "
                               "Check the secrets, config maps and volumes it uses.")
        if reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            return JobFailedError(
                f"The pod {name}{of} keeps crashing (CrashLoopBackOff, last exit code {last.get('exitCode')}).",
                job=workload or name, exit_code=last.get("exitCode"),
            )
    return None
