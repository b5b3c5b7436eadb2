"""Secrets fairing writes: registry credentials (one ``dockerconfigjson`` shape for image
pull secrets and Kaniko's push config alike) and the short-lived ones of a build.

Credentials reach a pod only through a Secret, mounted as a file or referenced with
``secretKeyRef``; never as a plain env value, and never in an error or event.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Iterable, Mapping, Optional

from ..errors import DeployError
from .client import is_status, raise_for_api_error
from .labels import MANAGED_BY

__all__ = ["write_secret", "delete_secret", "registry_secret", "DOCKER_CONFIG_KEY",
           "DOCKER_CONFIG_TYPE"]

DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_KEY = ".dockerconfigjson"


def _b64(value: "str | bytes") -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def write_secret(kube: Any, name: str, data: Mapping[str, "str | bytes"], *, type: str = "Opaque",
                 replace: bool = False) -> Callable[[], None]:
    """Create the Secret ``name`` (replacing one of that name when ``replace``); returns
    a function that deletes it. API failures raise the FairingError that explains them."""
    body = {"metadata": {"name": name, "labels": dict(MANAGED_BY)}, "type": type,
            "data": {key: _b64(value) for key, value in data.items()}}
    try:
        try:
            kube.core.create_namespaced_secret(kube.namespace, body)
        except kube.k8s.client.ApiException as exc:
            if not is_status(exc, 409):
                raise
            if not replace:
                raise DeployError(
                    f"A Secret named {name} already exists in namespace {kube.namespace}, and fairing does not "
                    "overwrite a Secret it did not make. Choose another job name (name=...), or delete that Secret "
                    "if it is left over from an earlier job.") from None
            kube.core.replace_namespaced_secret(name, kube.namespace, body)
    except kube.api_errors as exc:
        raise_for_api_error(exc, action=f"write the secret {name}", kind="Secret", namespace=kube.namespace)
    return lambda: delete_secret(kube, name)


def delete_secret(kube: Any, name: str, *, fairings_only: bool = False) -> None:
    """Delete the Secret ``name``; one that is already gone is fine. ``fairings_only``: only
    if fairing made it (its label): a job's Secret is found by name, and a Secret of that
    name that fairing did not make (a user's ``<job>-pull``) is left alone."""
    try:
        kwargs = {}
        if fairings_only:
            secret = kube.core.read_namespaced_secret(name, kube.namespace)
            labels = secret.metadata.labels or {}
            if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
                return
            kwargs["body"] = {"preconditions": {"uid": secret.metadata.uid}}  # that one, not a successor
        kube.core.delete_namespaced_secret(name, kube.namespace, **kwargs)
    except kube.api_errors as exc:
        if not is_status(exc, 404, *((409,) if fairings_only else ())):  # 409: replaced meanwhile
            raise_for_api_error(exc, action=f"delete the secret {name}", kind="Secret", namespace=kube.namespace)


def registry_secret(kube: Any, name: str, provider: Any, hosts: Iterable[str], *, replace: bool = False,
                    error: Optional[type] = None) -> Optional[Callable[[], None]]:
    """A ``kubernetes.io/dockerconfigjson`` Secret with the credentials ``provider`` has for
    ``hosts``; its deleter, or None (and no Secret) when it has none. Use it as an image
    pull secret, or mount key ``.dockerconfigjson`` as ``config.json`` (Kaniko).

    ``kube`` may be a callable returning the client: it is then only made when there is
    a Secret to write. ``error``: what a failing provider raises [RegistryAuthError]."""
    from ..images.auth import docker_config_json

    config = docker_config_json(provider, hosts, **({"error": error} if error else {}))
    if config is None:
        return None
    client = kube() if callable(kube) else kube
    return write_secret(client, name, {DOCKER_CONFIG_KEY: config}, type=DOCKER_CONFIG_TYPE, replace=replace)
