"""Job deployer: the image runs once as a batch/v1 Job, or once per input of a map as an
Indexed Job (``completionMode: Indexed``, ``backoffLimitPerIndex``): pod ``i`` gets
``JOB_COMPLETION_INDEX=i`` and runs the map's ``i``-th call; every index runs even when
some fail, and each reports its own result (see :meth:`JobHandle.index_outcomes`)."""

from __future__ import annotations

from typing import Any, Optional

from ..events import EventCallback
from ..kube import raise_for_api_error
from ..kube.watch import main_statuses
from ..kube.workloads import WorkloadKind, condition_phase
from .kubernetes import KubeDeployerBase, KubeHandle

__all__ = ["JobDeployer", "JobHandle", "COMPLETION_INDEX"]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


class JobHandle(KubeHandle):
    kind = "Job"
    WORKLOAD = WorkloadKind("Job", "batch/v1", "Job", "jobs")
    count: Optional[int] = None  # a map's number of indexes
    _index_outputs: list = []

    def replica(self, pod: dict) -> str:
        index = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
        return f"index-{index}" if self.count is not None and index is not None else ""

    def index_outcomes(self, timeout: Optional[float] = None) -> list:
        """A map's outcome per index, in order: ``(True, value)`` or ``(False, exception)``,
        the exception being what :meth:`result` would raise for that index's pod."""
        self.wait(timeout)
        by_index: dict = {}
        with self._cond:
            pods = list(self._pods.values())
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            index = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
            for cs in main_statuses(pod):
                if (cs.get("state") or {}).get("terminated") and index is not None:
                    by_index[int(index)] = (pod, cs["state"]["terminated"])  # the newest attempt wins
        found = []
        for i in range(self.count or 0):
            pod, terminated = by_index.get(i, (None, {}))
            self._outputs = None
            try:
                found.append((True, self.pod_outcome(pod, terminated), self._outputs))
            except Exception as exc:
                found.append((False, exc, None))
        self._outputs = None
        self._index_outputs = [outputs for _ok, _v, outputs in found]
        return [(ok, value) for ok, value, _outputs in found]

    def index_outputs(self, i: int) -> Any:
        """Index ``i``'s outputs (:class:`fairing.outputs.Outputs`) or None; after :meth:`index_outcomes`."""
        return self._index_outputs[i]

    def result(self, timeout: Optional[float] = None) -> Any:
        if self.count is None:
            return super().result(timeout)
        from ..results import map_results

        return map_results(self, self.index_outcomes(timeout))

    def _list_objects(self, **kwargs):
        return self.kube.batch.list_namespaced_job(**kwargs)

    def _phase(self, obj: dict) -> Optional[str]:
        decided = condition_phase(obj)
        if decided:
            return decided
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

    workload_kind = JobHandle.WORKLOAD

    def manifest(self, image: Any, name: str, *, count: Optional[int] = None, parallelism: int = 1) -> dict:
        spec: dict = {"backoffLimit": self.backoff_limit, "template": self.pod_template(image, name)}
        if count is not None:  # a map: every index runs, retried on its own
            del spec["backoffLimit"]
            spec.update(completionMode="Indexed", completions=count, parallelism=parallelism,
                        backoffLimitPerIndex=self.backoff_limit)
        if self.ttl_seconds_after_finished is not None:
            spec["ttlSecondsAfterFinished"] = self.ttl_seconds_after_finished
        if self.active_deadline_seconds is not None:
            spec["activeDeadlineSeconds"] = self.active_deadline_seconds
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.metadata(name), "spec": spec}

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None,
               count: Optional[int] = None, parallelism: int = 1) -> JobHandle:
        """Run ``image`` once, or ``count`` times as an Indexed Job (``parallelism`` at once)."""
        kube = self.kube
        name = name or self.new_name()
        with self.result_key(name) as owned_by:
            body = self.manifest(image, name, count=count, parallelism=parallelism)  # the pull secret, undone too
            try:
                created = kube.batch.create_namespaced_job(kube.namespace, body)
            except kube.api_errors as exc:
                raise_for_api_error(exc, action=f"create Job {name}", kind="Job", namespace=kube.namespace)
            owned_by("batch/v1", "Job", created.metadata.uid)
        handle = JobHandle(kube, name, kube.namespace, on_event=on_event)
        handle.count = count
        return self.handle_for(handle, image)
