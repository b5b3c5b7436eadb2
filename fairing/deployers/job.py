"""Job deployer: the image runs once as a batch/v1 Job."""

from __future__ import annotations

from typing import Any, Optional

from ..events import EventCallback
from ..kube import raise_for_api_error
from .kubernetes import KubeDeployerBase, KubeHandle

__all__ = ["JobDeployer", "JobHandle"]


class JobHandle(KubeHandle):
    kind = "Job"

    def _list_objects(self, **kwargs):
        return self.kube.batch.list_namespaced_job(**kwargs)

    def _phase(self, obj: dict) -> Optional[str]:
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
                return "Succeeded" if cond["type"] == "Complete" else "Failed"
        # The job controller marks the Job a second or two after its pod ends. With one
        # completion (and, for a failure, no retries) the pod's phase already decides it.
        spec = obj.get("spec") or {}
        if (spec.get("completions") or 1) == 1 and (spec.get("parallelism") or 1) == 1:
            phases = {(p.get("status") or {}).get("phase") for p in self._pods.values()}
            if "Succeeded" in phases:
                return "Succeeded"
            if "Failed" in phases and spec.get("backoffLimit") == 0:
                return "Failed"
        return None

    def _delete_object(self) -> None:
        self.kube.batch.delete_namespaced_job(self.name, self.namespace, propagation_policy="Foreground")


class JobDeployer(KubeDeployerBase):
    """Runs the image as a Job with one pod (no retries unless ``backoff_limit`` says so).

    Options: see :class:`~fairing.deployers.kubernetes.KubeDeployerBase`.
    """

    def manifest(self, image: Any, name: str) -> dict:
        spec: dict = {"backoffLimit": self.backoff_limit, "template": self.pod_template(image, name)}
        if self.ttl_seconds_after_finished is not None:
            spec["ttlSecondsAfterFinished"] = self.ttl_seconds_after_finished
        if self.active_deadline_seconds is not None:
            spec["activeDeadlineSeconds"] = self.active_deadline_seconds
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.metadata(name), "spec": spec}

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None) -> JobHandle:
        kube = self.kube
        name = name or self.new_name()
        body = self.manifest(image, name)
        with self.result_key(name) as owned_by:
            try:
                created = kube.batch.create_namespaced_job(kube.namespace, body)
            except kube.api_errors as exc:
                raise_for_api_error(exc, action=f"create Job {name}", kind="Job", namespace=kube.namespace)
            owned_by("batch/v1", "Job", created.metadata.uid)
        return JobHandle(kube, name, kube.namespace, on_event=on_event).start()
