"""fairing: take ML code from a notebook, a function or a script to a cluster.

Public names are listed in ``__all__``; everything heavier than the error types is
imported on first use, so ``import fairing`` stays fast and pulls in no optional
dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    BuildError,
    ConfigurationError,
    DeployError,
    DockerEngineError,
    EntryPointNotFoundError,
    FairingError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    MissingDependencyError,
    NotebookNotFoundError,
    PackagingError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachableError,
    RemoteError,
    RuntimeMismatchError,
    SerializationError,
)

__version__ = "0.1.0"

_LAZY = {
    "BuildContext": "fairing.context",
    "train": "fairing.api",
    "TrainJob": "fairing.api",
    "submit": "fairing.api",
    "Backend": "fairing.backends",
    "get_backend": "fairing.backends",
    "Handle": "fairing.handle",
    "JobStatus": "fairing.handle",
    "config": None,  # the module fairing.config
    "events": None,
}

__all__ = [
    "__version__",
    "BuildContext",
    "train",
    "TrainJob",
    "submit",
    "Backend",
    "get_backend",
    "Handle",
    "JobStatus",
    "config",
    "events",
    "FairingError",
    "ConfigurationError",
    "MissingDependencyError",
    "PackagingError",
    "EntryPointNotFoundError",
    "NotebookNotFoundError",
    "SerializationError",
    "BuildError",
    "RegistryError",
    "RegistryAuthError",
    "RegistryUnreachableError",
    "DeployError",
    "DockerEngineError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "RemoteError",
    "RuntimeMismatchError",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fairing' has no attribute {name!r}")
    module = _LAZY[name]
    value = importlib.import_module(f"fairing.{name}") if module is None else getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
