"""The Docker SDK at the edge: a client for a Docker-compatible engine, and its errors explained.

The ``docker`` package is an optional extra (``pip install 'fairing-ml[docker]'``), imported
here on first use only. ``base_url`` selects the engine: ``None`` means the environment's
(``DOCKER_HOST``, default ``unix:///var/run/docker.sock``, see :mod:`fairing.environment`); Podman's Docker-compatible API is
``unix:///run/podman/podman.sock`` (root) or ``unix:///run/user/<uid>/podman/podman.sock``.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .errors import DockerEngineError, MissingDependencyError

__all__ = ["docker_module", "make_client", "engine_error", "is_engine_error"]

#: Seconds to wait for an API answer (a build or a wait streams longer than this).
DEFAULT_TIMEOUT = 120


def docker_module(purpose: str) -> Any:
    try:
        import docker
    except ImportError as exc:
        raise MissingDependencyError("docker", "docker", purpose) from exc
    return docker


def _where(base_url: Optional[str]) -> str:
    from .environment import current

    return base_url or current().docker_endpoint


def _chain(exc: BaseException) -> list:
    seen, out = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def is_engine_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) means the engine could not be reached."""
    text = " ".join(str(e) for e in _chain(exc))
    kinds = (PermissionError, FileNotFoundError, ConnectionRefusedError, ConnectionError)
    if any(isinstance(e, kinds) for e in _chain(exc)):
        return True
    return any(s in text for s in ("Connection aborted", "Connection refused", "No such file or directory",
                                   "Permission denied", "Failed to establish a new connection"))


def engine_error(exc: BaseException, base_url: Optional[str], doing: str) -> DockerEngineError:
    """A DockerEngineError saying why the engine at ``base_url`` could not be used, and how to fix it."""
    where = _where(base_url)
    text = " ".join(str(e) for e in _chain(exc))
    chain = _chain(exc)
    if any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in text:
        uid = os.getuid() if hasattr(os, "getuid") else "?"
        return DockerEngineError(
            f"Permission denied on the Docker socket {where} while {doing} (running as uid {uid}). "
            "Add this user to the 'docker' group (sudo usermod -aG docker $USER, then log in again), "
            "run as root, or point base_url/DOCKER_HOST at an engine you may use, e.g. rootless Podman's "
            "unix:///run/user/$UID/podman/podman.sock."
        )
    return DockerEngineError(
        f"The Docker engine at {where} is not running or cannot be reached while {doing} "
        f"({_short(exc)}). Start it (sudo systemctl start docker, or run dockerd), or set base_url/DOCKER_HOST "
        "to the engine's socket; for Podman run 'systemctl --user start podman.socket' and use "
        "base_url='unix:///run/user/$UID/podman/podman.sock'."
    )


def _short(exc: BaseException) -> str:
    deepest = _chain(exc)[-1]
    return f"{type(deepest).__name__}: {deepest}"[:200]


def make_client(base_url: Optional[str], *, timeout: int = DEFAULT_TIMEOUT, purpose: str) -> Any:
    """A ``docker.DockerClient`` for ``base_url`` (None: the environment's), checked with a ping."""
    docker = docker_module(purpose)
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            from .environment import current

            client = docker.from_env(timeout=timeout, environment=current().docker_sdk_environment())
        client.ping()
    except docker.errors.DockerException as exc:
        if is_engine_error(exc):
            raise engine_error(exc, base_url, purpose.lower()) from None
        raise DockerEngineError(
            f"Could not use the Docker engine at {_where(base_url)} for {purpose.lower()}: {_short(exc)}. "
            "Check that it is a Docker (or Podman) API endpoint."
        ) from None
    except Exception as exc:  # requests' ConnectionError etc. from the ping
        if is_engine_error(exc):
            raise engine_error(exc, base_url, purpose.lower()) from None
        raise
    return client
