"""Backends: a bundle of defaults (builder, deployer) for one environment.

``local`` (a subprocess; the embedded default), ``docker`` (the local Docker engine),
``kubernetes``, ``kubeflow``, ``gke``, ``aws``. A backend is a plain value; choose one
by name with :func:`get_backend` or build one yourself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Backend", "get_backend", "BACKENDS"]

BACKENDS = {
    "local": "fairing.backends.local:local_backend",
    "docker": "fairing.backends.docker:docker_backend",
    "kubernetes": "fairing.backends.kubernetes:kubernetes_backend",
    "kubeflow": "fairing.backends.kubernetes:kubeflow_backend",
    "gke": "fairing.backends.cloud:gke_backend",
    "aws": "fairing.backends.cloud:aws_backend",
}


@dataclass(frozen=True)
class Backend:
    """``deployer`` runs jobs; ``serving`` runs prediction endpoints (None: this backend cannot)."""

    name: str
    builder: Any
    deployer: Any
    serving: Any = None


def get_backend(backend: "str | Backend" = "local", **options: Any) -> Backend:
    """The backend named ``backend`` made with ``options``, or ``backend`` itself if it is one."""
    if isinstance(backend, Backend):
        return backend
    from .._registry import load

    return load(BACKENDS, backend, "backend")(**options)
