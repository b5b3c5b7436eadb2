"""KServe deployer: the serving image as an InferenceService (serving.kserve.io/v1beta1) with a
custom predictor container — the image fairing just built, not a stock model server.

The handle is ready when the InferenceService's ``Ready`` condition is true; ``url`` is
its ``status.url``. ``request()`` goes through the API server's proxy to the
predictor's Service, so calls work from outside the cluster.
"""

from __future__ import annotations

from typing import Any, Optional

from ..events import EventCallback
from ..kube import raise_for_api_error
from .kubernetes import KubeDeployerBase
from .serving import READY_PATH, SERVING_PORT, KubeEndpointHandle

__all__ = ["InferenceServiceDeployer", "InferenceServiceHandle"]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class InferenceServiceHandle(KubeEndpointHandle):
    kind = "InferenceService"

    def _list_objects(self, **kwargs):
        return self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, plural=PLURAL, **kwargs)

    def _delete_object(self) -> None:
        self.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                         propagation_policy="Foreground")

    def _ready_count(self) -> int:
        conditions = ((self._obj or {}).get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return self.replicas if ready else 0

    @property
    def service(self) -> tuple[str, int]:
        return f"{self.name}-predictor", 80  # the Service KServe makes for the predictor

    @property
    def url(self) -> str:
        return ((self._obj or {}).get("status") or {}).get("url") or super().url


class InferenceServiceDeployer(KubeDeployerBase):
    """An InferenceService whose predictor runs the fairing serving image."""

    container_name = "kserve-container"  # the name KServe expects for a custom predictor

    def __init__(self, *, replicas: int = 1, dry_run: bool = False, **options: Any) -> None:
        super().__init__(name_prefix=options.pop("name_prefix", "fairing-isvc"), **options)
        self.replicas = replicas
        self.dry_run = dry_run

    def manifest(self, image: Any, name: str) -> dict:
        template = self.pod_template(image, name)
        container = template["spec"]["containers"][0]
        container["env"] = [{"name": "PORT", "value": str(SERVING_PORT)}]
        container["ports"] = [{"containerPort": SERVING_PORT, "protocol": "TCP"}]
        container["readinessProbe"] = {"httpGet": {"path": READY_PATH, "port": SERVING_PORT}}
        for key in ("terminationMessagePath", "terminationMessagePolicy"):
            container.pop(key, None)
        predictor = {"minReplicas": self.replicas, "maxReplicas": self.replicas, "containers": [container]}
        for key in ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets", "volumes"):
            if key in template["spec"]:
                predictor[key] = template["spec"][key]
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": self.metadata(name),
                "spec": {"predictor": predictor}}

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> InferenceServiceHandle:
        kube = self.kube
        name = name or self.new_name()
        body = self.manifest(image, name)
        kwargs = {"dry_run": "All"} if self.dry_run else {}
        try:
            created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, body,
                                                                  **kwargs)
        except kube.api_errors as exc:
            raise_for_api_error(exc, action=f"create InferenceService {name}", kind="InferenceService",
                                namespace=kube.namespace)
        handle = InferenceServiceHandle(kube, name, kube.namespace, on_event=on_event, replicas=self.replicas)
        if self.dry_run:
            handle._obj = created  # validated by the API server; nothing to watch
            handle._deleted = True
            return handle
        return handle.start()
