"""KServe deployer: the serving image as an InferenceService (serving.kserve.io/v1beta1) with a
custom predictor container — the image fairing just built, not a stock model server.

The handle is ready when the InferenceService's ``Ready`` condition is true; ``url`` is
its ``status.url``. ``request()`` goes through the API server's proxy to the
predictor's Service, so calls work from outside the cluster.

What the controller reports goes back as typed errors: a predictor that exits before it
is ready is a :class:`~fairing.errors.JobFailedError` naming the InferenceService's
not-ready conditions (``PredictorReady=False`` and its reason) and, when KServe has
recorded one, its ``modelStatus`` (``BlockedByFailedLoad``, ``ModelLoadFailed`` with the
container's last log lines, which the predictor hands over as its termination message;
in RawDeployment mode KServe looks at the pods again only when the Deployment changes,
so it may not have), with the predictor's log tail. A spec the controller cannot
reconcile (a storage URI it does not support...) is a :class:`~fairing.errors.DeployError`
with the controller's Warning event; one the webhook refuses, with the webhook's message.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import ConfigurationError, DeployError, JobFailedError
from ..events import EventCallback
from ..kube import raise_for_api_error
from ..kube.workloads import WorkloadKind
from .kubernetes import KubeDeployerBase
from .serving import READY_PATH, SERVING_PORT, KubeEndpointHandle, server_env

__all__ = ["InferenceServiceDeployer", "InferenceServiceHandle"]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
#: Seconds to wait, after a predictor pod exited, for KServe to record why in the
#: InferenceService's status before the pod's own state is reported instead.
STATUS_GRACE = 10.0
EVENT_CHECK_INTERVAL = 5.0
_CONFLICT = "the object has been modified"
DELETE_TIMEOUT = 90.0  # seconds delete() waits for the InferenceService and its pods to be gone


class InferenceServiceHandle(KubeEndpointHandle):
    kind = "InferenceService"
    WORKLOAD = WorkloadKind("InferenceService", f"{GROUP}/{VERSION}", "InferenceService", PLURAL, endpoint=True)

    @staticmethod
    def replicas_of(obj: dict) -> int:
        return ((obj.get("spec") or {}).get("predictor") or {}).get("minReplicas") or 1

    def _list_objects(self, **kwargs):
        return self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, plural=PLURAL, **kwargs)

    def _delete_object(self) -> None:
        self.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                         propagation_policy="Foreground")
        # KServe's Deployment and its pods can outlive the InferenceService by a moment:
        # delete() returns when the pod watch has seen the predictor's pods go too.
        self.wait_until(lambda: self._obj_gone and not self._pods, timeout=DELETE_TIMEOUT, diagnose_pods=False,
                        tick=1.0)

    def _ready_count(self) -> int:
        conditions = ((self._obj or {}).get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return self.replicas if ready else 0

    _exited_at: Optional[float] = None

    def status_text(self) -> str:
        """What the InferenceService's status says is wrong: its model status and the
        conditions that are not true ('' when it says nothing)."""
        status = (self._obj or {}).get("status") or {}
        parts = []
        model = status.get("modelStatus") or {}
        failure = model.get("lastFailureInfo") or {}
        if failure:
            message = (failure.get("message") or "").strip().splitlines()
            parts.append(f"modelStatus {model.get('transitionStatus')}, lastFailureInfo {failure.get('reason')}"
                         f" (exit code {failure.get('exitCode')}){': ' + message[-1] if message else ''}")
        for cond in status.get("conditions") or []:
            if cond.get("status") != "True":
                detail = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
                parts.append(f"condition {cond.get('type')}={cond.get('status')}{' (' + detail + ')' if detail else ''}")
        return "; ".join(parts)

    _events_checked = 0.0

    def _ready(self) -> bool:
        if super()._ready():
            return True
        self._raise_controller_error()
        return False

    def _raise_controller_error(self) -> None:
        """A spec KServe's controller cannot reconcile (a storage URI it does not support...)
        shows only as a Warning event on the InferenceService: raise it (checked at most
        every few seconds while waiting)."""
        if time.monotonic() - self._events_checked < EVENT_CHECK_INTERVAL:
            return
        self._events_checked = time.monotonic()
        selector = f"involvedObject.kind=InferenceService,involvedObject.name={self.name},type=Warning"
        try:
            events = self.kube.core.list_namespaced_event(self.namespace, field_selector=selector).items
        except self.kube.k8s.client.ApiException:
            return  # events are a diagnosis, not a requirement
        for event in events:
            # A conflict on the status is the controller's own race, which it retries.
            if event.reason == "InternalError" and _CONFLICT not in (event.message or ""):
                raise DeployError(
                    f"KServe's controller cannot reconcile the InferenceService {self.name}: {event.message}. "
                    "Fix the spec (e.g. the storage URI), then create the endpoint again.")

    def _raise_diagnosis(self) -> None:
        try:
            super()._raise_diagnosis()
        except JobFailedError:  # a crash loop: say it with what KServe recorded, once it has
            for pod in list(self._pods.values()):
                self._raise_early_exit(pod)
            if self._exited_at is None:
                raise

    def _raise_early_exit(self, pod: dict) -> None:
        failure = (((self._obj or {}).get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo")
        exited = None
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if terminated and terminated.get("exitCode"):
                exited = terminated
        if exited is None and not failure:
            return
        if not failure:  # the pod's state is in before KServe's account of it: give KServe a moment
            self._exited_at = self._exited_at or time.monotonic()
            if time.monotonic() - self._exited_at < STATUS_GRACE:
                return
        code = (failure or {}).get("exitCode", (exited or {}).get("exitCode"))
        raise JobFailedError(
            f"The InferenceService {self.name} failed before it was ready: {self.status_text() or 'no status yet'} "
            f"(pod {pod['metadata']['name']}). See the log below (a failing load() is the usual cause).",
            job=self.name, exit_code=code, logs_tail=self.pod_log_tail(pod))

    @classmethod
    def service_for(cls, name: str) -> tuple[str, int]:
        return f"{name}-predictor", 80  # the Service KServe makes for the predictor

    @property
    def url(self) -> str:
        return ((self._obj or {}).get("status") or {}).get("url") or super().url


class InferenceServiceDeployer(KubeDeployerBase):
    """An InferenceService whose predictor runs the fairing serving image.

    ``replicas``: predictor pods (min = max); ``storage_uri``: a model KServe fetches into
    ``/mnt/models`` before the predictor starts (``oci://`` as a modelcar, ``s3://``,
    ``gs://``, ``pvc://``... with its storage initializer); ``dry_run``: only validate
    against the API server. Other options: see
    :class:`~fairing.deployers.kubernetes.KubeDeployerBase`.
    """

    queueable = False

    container_name = "kserve-container"  # the name KServe expects for a custom predictor

    workload_kind = InferenceServiceHandle.WORKLOAD
    writes_result_key = False  # an endpoint reports no result

    def __init__(self, *, replicas: int = 1, dry_run: bool = False, storage_uri: Optional[str] = None,
                 **options: Any) -> None:
        super().__init__(name_prefix=options.pop("name_prefix", "fairing-isvc"), **options)
        if storage_uri is not None and (not isinstance(storage_uri, str) or not storage_uri.strip()):
            raise ConfigurationError(f"storage_uri must be a URI such as 'oci://registry/model:1', got {storage_uri!r}.")
        self.replicas = replicas
        self.dry_run = dry_run
        self.storage_uri = storage_uri

    def manifest(self, image: Any, name: str) -> dict:
        template = self.pod_template(image, name)
        container = template["spec"]["containers"][0]
        # KServe's custom-predictor convention: the model appears under /mnt/models
        storage = [{"name": "STORAGE_URI", "value": self.storage_uri}] if self.storage_uri else []
        container["env"] = server_env(container, *storage)
        container["ports"] = [{"containerPort": SERVING_PORT, "protocol": "TCP"}]
        container["readinessProbe"] = {"httpGet": {"path": READY_PATH, "port": SERVING_PORT},
                                       "periodSeconds": 2, "failureThreshold": 3}
        # A predictor that exits hands its last log lines to KServe (lastFailureInfo).
        container.pop("terminationMessagePath", None)
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
        predictor = {"minReplicas": self.replicas, "maxReplicas": self.replicas, "containers": [container],
                     # on the predictor's pods too: fairing's watch selects them by its job label
                     "labels": template["metadata"]["labels"]}
        for key in ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets", "volumes"):
            if key in template["spec"]:
                predictor[key] = template["spec"][key]
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": self.metadata(name),
                "spec": {"predictor": predictor}}

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> InferenceServiceHandle:
        kube = self.kube
        name = name or self.new_name()
        kwargs = {"dry_run": "All"} if self.dry_run else {}
        with self.making_secrets(name):
            body = self.manifest(image, name)  # the pull secret, undone too
            try:
                created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, body,
                                                                      **kwargs)
            except kube.api_errors as exc:
                raise_for_api_error(exc, action=f"create InferenceService {name}", kind="InferenceService",
                                    namespace=kube.namespace)
            if self.dry_run:
                self.delete_secrets(name)  # nothing was made to use them
            else:
                self.own_secrets(name, f"{GROUP}/{VERSION}", "InferenceService", created["metadata"]["uid"])
        handle = InferenceServiceHandle(kube, name, kube.namespace, on_event=on_event, replicas=self.replicas)
        if self.dry_run:
            handle._obj = created  # validated by the API server; nothing to watch
            handle._deleted = True
            return handle
        return handle.start()
