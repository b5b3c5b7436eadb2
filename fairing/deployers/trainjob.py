"""Distributed training through Kubeflow Trainer v2: a TrainJob (trainer.kubeflow.org/v1alpha1).

A TrainJob names a training runtime (by default the ClusterTrainingRuntime
``torch-distributed`` that Trainer v2 installs) and overrides what the job needs: the
trainer image (the one fairing built), ``num_nodes`` and the resources of each node.
The controller turns it into a JobSet whose ``node`` replicated job runs one pod per
node; the torch plugin sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``,
``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` in each (what ``torchrun`` reads).

fairing's own settings reach the pods through the fields the TrainJob API has for them:
environment variables through ``spec.trainer.env`` (the only way into the ``node``
container), the result key volume, labels and pod-level settings of the mutators
(service account, node selector, tolerations, affinity, image pull secrets) through
``spec.podTemplateOverrides`` targeting the trainer's job. A mutator that sets anything
else on the container (a command, a security context...) is refused: the TrainJob API
cannot carry it.

The result comes from node 0 (job completion index 0). Logs of every node are prefixed
``[node-0]``, ``[node-1]``... A node whose function raised is restarted by the runtime
(JobSet's default ``restartPolicy: OnFailure``); fairing raises node 0's exception as soon
as its first container has ended with it.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional

from ..errors import ConfigurationError, JobFailedError, MissingCRDError
from ..events import EventCallback
from ..kube import JOB_LABEL, raise_for_api_error
from ..kube.workloads import WorkloadKind
from .kubernetes import KubeDeployerBase, KubeHandle

__all__ = ["TrainJobDeployer", "TrainJobHandle", "TRAINER_API"]

#: The API group/version of Kubeflow Trainer v2's TrainJob.
TRAINER_API = "trainer.kubeflow.org/v1alpha1"
PLURAL = "trainjobs"
TRAINER_JOB = "node"  # the replicated job (and container) of a runtime that runs the trainer
DELETE_TIMEOUT = 90.0  # seconds delete() waits for the TrainJob and its pods to be gone
ORPHAN_SETTLE = 3.0  # seconds without a new pod after which delete() trusts that none will come

_RUNTIME_KINDS = ("ClusterTrainingRuntime", "TrainingRuntime")
_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# Container fields the TrainJob API carries (image, env and resources through spec.trainer,
# mounts through podTemplateOverrides); the termination message fields are the defaults.
_CONTAINER_FIELDS = {"name", "image", "env", "resources", "volumeMounts", "terminationMessagePath",
                     "terminationMessagePolicy"}
_POD_FIELDS = ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets", "volumes")


class TrainJobHandle(KubeHandle):
    kind = "TrainJob"
    plural = PLURAL
    api_version = TRAINER_API
    WORKLOAD = WorkloadKind("TrainJob", TRAINER_API, "TrainJob", PLURAL)

    def _group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.partition("/")
        return group, version

    def _list_objects(self, **kwargs):
        group, version = self._group_version()
        return self.kube.custom.list_namespaced_custom_object(group, version, plural=PLURAL, **kwargs)

    def _delete_object(self) -> None:
        group, version = self._group_version()
        self.kube.custom.delete_namespaced_custom_object(group, version, self.namespace, PLURAL, self.name,
                                                         propagation_policy="Foreground")
        # The TrainJob is gone within a second or two, while the Job controller may still
        # replace a pod of a Job being deleted (seen: a Pending pod created after its Job
        # was gone). Such orphans are deleted as the pod watch sees them; delete() returns
        # once no pod is left and none has appeared for a moment.
        self.wait_until(lambda: self._obj_gone, timeout=DELETE_TIMEOUT, diagnose_pods=False, tick=1.0)
        self.wait_until(self._no_pods_left, timeout=DELETE_TIMEOUT, diagnose_pods=False, tick=0.5)
        # A JobSet's Jobs are collected after it: one whose pods were never created (refused)
        # would outlive the TrainJob by a moment; wait for the garbage collector.
        self.wait_until(self._no_jobs_left, timeout=DELETE_TIMEOUT, diagnose_pods=False, tick=0.5)

    def _no_jobs_left(self) -> bool:
        try:
            return not self.kube.batch.list_namespaced_job(
                self.namespace, label_selector=f"jobset.sigs.k8s.io/jobset-name={self.name}", _request_timeout=10).items
        except self.kube.api_errors:
            return True  # may not list Jobs: nothing more to wait for here

    _pod_event_at = 0.0

    def _on_pod(self, kind: str, pod: dict) -> None:
        self._pod_event_at = time.monotonic()
        super()._on_pod(kind, pod)

    def _no_pods_left(self) -> bool:
        if any(not p["metadata"].get("deletionTimestamp") for p in self._pods.values()):
            try:
                self.kube.core.delete_collection_namespaced_pod(self.namespace,
                                                                label_selector=f"{JOB_LABEL}={self.name}")
            except self.kube.api_errors:
                pass  # the watch shows what is left; the timeout bounds the wait
        return not self._pods and time.monotonic() - self._pod_event_at > ORPHAN_SETTLE

    def replica(self, pod: dict) -> str:
        meta = pod["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        index = labels.get(_COMPLETION_INDEX, annotations.get(_COMPLETION_INDEX, "?"))
        return f"{labels.get(_REPLICATED_JOB, 'pod')}-{index}"

    def _is_result_pod(self, pod: dict) -> bool:
        return self.replica(pod) == f"{TRAINER_JOB}-0"

    _key: Optional[bytes] = None

    def _raise_diagnosis(self) -> None:
        # The runtimes restart a failed node in place (JobSet's default restartPolicy
        # OnFailure) until the Job's backoff limit: a function that raised on node 0 is
        # raised as itself from its first container's signed result, not after the retries.
        self._raise_remote_failure()
        super()._raise_diagnosis()

    def _raise_remote_failure(self) -> None:
        from ..results import outcome
        from ..runtime.result import decode

        for pod in [p for p in self._pods.values() if self._is_result_pod(p)]:
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                for state in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
                    if not state or not state.get("exitCode") or not state.get("message"):
                        continue
                    try:
                        self._key = self._key or self._result_key()
                        envelope = decode(state["message"], self._key)
                    except Exception:  # not a result (killed, or truncated): the pod's diagnosis stands
                        continue
                    outcome(envelope, job=self.name, exit_code=state.get("exitCode"), logs_tail=self.pod_log_tail(pod))


class TrainJobDeployer(KubeDeployerBase):
    """A Kubeflow Trainer v2 TrainJob on ``runtime`` with the image fairing built.

    ``runtime``: the training runtime's name [``torch-distributed``]; ``runtime_kind``:
    ``ClusterTrainingRuntime`` (cluster-wide, the default) or ``TrainingRuntime`` (in the
    namespace). ``num_nodes``: pods (one per node) [1]; ``resources_per_node``: the
    ``resources`` of each node's trainer container, as Kubernetes spells them
    (``{"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": 1}}``), else what the
    :func:`~fairing.deployers.mutators.resources` mutator set, else the runtime's.
    ``num_proc_per_node``: processes per node for ``torchrun`` (an int or ``"auto"``),
    else the runtime's. ``api_version``: the TrainJob API [``trainer.kubeflow.org/v1alpha1``].
    Other options: see :class:`~fairing.deployers.kubernetes.KubeDeployerBase`, except
    ``backoff_limit``, ``ttl_seconds_after_finished`` and ``active_deadline_seconds``,
    which the training runtime decides (refused when given).
    """

    container_name = TRAINER_JOB

    @property
    def workload_kind(self):  # the API version is an option
        return WorkloadKind("TrainJob", self.api_version, "TrainJob", PLURAL)

    def __init__(self, *, runtime: str = "torch-distributed", runtime_kind: str = "ClusterTrainingRuntime",
                 num_nodes: int = 1, resources_per_node: Optional[Mapping[str, Any]] = None,
                 num_proc_per_node: Any = None, api_version: str = TRAINER_API, **options: Any) -> None:
        super().__init__(name_prefix=options.pop("name_prefix", "fairing-trainjob"), **options)
        fixed = [key for key, default in (("backoff_limit", 0), ("ttl_seconds_after_finished", None),
                                          ("active_deadline_seconds", None), ("priority_class", None))
                 if getattr(self, key) != default]
        if fixed:
            raise ConfigurationError(
                f"A TrainJob cannot set {', '.join(fixed)}: its training runtime decides how its Jobs are retried and "
                "kept. Set them in your own TrainingRuntime (runtime=..., runtime_kind='TrainingRuntime').")
        if not isinstance(runtime, str) or not runtime:
            raise ConfigurationError(f"runtime must name a training runtime (e.g. 'torch-distributed'), got {runtime!r}.")
        if runtime_kind not in _RUNTIME_KINDS:
            raise ConfigurationError(f"runtime_kind must be one of {list(_RUNTIME_KINDS)}, got {runtime_kind!r}.")
        if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
            raise ConfigurationError(f"num_nodes must be a positive integer, got {num_nodes!r}.")
        if resources_per_node is not None:
            unknown = set(resources_per_node) - {"requests", "limits", "claims"}
            if unknown or not isinstance(resources_per_node, Mapping):
                raise ConfigurationError(
                    "resources_per_node is a container's resources: {'requests': {...}, 'limits': {...}}; "
                    f"got the keys {sorted(unknown)}.")
        if num_proc_per_node is not None and not (
                num_proc_per_node == "auto" or isinstance(num_proc_per_node, int) and num_proc_per_node >= 1):
            raise ConfigurationError(f"num_proc_per_node must be a positive integer or 'auto', got {num_proc_per_node!r}.")
        if api_version.count("/") != 1:
            raise ConfigurationError(f"api_version must be 'group/version', e.g. {TRAINER_API!r}; got {api_version!r}.")
        self.runtime = runtime
        self.runtime_kind = runtime_kind
        self.num_nodes = num_nodes
        self.resources_per_node = dict(resources_per_node) if resources_per_node is not None else None
        self.num_proc_per_node = num_proc_per_node
        self.api_version = api_version

    def manifest(self, image: Any, name: str) -> dict:
        template = self.pod_template(image, name)
        pod, container = template["spec"], template["spec"]["containers"][0]
        extra = sorted(set(container) - _CONTAINER_FIELDS)
        if extra or len(pod["containers"]) > 1:
            raise ConfigurationError(
                f"A TrainJob cannot carry {', '.join(extra) or 'a second container'} (set by a mutator): the "
                "TrainJob API sets the trainer's image, env, resources and volume mounts only. Use the 'pytorchjob' "
                "deployer for full pod specs.")
        trainer: dict = {"image": container["image"], "numNodes": self.num_nodes, "env": container.get("env", [])}
        resources = self.resources_per_node if self.resources_per_node is not None else container.get("resources")
        if resources:
            trainer["resourcesPerNode"] = resources
        if self.num_proc_per_node is not None:
            trainer["numProcPerNode"] = self.num_proc_per_node
        override_spec: dict = {key: pod[key] for key in _POD_FIELDS if pod.get(key)}
        if container.get("volumeMounts"):
            override_spec["containers"] = [{"name": TRAINER_JOB, "volumeMounts": container["volumeMounts"]}]
        override = {"targetJobs": [{"name": TRAINER_JOB}], "metadata": template["metadata"], "spec": override_spec}
        group = self.api_version.split("/")[0]
        spec: dict = {"runtimeRef": {"name": self.runtime, "apiGroup": group, "kind": self.runtime_kind},
                      "trainer": trainer, "podTemplateOverrides": [override]}
        return {"apiVersion": self.api_version, "kind": "TrainJob", "metadata": self.metadata(name), "spec": spec}

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> TrainJobHandle:
        kube = self.kube
        name = name or self.new_name()
        group, version = self.api_version.split("/")
        with self.result_key(name) as owned_by:
            body = self.manifest(image, name)  # the pull secret, undone too
            try:
                try:
                    created = kube.custom.create_namespaced_custom_object(group, version, kube.namespace, PLURAL, body)
                except kube.api_errors as exc:
                    raise_for_api_error(exc, action=f"create TrainJob {name}", kind="TrainJob",
                                        namespace=kube.namespace)
            except MissingCRDError as exc:
                raise MissingCRDError(
                    f"The cluster does not serve TrainJobs ({self.api_version}): Kubeflow Trainer v2 is not installed "
                    "(or is another version). Install Kubeflow Trainer v2 (its CRDs, controller and the "
                    f"{self.runtime!r} runtime), or choose the 'pytorchjob' deployer (training operator v1) or 'job'."
                ) from exc.__cause__
            owned_by(self.api_version, "TrainJob", created["metadata"]["uid"])
        handle = TrainJobHandle(kube, name, kube.namespace, on_event=on_event)
        handle.api_version = self.api_version
        return self.watching(handle).start()
