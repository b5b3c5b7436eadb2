"""Backends: a bundle of defaults (builder, deployer) for one environment.

``local`` (a subprocess; the embedded default), ``docker`` (the local Docker engine),
``kubernetes``, ``kubeflow``, ``gke``, ``aws``. A backend is a plain value; choose one
by name with :func:`get_backend` or build one yourself. Its builder and deployer must
share an artifact type (:func:`fairing.artifacts.check_pair`): a mismatched pair is
refused when the backend is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..artifacts import check_pair, pairs_that_work

__all__ = ["Backend", "get_backend", "BACKENDS", "working_pairs"]

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

    def __post_init__(self) -> None:
        check_pair(self.builder, self.deployer, known_pairs=working_pairs)


def working_pairs() -> list[str]:
    """The built-in builders and deployers that work together, by artifact type."""
    from .._registry import load
    from ..builders import BUILDERS
    from ..deployers import DEPLOYERS

    return pairs_that_work({name: load(BUILDERS, name, "builder") for name in BUILDERS},
                           {name: load(DEPLOYERS, name, "deployer") for name in DEPLOYERS})


def get_backend(backend: "str | Backend" = "local", *, builder: Any = None, deployer: Any = None,
                **options: Any) -> Backend:
    """The backend named ``backend`` made with ``options``, or ``backend`` itself if it is one.

    ``builder`` and ``deployer`` replace the backend's own (a cluster backend then does not
    choose a builder at all, so it needs no registry or base image of its own).
    """
    from ..errors import ConfigurationError

    if isinstance(backend, Backend):
        if options:
            raise ConfigurationError(
                f"Options {sorted(options)} were given with a Backend object ({backend.name}), which is already "
                "made: pass them to the function that makes it (e.g. kubernetes_backend(...)), or give the "
                "backend by name."
            )
        if builder is None and deployer is None:
            return backend
        return replace(backend, builder=builder or backend.builder, deployer=deployer or backend.deployer)
    from .._registry import load

    return load(BACKENDS, backend, "backend")(builder=builder, deployer=deployer, **options)
