"""The local backend, fairing's embedded default: jobs run as subprocesses of this machine."""

from __future__ import annotations

from typing import Any, Optional

from .._options import checks_options, job_options
from . import Backend


@job_options("env", "cpu", "memory", "gpus")
@checks_options
def local_backend(*, python: Optional[str] = None, env: Optional[dict] = None, cpu: Any = None, memory: Any = None,
                  gpus: Any = None, builder: Any = None, deployer: Any = None) -> Backend:
    """``python``: the interpreter for jobs (default: this one); ``env``: added to each job;
    ``cpu``, ``memory``, ``gpus``: what each job may use (as far as a process can be held to
    them: see :mod:`fairing.resources`). ``builder``/``deployer`` replace the local ones (they
    must still make and run a LocalDir)."""
    from ..builders.local import LocalBuilder
    from ..deployers.local import LocalDeployer
    from ..deployers.serving import LocalServingDeployer

    if deployer is None:
        deployer = LocalDeployer(env=env, cpu=cpu, memory=memory, gpus=gpus)
    return Backend("local", builder or LocalBuilder(python=python), deployer,
                   LocalServingDeployer(env=env))
