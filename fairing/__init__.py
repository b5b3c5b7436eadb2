"""fairing: take ML code from a notebook, a function or a script to a cluster.

Public names are listed in ``__all__``; everything heavier than the error types is
imported on first use, so ``import fairing`` stays fast and pulls in no optional
dependency.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors as _errors
from ._distribution import conflict as _conflict
from .errors import *  # noqa: F401,F403  (the whole error tree is public)

# The library's diagnostics go to the ``fairing.<module>`` loggers; the application decides
# where they go (``fairing -v`` does). The NullHandler keeps Python's last-resort handler
# from printing them when nothing was configured.
import logging as _logging

_logging.getLogger("fairing").addHandler(_logging.NullHandler())

#: The one place the version is written: pyproject.toml reads it (``dynamic = ["version"]``).
__version__ = "0.1.0"

if _conflict():  # Kubeflow's old 'fairing' in the same site-packages
    raise _errors.ConflictingInstallError(_conflict())
try:  # `import kubeflow.fairing` beside the Kubeflow SDK (installed at start by fairing-ml.pth in site dirs)
    import _fairing_kubeflow  # noqa: F401
except ImportError:  # pragma: no cover - a copy of the package without its top-level module
    pass

if TYPE_CHECKING:  # what type checkers and editors see; at run time these load on first use (__getattr__)
    from . import config as config, events as events, jobs as jobs
    from .api import TrainJob as TrainJob, submit as submit, sweep as sweep, train as train
    from .backends import Backend as Backend, get_backend as get_backend
    from .context import BuildContext as BuildContext
    from .endpoint import PredictionEndpoint as PredictionEndpoint
    from .handle import Handle as Handle, JobStatus as JobStatus
    from .jobs import attach as attach

_LAZY = {
    "BuildContext": "fairing.context",
    "train": "fairing.api",
    "TrainJob": "fairing.api",
    "PredictionEndpoint": "fairing.endpoint",
    "submit": "fairing.api",
    "sweep": "fairing.search",
    "sweep_submit": "fairing.search",
    "SweepResult": "fairing.results",
    "SweepTrial": "fairing.results",
    "IntRange": "fairing.search",
    "DoubleRange": "fairing.search",
    "Categorical": "fairing.search",
    "Backend": "fairing.backends",
    "get_backend": "fairing.backends",
    "Handle": "fairing.handle",
    "JobStatus": "fairing.handle",
    "jobs": None,  # the module fairing.jobs, which is callable: fairing.jobs() lists the jobs
    "attach": "fairing.jobs",
    "config": None,  # the module fairing.config
    "events": None,
}

__all__ = [
    "__version__",
    "BuildContext",
    "train",
    "TrainJob",
    "PredictionEndpoint",
    "submit",
    "sweep",
    "sweep_submit",
    "SweepResult",
    "SweepTrial",
    "IntRange",
    "DoubleRange",
    "Categorical",
    "Backend",
    "get_backend",
    "Handle",
    "JobStatus",
    "jobs",
    "attach",
    "config",
    "events",
    *_errors.__all__,
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
