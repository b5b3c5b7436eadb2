"""Access to a Kubernetes cluster: configuration, namespace, and typed errors.

The environment (kubeconfig, the in-cluster service account) is read here and
nowhere else. ``KubeClient`` wraps one ``kubernetes.client.ApiClient``; pass your own
``api_client`` to point fairing at any cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigurationError, DeployError, MissingCRDError, MissingDependencyError, PermissionDeniedError

__all__ = ["KubeClient", "kubernetes_module", "raise_for_api_error"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def kubernetes_module():
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "kubernetes", "Running jobs on Kubernetes") from exc
    return kubernetes


def raise_for_api_error(exc: Exception, *, action: str, kind: str = "", namespace: str = "") -> None:
    """Turn an ApiException into the FairingError that explains it (always raises)."""
    status = getattr(exc, "status", None)
    try:
        body = json.loads(getattr(exc, "body", "") or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or getattr(exc, "reason", "") or str(exc)
    where = f" in namespace {namespace!r}" if namespace else ""
    if status == 403:
        details = body.get("details") or {}
        raise PermissionDeniedError(
            f"Kubernetes refused to {action}{where}: {message}. Grant the identity fairing runs as "
            f"(see the message) the missing permission on {details.get('kind') or kind or 'the resource'} "
            "with a Role and RoleBinding, or use another namespace or service account."
        ) from exc
    if status == 404 and kind and "the server could not find the requested resource" in message:
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
    if status is None:
        raise DeployError(
            f"Could not reach the Kubernetes API server to {action}: {exc}. Check that the cluster is up and "
            "that your kubeconfig points at it (kubectl cluster-info)."
        ) from exc
    raise DeployError(f"Kubernetes could not {action}{where}: HTTP {status}: {message}") from exc


class KubeClient:
    """One connection to a cluster. ``namespace`` defaults to the kubeconfig context's,
    or the pod's own inside a cluster, or 'default'."""

    def __init__(self, *, api_client: Any = None, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 namespace: Optional[str] = None) -> None:
        k8s = kubernetes_module()
        self.k8s = k8s
        config_namespace = None
        if api_client is None:
            api_client, config_namespace = self._load(k8s, kubeconfig, context)
        self.api_client = api_client
        self.namespace = namespace or config_namespace or "default"

    @staticmethod
    def _load(k8s, kubeconfig: Optional[str], context: Optional[str]):
        path = kubeconfig or os.environ.get("KUBECONFIG")
        in_cluster = (SERVICE_ACCOUNT_DIR / "token").is_file() and not path
        if in_cluster:
            configuration = k8s.client.Configuration()
            k8s.config.load_incluster_config(client_configuration=configuration)
            ns_file = SERVICE_ACCOUNT_DIR / "namespace"
            return k8s.client.ApiClient(configuration), ns_file.read_text().strip() if ns_file.is_file() else None
        path = path or os.path.expanduser("~/.kube/config")
        first = path.split(os.pathsep)[0]
        if not Path(first).is_file():
            raise ConfigurationError(
                f"No kubeconfig at {first!r} and not running inside a cluster. Point KUBECONFIG at your cluster's "
                "kubeconfig, pass kubeconfig=..., or use the 'local' or 'docker' backend."
            )
        try:
            contexts, active = k8s.config.list_kube_config_contexts(config_file=first)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            configuration = k8s.client.Configuration()
            k8s.config.load_kube_config(config_file=first, context=context, client_configuration=configuration)
        except (k8s.config.ConfigException, ValueError, KeyError) as exc:
            raise ConfigurationError(f"The kubeconfig {first!r} could not be used: {exc}. Check its contexts.") from exc
        namespace = (chosen or {}).get("context", {}).get("namespace")
        return k8s.client.ApiClient(configuration), namespace

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

    def to_dict(self, obj: Any) -> dict:
        return obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)
