"""Hyperparameter search on Katib: ``fairing.sweep(fit, space, engine="katib", ...)`` and
its handle form :func:`sweep_submit`.

The function's image is built once, as for any call; the search is a Katib Experiment
whose trials run that image as batch Jobs, each with the parameters Katib's suggestion
service chose as the function's keyword arguments (see :mod:`fairing.deployers.katib`).
The function returns a number, or a dict holding the ``metric``; the runtime prints it
as a ``fairing-metric:name=value`` line for Katib's StdOut metrics collector (which
reads only those: the function's own output cannot stand in for its result).

>>> @fairing.train(backend="kubernetes")
... def fit(lr, depth):
...     return {"accuracy": ...}
>>> best = fairing.sweep(fit, {"lr": fairing.DoubleRange(0.01, 0.1), "depth": fairing.IntRange(2, 8)},
...                      metric="accuracy", engine="katib", algorithm="random", max_trials=12, parallel_trials=3)
>>> best.params, best.score, best.details
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from .deployers.katib import (ALGORITHMS, KATIB_GROUP, Categorical, DoubleRange, IntRange, KatibDeployer, KatibHandle,
                              katib_space, trial_call)
from .errors import ConfigurationError
from .results import SweepResult

__all__ = ["sweep", "sweep_submit", "katib_sweep", "IntRange", "DoubleRange", "Categorical", "DEFAULT_METRIC",
           "SWEEP_ENGINES"]

SWEEP_ENGINES = ("grid", "katib")

#: The metric's name when the function returns a bare number and no ``metric`` is named.
DEFAULT_METRIC = "objective"


def sweep(func: Any, grid: Mapping[str, Any], *, metric: Any = None, mode: str = "max", parallelism: int = 4,
          outputs_dir: Any = ".", engine: str = "grid", **search: Any) -> SweepResult:
    """Call ``func`` with every combination of ``grid`` as keyword arguments (one map) and
    return the best: ``fairing.sweep(fit, {"alpha": [0.1, 1.0], "depth": [3, 5]}, metric="accuracy")``
    (see :func:`fairing.api.sweep`: ``metric`` a key, a callable or None; ``mode`` 'max' or
    'min'; ``parallelism``; the best call's outputs downloaded under ``outputs_dir``).

    ``engine="katib"``: a Katib search instead of the whole grid: ``grid`` is a search space
    (lists, :class:`IntRange`, :class:`DoubleRange`, :class:`Categorical`), ``metric`` names
    the number, and ``search`` takes ``algorithm``, ``max_trials``, ``parallel_trials``,
    ``max_failed_trials``, ``algorithm_settings``... (see :func:`sweep_submit`, the form that
    does not wait).
    """
    from . import api

    if engine not in SWEEP_ENGINES:
        import difflib

        hint = difflib.get_close_matches(str(engine), SWEEP_ENGINES, n=1, cutoff=0.6)
        raise ConfigurationError(f"engine must be one of {SWEEP_ENGINES}, got {engine!r}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else "."))
    if engine == "katib":
        return katib_sweep(func, grid, metric=metric, mode=mode, **search)
    if search:
        raise ConfigurationError(f"{sorted(search)} apply to engine='katib'; the grid engine takes parallelism "
                                 "and outputs_dir.")
    return api.sweep(func, grid, metric=metric, mode=mode, parallelism=parallelism, outputs_dir=outputs_dir)


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2 ** 31:
        raise ConfigurationError(f"{name} must be a positive integer (Katib's are 32-bit), got {value!r}.")
    return value


def sweep_submit(func: Any, space: Mapping[str, Any], *, metric: Optional[str] = None, mode: str = "max",
                 algorithm: str = "random", max_trials: int = 6, parallel_trials: int = 2,
                 max_failed_trials: Optional[int] = None, algorithm_settings: Optional[Mapping[str, Any]] = None,
                 katib_group: str = KATIB_GROUP, katib_namespace: str = "kubeflow",
                 name: Optional[str] = None) -> KatibHandle:
    """Start a Katib search of ``func`` (decorated with :func:`fairing.train`, on a Kubernetes
    backend) over ``space`` and return its handle without waiting: its ``logs()`` are the
    trials' output, its events include :class:`~fairing.deployers.katib.TrialUpdate` per
    trial change, its ``result()`` is the :class:`~fairing.SweepResult` and ``delete()``
    removes the Experiment with its trials and their pods.

    ``space``: parameter name -> :class:`IntRange`, :class:`DoubleRange`, :class:`Categorical`
    or a list of values. ``metric``: the name of the number Katib optimises (a key of the
    dict the function returns; None: the returned number, called 'objective'). ``mode``:
    'max' or 'min'. ``algorithm``: a Katib algorithm the cluster's Katib serves
    (``random``, ``tpe``, ``cmaes``, ``sobol``, ``grid``...), with ``algorithm_settings``.
    ``max_trials``, ``parallel_trials``, ``max_failed_trials`` [default: ``max_trials``]: as
    Katib's Experiment takes them. ``katib_group``/``katib_namespace``: where Katib's
    resources and its katib-config are (``kubeflow.org``, ``kubeflow``).
    """
    from .api import RemoteFunction, SWEEP_MODES, _outputs_env, submit
    from .deployers.kubernetes import KubeDeployerBase
    from .preprocessors.function import FunctionPreprocessor

    if not isinstance(func, RemoteFunction):
        raise ConfigurationError("A Katib search takes a function decorated with @fairing.train.")
    if mode not in SWEEP_MODES:
        raise ConfigurationError(f"mode must be one of {SWEEP_MODES}, got {mode!r}.")
    if metric is None:
        metric = DEFAULT_METRIC
    # ASCII only: Katib's collector filter matches names with Go's \w, which is ASCII
    if not isinstance(metric, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", metric):
        raise ConfigurationError(f"Katib's metric is a name (letters, digits, _ and -), got {metric!r}: the "
                                 "function returns a number or a dict holding it.")
    if not isinstance(algorithm, str) or not algorithm:
        raise ConfigurationError(f"algorithm is a Katib algorithm name such as {ALGORITHMS[:4]}, got {algorithm!r}.")
    max_trials = _positive("max_trials", max_trials)
    parallel_trials = min(_positive("parallel_trials", parallel_trials), max_trials)
    if max_failed_trials is not None and (not isinstance(max_failed_trials, int) or isinstance(max_failed_trials, bool)
                                          or not 0 <= max_failed_trials < 2 ** 31):
        raise ConfigurationError(f"max_failed_trials must be an integer >= 0, got {max_failed_trials!r}.")
    parameters, runtime_space = katib_space(space)
    backend = func._backend.make(builder=func.builder, deployer=func.deployer)
    base = func.deployer or backend.deployer
    if not isinstance(base, KubeDeployerBase):
        raise ConfigurationError(f"engine='katib' runs trials on a Kubernetes cluster; the backend {backend.name!r} "
                                 f"deploys with {type(base).__name__}. Use backend='kubernetes' (or 'kubeflow').")
    deployer = KatibDeployer.from_deployer(
        base, parameters=parameters, space=runtime_space, metric=metric, mode=mode, algorithm=algorithm,
        algorithm_settings=algorithm_settings, max_trials=max_trials, parallel_trials=parallel_trials,
        max_failed_trials=max_failed_trials, katib_group=katib_group, katib_namespace=katib_namespace)
    # Katib's webhook refuses a name over 40 characters or not a DNS label: say so before building
    chosen = name if name is not None else deployer.new_name()
    if not isinstance(chosen, str) or len(chosen) > 40 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", chosen):
        raise ConfigurationError(f"Katib names a search with at most 40 lower-case letters, digits and '-' "
                                 f"(starting with a letter); {chosen!r} is not one. Pass another name=, or a "
                                 "name_prefix of at most 22 characters.")
    deployer.check_installed()  # before the image is built
    pre = FunctionPreprocessor(func.func, (), trial_call(runtime_space, metric), input_files=func.input_files,
                               requirements=func.requirements, env=_outputs_env(func.outputs))
    return submit(pre, backend=backend, builder=func.builder, deployer=deployer, name=chosen, on_event=func.on_event,
                  quiet=func.quiet)


def katib_sweep(func: Any, space: Mapping[str, Any], *, metric: Any = None, mode: str = "max",
                **options: Any) -> SweepResult:
    """:func:`sweep_submit`, waited for (``func``'s ``timeout``, ``cleanup`` and ``keep_logs``
    apply; Ctrl-C deletes the Experiment, its trials and their pods)."""
    from ._options import check_options
    from .api import run_handle

    check_options(sweep_submit, options, "sweep(engine='katib')")
    if callable(metric):
        raise ConfigurationError("engine='katib' needs the metric's name (Katib compares the number itself); "
                                 "return a dict holding it and pass metric='name'.")
    handle = sweep_submit(func, space, metric=metric, mode=mode, **options)
    return run_handle(handle, timeout=func.timeout, cleanup=func.cleanup, keep_logs=func.keep_logs)
