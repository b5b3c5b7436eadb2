"""Distributed training through the Kubeflow training operator: TFJob and PyTorchJob (kubeflow.org/v1).

Replicas are given as counts, with optional per-replica mutators (e.g. GPUs only on
workers). The operator sets TF_CONFIG (TFJob) or MASTER_ADDR, MASTER_PORT, RANK and
WORLD_SIZE (PyTorchJob) in each replica. The result comes from the chief (TFJob; worker
0 when there is no chief) or the master (PyTorchJob, rank 0); when a replica fails, the
exception of the first one that failed is raised, noting the replica's name (also in
its ``.replica``); :meth:`TrainingJobHandle.results` gives every replica's value.
Finished pods are kept until ``delete()`` so that their logs and results can be read; a TFJob's still-running pods
(parameter servers) are removed by the operator when the job ends (cleanPodPolicy Running).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..errors import ConfigurationError
from ..events import EventCallback
from ..kube import raise_for_api_error
from ..kube.watch import main_statuses
from ..kube.workloads import WorkloadKind
from .kubernetes import KubeDeployerBase, KubeHandle
from .mutators import Mutator

__all__ = ["TFJobDeployer", "PyTorchJobDeployer", "TrainingJobHandle"]

GROUP, VERSION = "kubeflow.org", "v1"
_REPLICA_TYPE = "training.kubeflow.org/replica-type"
_REPLICA_INDEX = "training.kubeflow.org/replica-index"
_STOPPED = (137, 143)  # SIGKILL, SIGTERM
_RUNTIME_CODES = (1, 2, 3, 4)  # the user's code raised, or the runtime failed (fairing.runtime.__main__)


class TrainingJobHandle(KubeHandle):
    plural = "tfjobs"
    result_replica: Sequence[tuple[str, str]] = (("chief", "0"), ("master", "0"), ("worker", "0"))

    def _list_objects(self, **kwargs):
        return self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, plural=self.plural, **kwargs)

    def _delete_object(self) -> None:
        self.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, self.name,
                                                         propagation_policy="Foreground")

    def replica(self, pod: dict) -> str:
        labels = pod["metadata"].get("labels") or {}
        return f"{labels.get(_REPLICA_TYPE, 'pod')}-{labels.get(_REPLICA_INDEX, '?')}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended_pods: dict = {}  # pods that ended, kept when the operator deletes them (a failed job's)

    def _on_pod(self, kind: str, pod: dict) -> None:
        statuses = main_statuses(pod)
        if any("terminated" in (cs.get("state") or {}) for cs in statuses):
            with self._cond:
                self._ended_pods[pod["metadata"]["name"]] = pod
        super()._on_pod(kind, pod)

    def replica_outcomes(self, timeout: Optional[float] = None) -> dict:
        """``{replica: (ok, value or exception, order)}`` for every replica that ended (``order``
        sorts failures: the first is the one :meth:`result` raises).
        A replica stopped by a signal (the operator ends parameter servers when the job is
        done) failed only when the job did."""
        self.wait(timeout)
        with self._cond:
            pods = sorted({**self._ended_pods, **self._pods}.values(),
                          key=lambda p: p["metadata"].get("creationTimestamp", ""))
        found: dict = {}
        job_failed = self.status().phase == "Failed"
        for pod in pods:  # the newest pod of a replica wins
            for cs in main_statuses(pod):
                terminated = (cs.get("state") or {}).get("terminated")
                if terminated:
                    try:
                        found[self.replica(pod)] = (True, self.pod_outcome(pod, terminated), "")
                    except Exception as exc:
                        if job_failed or terminated.get("exitCode") not in _STOPPED:
                            # first the replicas that failed by themselves (the runtime's exit codes),
                            # then those stopped when the job failed; earliest first
                            order = (terminated.get("exitCode") not in _RUNTIME_CODES,
                                     terminated.get("finishedAt") or "")
                            found[self.replica(pod)] = (False, exc, order)
        return found

    def _raise_first_failure(self, outcomes: dict) -> None:
        failed = sorted((order, name, exc) for name, (ok, exc, order) in outcomes.items() if not ok)
        if failed:
            _order, name, exc = failed[0]
            exc.replica = name
            if hasattr(exc, "add_note"):
                exc.add_note(f"(raised by the replica {name} of the {self.kind} {self.name})")
            raise exc

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result replica's value (rank 0, the chief); the first failing replica's exception."""
        outcomes = self.replica_outcomes(timeout)
        self._raise_first_failure(outcomes)
        pod, terminated = self.terminated()
        if pod is not None and self.replica(pod) in outcomes:
            return outcomes[self.replica(pod)][1]
        return self.pod_outcome(pod, terminated)

    def results(self, timeout: Optional[float] = None) -> dict:
        """Every replica's value, ``{"master-0": ..., "worker-0": ...}`` (those that reported one);
        raises as :meth:`result`."""
        outcomes = self.replica_outcomes(timeout)
        self._raise_first_failure(outcomes)
        return {name: value for name, (ok, value, _when) in sorted(outcomes.items()) if ok}

    def _is_result_pod(self, pod: dict) -> bool:
        with self._cond:
            present = {self.replica(p) for p in self._pods.values()}
        for rtype, index in self.result_replica:
            if f"{rtype}-{index}" in present:
                return self.replica(pod) == f"{rtype}-{index}"
        return False


