"""``from kubeflow import fairing``: Kubeflow Fairing 1.0.2's import path, served by fairing.

So that code written for Kubeflow Fairing runs unchanged: ``fairing.config``,
``TrainJob``, ``PredictionEndpoint`` here are fairing's own, and its old spellings are
accepted with FutureWarnings (see ``fairing.compat`` and docs/kubeflow-fairing.md).
New code imports ``fairing``. ``kubeflow`` is a namespace package: this distribution
adds only ``kubeflow.fairing`` to it.
"""

import warnings as _warnings

from fairing import PredictionEndpoint, TrainJob, __version__, config  # noqa: F401

__all__ = ["config", "TrainJob", "PredictionEndpoint", "__version__"]

_warnings.warn("'from kubeflow import fairing' is Kubeflow Fairing's import; use 'import fairing'.", FutureWarning,
               stacklevel=2)
