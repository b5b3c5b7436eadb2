"""Serving deployers: run the serving runtime as an HTTP endpoint.

``LocalServingDeployer`` runs it as a local process on a free loopback port;
``ServingDeployer`` as a Kubernetes Deployment and Service, with a readiness probe on
the v2 health route. Each returns an endpoint handle with ``url``, ``wait_ready()``,
``request()``, ``logs()`` and ``delete()``.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Iterator, Optional

from ..errors import ConfigurationError, JobFailedError, JobTimeoutError
from ..events import EventCallback
from ..kube import JOB_LABEL, raise_for_api_error
from ..kube.workloads import WorkloadKind, read_object
from .kubernetes import KubeDeployerBase, KubeHandle
from .local import LocalDeployer, LocalHandle

__all__ = ["LocalServingDeployer", "LocalEndpointHandle", "ServingDeployer", "KubeEndpointHandle", "SERVING_PORT",
           "SERVING_DEPLOYERS", "serving_deployer", "server_env"]

SERVING_PORT = 8080
READY_PATH = "/v2/health/ready"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, method: str, body: Optional[dict], timeout: float) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, {"error": exc.reason}


class LocalEndpointHandle:
    """A serving process on this machine."""

    def __init__(self, process: LocalHandle, port: int) -> None:
        self.process = process
        self.name = process.name
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.process.status()
            if status.done:
                status = self.process.wait()  # it has ended: this only waits for its log to be read
                raise JobFailedError(
                    f"The endpoint {self.name} stopped before it was ready (exit code {status.exit_code}); "
                    "see the log below (a failing load() is the usual cause).",
                    job=self.name, exit_code=status.exit_code, logs_tail=self.process._tail(),
                )
            try:
                if _http(self.url + READY_PATH, "GET", None, 2)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)  # a local process offers nothing to watch
        raise JobTimeoutError(f"The endpoint {self.name} was not ready within {timeout:g} s.", job=self.name,
                              logs_tail=self.process._tail())

    def request(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 60) -> tuple[int, Any]:
        return _http(self.url + path, method, body, timeout)

    def logs(self, follow: bool = False) -> Iterator[str]:
        return self.process.logs(follow)

    def delete(self) -> None:
        self.process.delete()


class LocalServingDeployer(LocalDeployer):
    """Serves a local image from a subprocess on a free loopback port."""

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> LocalEndpointHandle:
        port = _free_port()
        process = LocalDeployer(env={**self.env, "PORT": str(port), "HOST": "127.0.0.1"}).deploy(
            image, name=name, on_event=on_event)
        return LocalEndpointHandle(process, port)


class KubeEndpointHandle(KubeHandle):
    """A Deployment and its Service. ``url`` is the in-cluster address; ``request()`` goes
    through the API server's service proxy, so it works from outside the cluster too."""

    kind = "Deployment"
    WORKLOAD = WorkloadKind("Endpoint", "apps/v1", "Deployment", "deployments", endpoint=True)

    def __init__(self, *args: Any, replicas: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replicas = replicas

    @classmethod
    def attach(cls, kube: Any, name: str, *, on_event: Any = None) -> "KubeEndpointHandle":
        return cls(kube, name, kube.namespace, on_event=on_event,
                   replicas=cls.replicas_of(read_object(kube, cls.WORKLOAD, name)))

    @staticmethod
    def replicas_of(obj: dict) -> int:
        """How many servers the object asks for."""
        return (obj.get("spec") or {}).get("replicas") or 1

    @classmethod
    def service_for(cls, name: str) -> tuple[str, int]:
        """The Service (name, port) that fronts the pods of the endpoint ``name``."""
        return name, SERVING_PORT

    @property
    def service(self) -> tuple[str, int]:
        """The Service (name, port) that fronts the pods."""
        return self.service_for(self.name)

    @property
    def url(self) -> str:
        name, port = self.service
        return f"http://{name}.{self.namespace}.svc:{port}"

    def _list_objects(self, **kwargs):
        return self.kube.apps.list_namespaced_deployment(**kwargs)

    def _phase(self, obj: dict) -> Optional[str]:
        return None  # a server does not end

    def _delete_object(self) -> None:
        try:
            self.kube.core.delete_namespaced_service(self.name, self.namespace)
        except self.kube.k8s.client.ApiException as exc:
            if exc.status != 404:
                raise
        self.kube.apps.delete_namespaced_deployment(self.name, self.namespace, propagation_policy="Foreground")

    def replica(self, pod: dict) -> str:
        return pod["metadata"]["name"].rsplit("-", 1)[-1]

    def _ready_count(self) -> int:
        return ((self._obj or {}).get("status") or {}).get("readyReplicas") or 0

    def wait_ready(self, timeout: float = 300) -> None:
        self.wait_until(self._ready, timeout=timeout, on_timeout=lambda: JobTimeoutError(
            f"The endpoint {self.name} had {self._ready_count()} of {self.replicas} replicas ready "
            f"after {timeout:g} s (pods: {self._pods_text()}; events: {self._events_text()}).",
            job=self.name, logs_tail=self.tail()))

    def _ready(self) -> bool:
        if self._ready_count() >= self.replicas:
            return True
        for pod in list(self._pods.values()):
            self._raise_early_exit(pod)
        return False

    def _raise_early_exit(self, pod: dict) -> None:
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if terminated and terminated.get("exitCode"):
                raise JobFailedError(
                    f"The endpoint's pod {pod['metadata']['name']} exited with code {terminated['exitCode']} "
                    "before it was ready; see the log below (a failing load() is the usual cause).",
                    job=self.name, exit_code=terminated["exitCode"], logs_tail=self.pod_log_tail(pod),
                )

    def request(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 60) -> tuple[int, Any]:
        api = self.kube.api_client
        cfg = api.configuration
        service, port = self.service
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for setting in cfg.auth_settings().values():  # tokens; client certificates are set on the pool
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        url = f"{cfg.host}/api/v1/namespaces/{self.namespace}/services/{service}:{port}/proxy{path}"
        # The client's urllib3 pool carries the cluster's CA and client certificate; its
        # request wrappers differ between client versions, the pool does not.
        response = api.rest_client.pool_manager.request(
            method, url, headers=headers, body=json.dumps(body).encode() if body is not None else None,
            timeout=timeout)
        try:
            return response.status, json.loads(response.data or b"null")
        except ValueError:
            return response.status, {"error": response.data.decode(errors="replace")}

    def scale(self, replicas: int) -> None:
        self.kube.apps.patch_namespaced_deployment_scale(self.name, self.namespace, {"spec": {"replicas": replicas}})
        self.replicas = replicas


#: What the pod template gives a job's container that a server has no use for (a server
#: reports no result and pushes no outputs); everything else, the mutators' env and
#: secret_env included, reaches the server.
_JOB_ONLY_ENV = ("FAIRING_RESULT_FILE", "FAIRING_RESULT_LOG", "FAIRING_RESULT_KEY_FILE", "FAIRING_OUTPUTS_TARGET",
                 "FAIRING_OUTPUTS_AUTH_FILE", "FAIRING_OUTPUTS_INSECURE")


def server_env(container: dict, *extra: dict) -> list:
    """The env of a server's container made from a job's pod template: the mutators' variables
    kept, the job-only ones dropped, ``PORT`` and ``extra`` set."""
    from ..runtime.result import KEY_FILE_ENV

    drop = {*_JOB_ONLY_ENV, KEY_FILE_ENV, "PORT", *(e["name"] for e in extra)}
    kept = [e for e in container.get("env") or [] if e.get("name") not in drop]
    return [{"name": "PORT", "value": str(SERVING_PORT)}, *kept, *extra]


class ServingDeployer(KubeDeployerBase):
    """A Deployment with ``replicas`` pods and a ClusterIP Service on port 8080."""

    container_name = "fairing-serving"
    workload_kind = KubeEndpointHandle.WORKLOAD
    writes_result_key = False  # an endpoint reports no result

    def required_access(self) -> list:
        from ..kube.access import Access

        return [*super().required_access(), Access("patch", "deployments/scale", "apps"),
                *(Access(v, "services") for v in ("create", "get", "delete"))]
    queueable = False

    def __init__(self, *, replicas: int = 1, **options: Any) -> None:
        super().__init__(name_prefix=options.pop("name_prefix", "fairing-endpoint"), **options)
        self.replicas = replicas

    def manifests(self, image: Any, name: str) -> tuple[dict, dict]:
        template = self.pod_template(image, name)
        template["spec"]["restartPolicy"] = "Always"
        container = template["spec"]["containers"][0]
        container["env"] = server_env(container)
        container["ports"] = [{"name": "http", "containerPort": SERVING_PORT}]
        container["readinessProbe"] = {"httpGet": {"path": READY_PATH, "port": SERVING_PORT},
                                       "periodSeconds": 2, "failureThreshold": 3}
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": SERVING_PORT},
                                      "initialDelaySeconds": 10, "periodSeconds": 10}
        template["metadata"]["annotations"].pop("sidecar.istio.io/inject", None)  # a server may have a sidecar
        selector = {JOB_LABEL: name}
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.metadata(name),
                      "spec": {"replicas": self.replicas, "selector": {"matchLabels": selector}, "template": template}}
        service = {"apiVersion": "v1", "kind": "Service", "metadata": self.metadata(name),
                   "spec": {"selector": selector, "ports": [{"name": "http", "port": SERVING_PORT,
                                                             "targetPort": SERVING_PORT}]}}
        return deployment, service

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> KubeEndpointHandle:
        kube = self.kube
        name = name or self.new_name()
        created = None
        try:
            with self.making_secrets(name):
                deployment, service = self.manifests(image, name)  # the pull secret, undone too
                created = kube.apps.create_namespaced_deployment(kube.namespace, deployment)
                self.own_secrets(name, "apps/v1", "Deployment", created.metadata.uid)
                kube.core.create_namespaced_service(kube.namespace, service)
        except BaseException as exc:
            if created is not None:  # only the one made here: a Deployment of that name may be someone else's
                try:
                    kube.apps.delete_namespaced_deployment(name, kube.namespace)
                except kube.k8s.client.ApiException:
                    pass  # gone already
            if not isinstance(exc, kube.api_errors):
                raise
            raise_for_api_error(exc, action=f"create the endpoint {name}", kind="Deployment", namespace=kube.namespace)
        return KubeEndpointHandle(kube, name, kube.namespace, on_event=on_event, replicas=self.replicas).start()


from .._names import SERVING_DEPLOYERS  # noqa: E402  (the table lives at the bottom)


def serving_deployer(name: str, backend: Any) -> Any:
    """The serving deployer ``name`` ('serving': a Deployment and Service; 'kserve': an
    InferenceService) on ``backend``'s cluster, with its serving deployer's mutators and
    pull credentials."""
    from .._options import load

    factory = load(SERVING_DEPLOYERS, name, "serving deployer")
    like = getattr(backend, "serving", None)
    if not isinstance(like, KubeDeployerBase):
        raise ConfigurationError(
            f"deployer={name!r} runs on a cluster; the {getattr(backend, 'name', '?')} backend does not "
            "(use backend='kubernetes' or 'kubeflow').")
    return factory(kube=like.kube, mutators=like.mutators, pull_credentials=like.pull_credentials,
                   labels=like.labels, annotations=like.annotations, insecure_hosts=like.insecure_hosts)
