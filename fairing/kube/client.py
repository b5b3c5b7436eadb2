"""One connection to a Kubernetes cluster, and API errors turned into typed FairingErrors.

``KubeClient`` wraps one ``kubernetes.client.ApiClient``; pass your own ``api_client``
to point fairing at any cluster. Without one it loads the kubeconfig, or the pod's
service account inside a cluster, as :mod:`fairing.environment` reports them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from ..environment import Environment, current
from ..errors import ConfigurationError, DeployError, MissingCRDError, MissingDependencyError, PermissionDeniedError

__all__ = ["KubeClient", "kubernetes_module", "raise_for_api_error", "is_status"]


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
    raise DeployError(f"Kubernetes could not {action}{where}: HTTP {status}: {message}") from exc


def is_status(exc: BaseException, *codes: int) -> bool:
    """True when ``exc`` is an API error with one of these HTTP statuses."""
    return getattr(exc, "status", None) in codes


class KubeClient:
    """One connection to a cluster. ``namespace`` defaults to the kubeconfig context's,
    or the pod's own inside a cluster, or 'default'. ``environment``: where to find the
    kubeconfig and the service account [:func:`fairing.environment.current`]."""

    def __init__(self, *, api_client: Any = None, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 namespace: Optional[str] = None, environment: Optional[Environment] = None) -> None:
        k8s = kubernetes_module()
        self.k8s = k8s
        config_namespace = None
        if api_client is None:
            api_client, config_namespace = self._load(k8s, kubeconfig, context, environment or current())
        self.api_client = api_client
        self.namespace = namespace or config_namespace or "default"

    @staticmethod
    def _load(k8s, kubeconfig: Optional[str], context: Optional[str], env: Environment):
        if env.in_cluster and not kubeconfig and not env.kubeconfig_env:
            configuration = k8s.client.Configuration()
            k8s.config.load_incluster_config(client_configuration=configuration)
            return k8s.client.ApiClient(configuration), env.pod_namespace
        first = kubeconfig.split(os.pathsep)[0] if kubeconfig else str(env.kubeconfig)
        if not Path(first).is_file():
            raise ConfigurationError(
                f"No kubeconfig at {first!r} and not running inside a cluster. Point KUBECONFIG at your cluster's "
                "kubeconfig, pass kubeconfig=..., or use the 'local' or 'docker' backend."
            )
        import yaml  # the kubernetes client's own dependency: a kubeconfig that is not YAML raises its error

        try:
            contexts, active = k8s.config.list_kube_config_contexts(config_file=first)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            configuration = k8s.client.Configuration()
            k8s.config.load_kube_config(config_file=first, context=context, client_configuration=configuration)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise ConfigurationError(f"The kubeconfig {first!r} could not be used: it is not valid YAML{at}. "
                                     "Fix it, or point KUBECONFIG at another one.") from None
        except (k8s.config.ConfigException, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"The kubeconfig {first!r} could not be used: {exc}. Check its contexts.") from exc
        namespace = (chosen or {}).get("context", {}).get("namespace")
        return k8s.client.ApiClient(configuration), namespace

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