class _TrainingDeployer(KubeDeployerBase):
    kind = "TFJob"
    plural = "tfjobs"
    spec_key = "tfReplicaSpecs"
    clean_pod_policy = "None"
    replica_types: Sequence[str] = ()

    def __init__(self, replicas: Mapping[str, int], *, replica_mutators: Optional[Mapping[str, Sequence[Mutator]]] = None,
                 **options: Any) -> None:
        super().__init__(**options)
        unknown = set(replicas) - set(self.replica_types)
        if unknown or not replicas:
            raise ConfigurationError(
                f"{self.kind} replicas must be some of {list(self.replica_types)}, got {sorted(replicas) or 'none'}; "
                f"e.g. {{'{self.replica_types[-1]}': 2}}."
            )
        for rtype, count in replicas.items():
            if not isinstance(count, int) or count < 1:
                raise ConfigurationError(f"The {rtype} replica count must be a positive integer, got {count!r}.")
        self.replicas = dict(replicas)
        self.replica_mutators = {k: list(v) for k, v in (replica_mutators or {}).items()}

    def manifest(self, image: Any, name: str) -> dict:
        specs = {}
        for rtype, count in self.replicas.items():
            template = self.pod_template(image, name, extra_mutators=self.replica_mutators.get(rtype, ()))
            specs[rtype] = {"replicas": count, "restartPolicy": "Never", "template": template}
        run_policy: dict = {"cleanPodPolicy": self.clean_pod_policy, "backoffLimit": self.backoff_limit}
        if self.ttl_seconds_after_finished is not None:
            run_policy["ttlSecondsAfterFinished"] = self.ttl_seconds_after_finished
        if self.active_deadline_seconds is not None:
            run_policy["activeDeadlineSeconds"] = self.active_deadline_seconds
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "metadata": self.metadata(name),
                "spec": {"runPolicy": run_policy, self.spec_key: specs}}

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> TrainingJobHandle:
        kube = self.kube
        name = name or self.new_name()
        with self.result_key(name) as owned_by:
            try:
                created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, self.plural,
                                                                      self.manifest(image, name))
            except kube.api_errors as exc:
                raise_for_api_error(exc, action=f"create {self.kind} {name}", kind=self.kind, namespace=kube.namespace)
            owned_by(f"{GROUP}/{VERSION}", self.kind, created["metadata"]["uid"])
        handle = self.handle_class(kube, name, kube.namespace, on_event=on_event)
        handle.kind, handle.plural = self.kind, self.plural
        return self.handle_for(handle, image)


class TFJobHandle(TrainingJobHandle):
    kind, plural = "TFJob", "tfjobs"
    WORKLOAD = WorkloadKind("TFJob", f"{GROUP}/{VERSION}", "TFJob", "tfjobs")


class PyTorchJobHandle(TrainingJobHandle):
    kind, plural = "PyTorchJob", "pytorchjobs"
    WORKLOAD = WorkloadKind("PyTorchJob", f"{GROUP}/{VERSION}", "PyTorchJob", "pytorchjobs")


class TFJobDeployer(_TrainingDeployer):
    """A TFJob: ``TFJobDeployer({"Chief": 1, "PS": 1, "Worker": 2})``; TF_CONFIG is set by the operator."""

    kind, plural, spec_key = "TFJob", "tfjobs", "tfReplicaSpecs"
    handle_class = TFJobHandle
    workload_kind = TFJobHandle.WORKLOAD
    clean_pod_policy = "Running"  # parameter servers never exit by themselves
    replica_types = ("Chief", "Master", "PS", "Evaluator", "Worker")
    container_name = "tensorflow"  # the operator finds the main container by this name

    def __init__(self, replicas: Optional[Mapping[str, int]] = None, **options: Any) -> None:
        super().__init__({"Worker": 1} if replicas is None else replicas, **options)


class PyTorchJobDeployer(_TrainingDeployer):
    """A PyTorchJob: ``PyTorchJobDeployer({"Master": 1, "Worker": 2})``; the operator sets RANK, WORLD_SIZE..."""

    kind, plural, spec_key = "PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs"
    handle_class = PyTorchJobHandle
    workload_kind = PyTorchJobHandle.WORKLOAD
    clean_pod_policy = "None"  # workers finish with the master; keep them for their logs
    replica_types = ("Master", "Worker")
    container_name = "pytorch"

    def __init__(self, replicas: Optional[Mapping[str, int]] = None, **options: Any) -> None:
        super().__init__({"Master": 1} if replicas is None else replicas, **options)
