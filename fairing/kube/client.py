"""One connection to a Kubernetes cluster, and API errors turned into typed FairingErrors.

``KubeClient`` wraps one ``kubernetes.client.ApiClient``; pass your own ``api_client``
to point fairing at any cluster. Without one it loads the kubeconfig, or the pod's
service account inside a cluster, as :mod:`fairing.environment` reports them.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..environment import Environment, current
from ..errors import ConfigurationError, DeployError, MissingCRDError, MissingDependencyError, PermissionDeniedError

__all__ = ["KubeClient", "kubernetes_module", "raise_for_api_error", "is_status", "pod_namespace"]

#: A namespace name (an RFC 1123 label), as the API server accepts it.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def pod_namespace(env: Environment) -> Optional[str]:
    """The namespace of the pod fairing runs in, or None outside a pod. A namespace file that
    is there but empty, not a namespace name, or unreadable is a ConfigurationError: a pod
    whose namespace cannot be read must not send jobs to another one."""
    try:
        text = env.pod_namespace
    except OSError as exc:
        raise ConfigurationError(
            f"The pod's namespace file {env.service_account_dir / 'namespace'} cannot be read ({exc.strerror}). "
            "Give the namespace yourself: namespace=..., FAIRING_NAMESPACE or the namespace setting.") from None
    if text is None or _NAMESPACE.fullmatch(text):
        return text
    what = "empty" if not text else "not a namespace name"
    raise ConfigurationError(
        f"The pod's namespace file {env.service_account_dir / 'namespace'} is {what} (a namespace is up to 63 "
        "lowercase letters, digits and '-'). The service account's volume is not what Kubernetes mounts: give the "
        "namespace yourself (namespace=..., FAIRING_NAMESPACE or the namespace setting), or fix the pod's volumes.")


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*")


def _check_service_address(service: "dict | Any") -> None:
    """KUBERNETES_SERVICE_HOST (an IP address, v4 or v6, or a host name) and _PORT (1-65535)
    as the kubelet sets them; anything else would only fail later, inside urllib3, with no
    word about the variables (a value with a newline would even reach the request line)."""
    import ipaddress

    host, port = service.get("KUBERNETES_SERVICE_HOST"), service.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return  # the loader says what is missing
    try:
        ipaddress.ip_address(host)
        ok = True
    except ValueError:
        ok = bool(_HOSTNAME.fullmatch(host))
    if ok and port.isascii() and port.isdigit() and 0 < int(port) < 65536:
        return
    raise ConfigurationError(
        f"KUBERNETES_SERVICE_HOST={host!r} and KUBERNETES_SERVICE_PORT={port!r} are not the API server's address (an "
        "IP address or host name, and a port 1-65535), as Kubernetes sets them in every pod. Unset or fix them, or "
        "name a kubeconfig (KUBECONFIG, kubeconfig=...).")


def kubernetes_module():
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "kubernetes", "Running jobs on Kubernetes") from exc
    return kubernetes


def raise_for_api_error(exc: Exception, *, action: str, kind: str = "", namespace: str = "") -> None:
    """Turn an ApiException into the FairingError that explains it (always raises)."""
    status = getattr(exc, "status", None)
    if status is None:  # no answer at all: connection refused, TLS, DNS...
        raise DeployError(
            f"Could not reach the Kubernetes API server to {action}: {exc}. Check that the cluster is up and "
            "that your kubeconfig points at it (kubectl cluster-info)."
        ) from exc
    try:
        body = json.loads(getattr(exc, "body", "") or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or getattr(exc, "reason", "") or str(exc)
    where = f" in namespace {namespace!r}" if namespace else ""
    if status == 403 and kind and "custom resource definition is terminating" in message:
        raise MissingCRDError(  # being uninstalled: as good as missing
            f"The cluster is removing the resource type {kind} (while trying to {action}: {message}). "
            "Install the operator that provides it again (for TFJob and PyTorchJob: the Kubeflow training operator), "
            "or choose the 'job' deployer."
        ) from exc
    if status == 403:
        details = body.get("details") or {}
        raise PermissionDeniedError(
            f"Kubernetes refused to {action}{where}: {message}. Grant the identity fairing runs as "
            f"(see the message) the missing permission on {details.get('kind') or kind or 'the resource'} "
            "with a Role and RoleBinding, or use another namespace or service account."
        ) from exc
    unknown_type = not body.get("details") and (
        "could not find the requested resource" in message or message in ("Not Found", "404 page not found"))
    if status == 404 and kind and unknown_type:  # no such resource type, as opposed to no such object
        raise MissingCRDError(
            f"The cluster does not know the resource type {kind} (while trying to {action}). "
            "Install the operator that provides it (for TFJob and PyTorchJob: the Kubeflow training operator), "
            "or choose the 'job' deployer."
        ) from exc
    if status == 401:
        raise PermissionDeniedError(
            f"Kubernetes did not accept fairing's credentials (while trying to {action}): {message}. "
            "Refresh your kubeconfig (e.g. log in to the cluster again)."
        ) from exc
    if "failed calling webhook" in message:  # an admission webhook down refuses every such object, queued or not
        hook = re.search(r'failed calling webhook "([^"]+)"', message)
        kueue = " (Kueue's: its controller in kueue-system is down or starting)" if "kueue" in message else ""
        raise DeployError(
            f"Kubernetes could not {action}{where}: the admission webhook {hook.group(1) if hook else ''} it must "
            f"ask first does not answer{kueue}: {message}. Until it answers, the cluster refuses every such object; "
            "retry later, or ask the cluster's admins (kubectl get mutatingwebhookconfiguration,"
            "validatingwebhookconfiguration names whose webhook it is).") from exc
    raise DeployError(f"Kubernetes could not {action}{where}: HTTP {status}: {message}") from exc


def is_status(exc: BaseException, *codes: int) -> bool:
    """True when ``exc`` is an API error with one of these HTTP statuses."""
    return getattr(exc, "status", None) in codes


class KubeClient:
    """One connection to a cluster. ``kubeconfig`` may list several files (as ``KUBECONFIG``
    does: merged as kubectl merges them, :mod:`.kubeconfig`); ``context``: the kubeconfig
    context to use [its current-context]. ``namespace`` [the pod's own inside a pod, else
    the kubeconfig context's, else 'default']; the facade passes the ``namespace`` setting
    here, so the whole order is: argument > ``FAIRING_NAMESPACE`` > project and user
    settings > the pod's namespace > the kubeconfig context's > 'default'.
    ``environment``: where to find the kubeconfig and the service account
    [:func:`fairing.environment.current`]. Inside a pod with no kubeconfig named, fairing
    connects as the pod's service account (its token, refreshed as the kubelet rotates
    it, and its CA)."""

    def __init__(self, *, api_client: Any = None, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 namespace: Optional[str] = None, environment: Optional[Environment] = None) -> None:
        k8s = kubernetes_module()
        self.k8s = k8s
        env = environment or current()
        config_namespace = None
        if namespace and not (isinstance(namespace, str) and _NAMESPACE.fullmatch(namespace)):
            # before connecting: the API would only answer 404 for every call in it
            raise ConfigurationError(
                f"The namespace {namespace!r} (namespace=..., FAIRING_NAMESPACE or the namespace setting) is not a "
                "namespace name: up to 63 lowercase letters, digits and '-', starting and ending with a letter or "
                "digit, e.g. 'ml-jobs'.")
        if api_client is None:
            api_client, config_namespace = self._load(k8s, kubeconfig, context, env)
        self.api_client = api_client
        self.namespace = namespace or pod_namespace(env) or config_namespace or "default"

    @staticmethod
    def _load(k8s, kubeconfig: Optional[str], context: Optional[str], env: Environment):
        if env.in_cluster and not kubeconfig and not env.kubeconfig_env:
            return KubeClient._in_cluster(k8s, env), None
        from .kubeconfig import load

        spec = kubeconfig or env.kubeconfig_env or str(env.kubeconfig)
        return load(k8s, spec, context)

    @staticmethod
    def _in_cluster(k8s, env: Environment):
        from kubernetes.config.incluster_config import InClusterConfigLoader

        sa = env.service_account_dir
        _check_service_address(env.kubernetes_service)
        configuration = k8s.client.Configuration()
        try:
            InClusterConfigLoader(token_filename=str(sa / "token"), cert_filename=str(sa / "ca.crt"),
                                  environ=dict(env.kubernetes_service)).load_and_set(configuration)
        except (k8s.config.ConfigException, OSError, ValueError) as exc:
            raise ConfigurationError(
                f"fairing runs in a pod (there is a service-account token in {sa}) but cannot use it: {exc}. "
                "The pod needs its service account's token and CA mounted and KUBERNETES_SERVICE_HOST/PORT set "
                "(automountServiceAccountToken), or name a kubeconfig (KUBECONFIG, kubeconfig=...).") from None
        return k8s.client.ApiClient(configuration)

    @property
    def api_errors(self) -> tuple:
        """What a call may raise: the API's answer, or no answer (connection refused, TLS...);
        :func:`raise_for_api_error` explains both."""
        import urllib3

        return (self.k8s.client.ApiException, urllib3.exceptions.HTTPError)

    @property
    def core(self):
        return self.k8s.client.CoreV1Api(self.api_client)

    @property
    def batch(self):
        return self.k8s.client.BatchV1Api(self.api_client)

    @property
    def custom(self):
        return self.k8s.client.CustomObjectsApi(self.api_client)

    @property
    def apps(self):
        return self.k8s.client.AppsV1Api(self.api_client)

    def watch(self):
        return self.k8s.watch.Watch()

    def pod_log(self, name: str, namespace: str, **options: Any) -> str:
        """A pod's log as text (``options``: ``tail_lines``, ``previous``, ``container``...). Read
        raw: the kubernetes client before v31 turns a log that happens to be one JSON document
        into a Python repr (``{'a': 1}``), and a result line could be such a log's last line."""
        response = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False, **options)
        try:
            return response.data.decode("utf-8", "replace")
        finally:
            response.release_conn()

    def to_dict(self, obj: Any) -> dict:
        return obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)
