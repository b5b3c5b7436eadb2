"""The local backend, fairing's embedded default: jobs run as subprocesses of this machine."""

from __future__ import annotations

from typing import Optional

from ..builders.local import LocalBuilder
from ..deployers.local import LocalDeployer
from . import Backend


def local_backend(*, python: Optional[str] = None, env: Optional[dict] = None) -> Backend:
    """``python``: the interpreter for jobs (default: this one); ``env``: added to each job."""
    from ..deployers.serving import LocalServingDeployer

    return Backend("local", LocalBuilder(python=python), LocalDeployer(env=env), LocalServingDeployer(env=env))
