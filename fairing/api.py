"""The user-facing APIs: ``submit``, the ``@train`` decorator (with ``.map``/``.starmap``),
``sweep`` and ``TrainJob``.

It stays one module past 450 lines because it is the facade's single submit pipeline
(package, build, deploy, record, wait, clean up) and the three ways users call it; its
helpers are private to those calls and would only be imported back from a split.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Generic, Optional, overload

from ._typing import P, R
from .backends import BackendChoice
from .errors import ConfigurationError, MapError
from .events import EventCallback, Stage, emitter, run_stage
from .handle import Handle

from .results import SweepResult, is_job_exception, map_results, shown_once  # noqa: F401  (they live with the envelope)

__all__ = ["submit", "run_handle", "train", "TrainJob", "in_job", "sweep", "map_results", "SweepResult",
           "CLEANUP_POLICIES", "SWEEP_MODES"]

CLEANUP_POLICIES = ("always", "on_success", "never")
SWEEP_MODES = ("max", "min")


def in_job() -> bool:
    """True inside a job started by fairing (``FAIRING_RUNTIME`` is set)."""
    from .environment import current

    return current().in_job


def submit(
    preprocessor: Any,
    *,
    backend: Any = None,
    builder: Any = None,
    deployer: Any = None,
    name: Optional[str] = None,
    on_event: Optional[EventCallback] = None,
    quiet: bool = False,
    **backend_options: Any,
) -> Handle:
    """Package, build and deploy; return the running job's handle without waiting.

    ``backend``: a name, a :class:`Backend`, or None for the ``backend`` setting (else
    'local'); ``backend_options`` are checked against it now and completed from the
    settings (:mod:`fairing.settings`). ``builder`` and ``deployer`` replace the
    backend's own (and must share an artifact type, see :mod:`fairing.artifacts`). The
    job's output goes to stdout unless ``quiet``. This reports the stages "package",
    "build" and "deploy", each started once and finished (or failed) once.
    """
    if on_event is None:
        from .notebook.display import default_renderer

        on_event = default_renderer()
    chosen = BackendChoice(backend, backend_options).make(builder=builder, deployer=deployer)
    return pipeline(preprocessor, chosen.builder, chosen.deployer, backend_name=chosen.name, name=name,
                    on_event=on_event, job_events=_job_events(on_event, quiet))


def pipeline(preprocessor: Any, builder: Any, deployer: Any, *, backend_name: str, name: Optional[str] = None,
             on_event: Optional[EventCallback] = None, job_events: Optional[EventCallback] = None,
             endpoint: bool = False, ready: Optional[Callable[[Any], Any]] = None,
             customize: Optional[Callable[[Any, Any, Any], Any]] = None) -> Handle:
    """The one submit pipeline behind :func:`submit` (so ``TrainJob``, ``@train`` and
    ``fairing.config``) and :class:`~fairing.PredictionEndpoint`: package, build, deploy
    with the job's origin stamped on the deployer (labels and annotations), wait with
    ``ready(handle)`` (an endpoint's readiness), and record the job (:func:`fairing.jobs.remember`);
    a failure after the deploy deletes what was deployed. ``customize(deployer, context,
    image)`` returns the deployer to use (an endpoint adds its model's init container).
    The stages "package", "build" and "deploy" are reported once each; an endpoint's
    "deploy" finishes with its URL, once it is recorded."""
    from . import jobs

    from .kube.access import preflight

    emit = emitter(on_event)
    preflight(builder, deployer)  # a missing permission is found before anything is built or pushed
    check = getattr(deployer, "preflight", None)
    if callable(check):  # what the deployer can check before anything is built (a Kueue queue)
        check()
    context = run_stage(emit, "package", preprocessor.context)
    origin = jobs.origin_of(context, preprocessor)
    image = run_stage(emit, "build", lambda: builder.build(context, on_event=on_event), detail=_settings_note())

    def deploy() -> Any:
        chosen = deployer if customize is None else customize(deployer, context, image)
        handle = jobs.stamped(chosen, origin).deploy(image, name=name, on_event=job_events)
        if ready is not None:
            try:
                ready(handle)
            except BaseException:
                handle.delete()
                raise
        return handle

    if endpoint:
        emit(Stage("deploy", "started"))
        try:
            handle = deploy()
        except BaseException as exc:
            emit(Stage("deploy", "failed", f"{type(exc).__name__}: {exc}"))
            raise
    else:
        handle = run_stage(emit, "deploy", deploy)
    try:
        jobs.remember(handle, origin, backend=backend_name, image=image, endpoint=endpoint)
    except BaseException:
        handle.delete()
        raise
    if endpoint:
        emit(Stage("deploy", "finished", handle.url))
    return handle


def _settings_note() -> str:
    """The settings files read ("settings from ..."; "" when none), for the ``build`` stage event."""
    from .settings import resolve

    return resolve().files_note()


def _job_events(on_event: Optional[EventCallback], quiet: bool) -> Optional[EventCallback]:
    from .output import job_events

    return job_events(on_event, quiet=quiet)


def run_handle(handle: Handle, *, timeout: Optional[float] = None, cleanup: str = "always",
               keep_logs: bool = False, before_cleanup: Optional[Callable[[Any], Any]] = None,
               outputs_dir: Any = None) -> Any:
    """Wait for the job's result; clean up per ``cleanup`` (also on error and Ctrl-C).

    ``keep_logs``: save the log before deleting (see :func:`fairing.jobs.saved_log`), so
    that a failed job's log can still be read after cleanup. ``outputs_dir``: where the
    files the job wrote (under ``$FAIRING_OUTPUTS`` or named by ``outputs=``) are downloaded
    once the result is in, before cleanup [None: not downloaded; they go with the job].
    ``before_cleanup(value)`` is called once the result is in.
    """
    from . import jobs

    __tracebackhide__ = True  # IPython and pytest leave fairing's frames out  # noqa: F841
    if cleanup not in CLEANUP_POLICIES:
        raise ConfigurationError(f"cleanup must be one of {CLEANUP_POLICIES}, got {cleanup!r}.")
    succeeded = False
    try:
        try:
            value = handle.result(timeout)
        except MapError:
            if outputs_dir is not None:  # the calls that succeeded keep their files
                download_outputs(handle, outputs_dir)
            raise
        if outputs_dir is not None:
            download_outputs(handle, outputs_dir)
        if before_cleanup is not None:
            before_cleanup(value)
        succeeded = True
        return value
    finally:
        if cleanup == "always" or (cleanup == "on_success" and succeeded):
            jobs.finish(handle, keep_logs=keep_logs)


def download_outputs(handle: Any, dest: Any) -> dict:
    """After ``handle.result()``: download the files its job wrote under ``dest``
    (``{relative path: local path}``; empty when it wrote none or its backend returns no files).
    A map's call ``i`` writes under ``dest/i/``: the calls write the same names side by side."""
    if callable(getattr(handle, "index_outputs", None)) and getattr(handle, "count", None):
        got = {}
        for i in range(handle.count):
            try:
                artifact = handle.index_outputs(i)
            except Exception:  # this call failed (MapError names it) before it sent any files
                continue
            if artifact is not None:
                got.update({f"{i}/{rel}": path for rel, path in artifact.download(os.path.join(dest, str(i))).items()})
        return got
    artifact = getattr(handle, "_outputs", None)  # set by result() when the job sent files (HasOutputs)
    return artifact.download(dest) if artifact is not None else {}


def _check_outputs(outputs: Iterable[str]) -> list[str]:
    if isinstance(outputs, (str, os.PathLike)):
        outputs = [outputs]
    paths = [os.fspath(p) for p in outputs]
    for p in paths:
        norm = os.path.normpath(p)
        if os.path.isabs(p) or norm == ".." or norm.startswith(".." + os.sep):  # by part: '..hidden' is a name
            raise ConfigurationError(f"outputs are paths relative to the job's working directory, got {p!r}; "
                                     "e.g. outputs=['model.joblib', 'metrics/'].")
    return paths


def _outputs_env(outputs: list) -> dict:
    """What tells the job's runtime which paths to send back (see fairing.runtime.outputs)."""
    return {"FAIRING_OUTPUT_PATHS": json.dumps(outputs)} if outputs else {}


class _MapDeployer:
    """A deployer that runs its image once per call of a map (``deploy(..., count=...)``)."""

    def __init__(self, deployer: Any, count: int, parallelism: int) -> None:
        import inspect

        if "count" not in inspect.signature(deployer.deploy).parameters:
            raise ConfigurationError(
                f"map() runs on the local backend or as a Kubernetes Job; the {type(deployer).__name__} cannot "
                "run a map. Use backend='local' or 'kubernetes' (the Job deployer).")
        self.deployer, self.count, self.parallelism = deployer, count, parallelism
        self.accepts = deployer.accepts
        self.labels = getattr(deployer, "labels", None)
        self.annotations = getattr(deployer, "annotations", None)

    def required_access(self) -> list:
        """The Job deployer's (the permission pre-flight checks it)."""
        needs = getattr(self.deployer, "required_access", None)
        return needs() if needs else []

    @property
    def kube(self) -> Any:
        return self.deployer.kube

    def preflight(self) -> None:
        check = getattr(self.deployer, "preflight", None)
        if callable(check):
            check()

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None) -> Any:
        import copy

        deployer = self.deployer
        if isinstance(self.labels, dict):  # stamped with the job's origin (fairing.jobs.stamped)
            deployer = copy.copy(deployer)
            deployer.labels, deployer.annotations = self.labels, self.annotations
        return deployer.deploy(image, name=name, on_event=on_event, count=self.count, parallelism=self.parallelism)


def _caller(fn: Callable) -> tuple:
    """(what, parameter names) of the API call ``fn``, for its options' check (see :func:`fairing._registry.make`)."""
    import inspect

    params = inspect.signature(fn).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in ("self", "func", "entry_point")]
    return f"{getattr(fn, '__name__', 'the call')}()", tuple(names)


def _watch_sigterm() -> None:
    """Let a SIGTERM to this process stop its local jobs (see :mod:`fairing.deployers.local`):
    the handler is installed now, from the main thread, for jobs later started from worker
    threads, which cannot install one. Not in a job: its SIGTERM stays the default."""
    if not in_job():
        from ._sigterm import _handle_sigterm

        _handle_sigterm()


class RemoteFunction(Generic[P, R]):
    """A function that runs as a job when called. Made by :func:`train`; it keeps the
    function's parameters and return type (``RemoteFunction[P, R]``) for type checkers."""

    def __init__(self, func: Callable[P, R], *, timeout: Optional[float], cleanup: str, input_files: Iterable,
                 requirements: Any, on_event: Optional[EventCallback], options: Mapping[str, Any],
                 keep_logs: bool = False, quiet: bool = False, outputs: Iterable[str] = (),
                 outputs_dir: Any = ".") -> None:
        functools.update_wrapper(self, func)
        self.outputs = _check_outputs(outputs)
        self.outputs_dir = outputs_dir
        self.func = func
        self.timeout = timeout
        self.cleanup = cleanup
        self.keep_logs = keep_logs
        self.input_files = input_files  # a path, a list, or a dict (collect_input_files reads each form)
        self.requirements = requirements
        self.on_event = on_event
        self.quiet = quiet
        options = dict(options)
        self.builder, self.deployer = options.pop("builder", None), options.pop("deployer", None)
        self._backend = BackendChoice(options.pop("backend", None), options, caller=_caller(train),
                                      builder=self.builder, deployer=self.deployer)
        _watch_sigterm()

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Handle:
        """Start the job with these arguments and return its handle without waiting."""
        return self._submit(args, kwargs)

    def _submit(self, args: Any, kwargs: Any, *, count: Optional[int] = None, parallelism: int = 1) -> Handle:
        from .preprocessors.function import FunctionPreprocessor

        pre = FunctionPreprocessor(self.func, args, kwargs, input_files=self.input_files,
                                   requirements=self.requirements, env=_outputs_env(self.outputs))
        backend = self._backend.make(builder=self.builder, deployer=self.deployer)
        deployer = self.deployer if count is None else _MapDeployer(backend.deployer, count, parallelism)
        return submit(pre, backend=backend, builder=self.builder, deployer=deployer, on_event=self.on_event,
                      quiet=self.quiet)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if in_job():  # already inside the job: just run
            return self.func(*args, **kwargs)
        handle = self.submit(*args, **kwargs)
        if self.outputs and not callable(getattr(handle, "outputs", None)):
            handle.delete()
            raise ConfigurationError(f"outputs= come back from the local and Kubernetes backends; the "
                                     f"{type(handle).__name__} cannot return files. Write them to a mounted volume.")
        # what it wrote under $FAIRING_OUTPUTS comes back too, outputs= or not
        __tracebackhide__ = True  # IPython and pytest leave fairing's frames out  # noqa: F841
        try:
            result: R = run_handle(handle, timeout=self.timeout, cleanup=self.cleanup, keep_logs=self.keep_logs,
                                   outputs_dir=self.outputs_dir)
            return result
        except Exception as error:
            if not is_job_exception(error):
                raise
            raise shown_once(error, not self.quiet)  # the job's own exception, as it raised it (traceback above)

    def map(self, inputs: Iterable[Any], *, parallelism: int = 4) -> list[R]:
        """``[fit(x) for x in inputs]``, as one job of ``len(inputs)`` pods (an Indexed Job on
        Kubernetes, a process pool locally), ``parallelism`` at a time; results in input order.

        When some calls fail, every call still runs, and :class:`~fairing.MapError` is raised
        naming each failed index with its exception and log tail; ``.results`` keeps the
        others. Ctrl-C, SIGTERM (locally) or the timeout stops and removes the whole job.
        """
        return self._map([((x,), {}) for x in inputs], parallelism)

    def starmap(self, inputs: Iterable[Any], *, parallelism: int = 4) -> list[R]:
        """As :meth:`map`, each input a tuple of positional arguments or a dict of keyword arguments."""
        calls = []
        for item in inputs:
            if isinstance(item, Mapping):
                calls.append(((), dict(item)))
            elif isinstance(item, (tuple, list)):
                calls.append((tuple(item), {}))
            else:
                raise ConfigurationError(f"starmap takes tuples of arguments or dicts of keyword arguments, got "
                                         f"{type(item).__name__}; use map() for one argument per call.")
        return self._map(calls, parallelism)

    def map_submit(self, calls: list, *, parallelism: int = 4) -> Handle:
        """Start a map of ``[(args, kwargs), ...]`` and return its handle without waiting."""
        from .runtime.result import MAP_CALLS

        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
            raise ConfigurationError(f"parallelism must be a positive integer, got {parallelism!r}.")
        return self._submit((), {MAP_CALLS: list(calls)}, count=len(calls), parallelism=min(parallelism, len(calls)))

    def _map(self, calls: list, parallelism: int) -> list[R]:
        if in_job():
            return [self.func(*args, **kwargs) for args, kwargs in calls]
        if not calls:
            return []
        handle = self.map_submit(calls, parallelism=parallelism)
        # call i's files (outputs=, or under $FAIRING_OUTPUTS) come back under outputs_dir/i/
        results: list[R] = run_handle(handle, timeout=self.timeout, cleanup=self.cleanup, keep_logs=self.keep_logs,
                                      outputs_dir=self.outputs_dir)
        return results

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function here, in this process."""
        return self.func(*args, **kwargs)


@overload
def train(
    func: Callable[P, R],
    *,
    backend: Any = None,
    timeout: Optional[float] = None,
    cleanup: Optional[str] = "always",
    input_files: Optional[Iterable[Any]] = (),
    requirements: Any = None,
    on_event: Optional[EventCallback] = None,
    keep_logs: bool = False,
    quiet: bool = False,
    outputs: Optional[Iterable[str]] = (),
    outputs_dir: Any = ".",
    **options: Any,
) -> RemoteFunction[P, R]: ...


@overload
def train(
    func: None = None,
    *,
    backend: Any = None,
    timeout: Optional[float] = None,
    cleanup: Optional[str] = "always",
    input_files: Optional[Iterable[Any]] = (),
    requirements: Any = None,
    on_event: Optional[EventCallback] = None,
    keep_logs: bool = False,
    quiet: bool = False,
    outputs: Optional[Iterable[str]] = (),
    outputs_dir: Any = ".",
    **options: Any,
) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def train(
    func: Optional[Callable[P, R]] = None,
    *,
    backend: Any = None,
    timeout: Optional[float] = None,
    cleanup: Optional[str] = "always",
    input_files: Optional[Iterable[Any]] = (),
    requirements: Any = None,
    on_event: Optional[EventCallback] = None,
    keep_logs: bool = False,
    quiet: bool = False,
    outputs: Optional[Iterable[str]] = (),
    outputs_dir: Any = ".",
    **options: Any,
) -> Any:
    """Decorator: calling the function runs it as a job and returns its value.

    ``outputs``: paths (files or directories, relative to the job's working directory)
    the job writes and that come back, downloaded under ``outputs_dir`` before cleanup;
    files under ``$FAIRING_OUTPUTS`` in the job come back there too, with or without
    ``outputs`` (see :mod:`fairing.outputs`; ``.submit(...)`` keeps them with the handle
    until ``delete()``, and ``handle.outputs(dest)`` downloads them). ``.map(inputs)`` and
    ``.starmap(inputs)`` run many calls as one job (see :meth:`RemoteFunction.map`); call
    ``i``'s files come back under ``outputs_dir/i/``, and its lines are prefixed ``[index-i]``.

    A remote exception is re-raised here with the job's traceback chained as its cause
    (a :class:`~fairing.RemoteError` when its type cannot be recreated). ``.submit(...)``
    returns a handle instead of waiting; ``.local(...)`` calls it in this process.
    ``options`` go to the backend (and may name ``builder``/``deployer`` objects); they
    are checked here, and the settings fill the rest when the job is submitted. The job's
    output goes to stdout unless ``quiet``. ``keep_logs=True`` saves the job's log before
    cleanup (:func:`fairing.jobs.saved_log`). ``warm=True`` (the kubernetes backends) runs each
    call on a worker pod that outlives it, so a re-run sends only the changed files and starts
    no pod (see :mod:`fairing.deployers.warm`).

    >>> @fairing.train(backend="local", timeout=600)
    ... def fit(alpha):
    ...     return alpha * 2
    """
    # None means not given, as Kubeflow Fairing code passes it
    cleanup = "always" if cleanup is None else cleanup
    input_files = () if input_files is None else input_files
    outputs = () if outputs is None else outputs
    outputs_dir = "." if outputs_dir is None else outputs_dir
    if cleanup not in CLEANUP_POLICIES:
        raise ConfigurationError(f"cleanup must be one of {CLEANUP_POLICIES}, got {cleanup!r}.")
    _check_outputs(outputs)
    BackendChoice(backend, {k: v for k, v in options.items() if k not in ("builder", "deployer")},
                  caller=_caller(train), builder=options.get("builder"), deployer=options.get("deployer"))  # checks now

    def wrap(f: Callable[P, R]) -> RemoteFunction[P, R]:
        return RemoteFunction(f, timeout=timeout, cleanup=cleanup, input_files=input_files,
                              requirements=requirements, on_event=on_event, quiet=quiet,
                              options={"backend": backend, **options}, keep_logs=keep_logs, outputs=outputs,
                              outputs_dir=outputs_dir)

    return wrap(func) if func is not None else wrap


def preprocessor_for(entry_point: Any, *, full_notebook: bool = False, args: Iterable[str] = (),
                     parameters: Optional[Mapping[str, Any]] = None, **kwargs: Any):
    """The preprocessor for a function, a class with train(), a .py file or an .ipynb file."""
    kwargs["input_files"] = kwargs.get("input_files") or ()
    if callable(entry_point) and not isinstance(entry_point, (str, os.PathLike)):
        from .preprocessors.function import FunctionPreprocessor

        return FunctionPreprocessor(entry_point, args, **kwargs)
    path = Path(entry_point)
    if path.suffix == ".py":
        from .preprocessors.python import PythonPreprocessor

        return PythonPreprocessor(path, args=args, **kwargs)
    if path.suffix == ".ipynb":
        from .preprocessors.notebook import FullNotebookPreprocessor, NotebookPreprocessor

        if full_notebook:
            return FullNotebookPreprocessor(path, parameters=parameters, **kwargs)
        return NotebookPreprocessor(path, **kwargs)
    raise ConfigurationError(
        f"Cannot run {entry_point!r}: give a function, a class with train(), a .py script or an .ipynb notebook."
    )


def _task_options(what: str, legacy_args: tuple, options: dict) -> tuple[dict, bool]:
    """Kubeflow Fairing's TrainJob/PredictionEndpoint arguments (positional after the
    first, and its keyword spellings) in today's spelling; True when any were used."""
    from . import compat

    if len(legacy_args) > len(compat.LEGACY_TASK_POSITIONAL):
        raise ConfigurationError(f"{what} takes one positional argument (what to run); give the others by keyword.")
    legacy = bool(legacy_args)
    for key, value in zip(compat.LEGACY_TASK_POSITIONAL, legacy_args):
        if options.get(key) not in (None, ()):
            raise ConfigurationError(f"{what} got {key} both by position and by keyword.")
        if value is not None:
            options[key] = value
    if legacy_args:
        compat.warn_renamed(f"{what}'s arguments after the first are keyword-only now: "
                            f"{', '.join(compat.LEGACY_TASK_POSITIONAL[:len(legacy_args)])}=...")
    if isinstance(options.get("backend"), compat.LegacyBackend):
        legacy = True
    translated, _run = compat.translate("task", "*", options)
    legacy = legacy or any(k in compat.TABLE[("task", "*")] for k in options)
    if translated.get("input_files") is None:
        translated.pop("input_files", None)
    return translated, legacy


def _requirements_among_inputs(input_files: Iterable, requirements: Any) -> Any:
    """Kubeflow Fairing installed a requirements.txt listed among the input files."""
    if requirements is not None:
        return requirements
    listed = [f for f in input_files or () if Path(str(f)).name == "requirements.txt"]
    if len(listed) == 1:
        from . import compat

        compat.warn_renamed(f"{listed[0]} among input_files is installed, as Kubeflow Fairing did; "
                            f"say so with requirements={str(listed[0])!r}.")
        return str(listed[0])
    return None


def _legacy_default_backend(options: dict) -> None:
    """Kubeflow Fairing's TrainJob ran on KubernetesBackend() unless told otherwise."""
    from .settings import resolve

    if options.get("backend") is None and resolve().backend is None:
        from . import compat

        compat.warn_renamed("Kubeflow Fairing's TrainJob and PredictionEndpoint ran on KubernetesBackend() by default; "
                            "fairing's default is 'local'. Pass backend='kubernetes' (or set FAIRING_BACKEND).")
        options["backend"] = "kubernetes"


class TrainJob:
    """A training job for a function, a class with ``train()``, a script or a notebook.

    >>> job = TrainJob("train.py", input_files=["data/"], requirements="requirements.txt")
    >>> handle = job.submit()
    >>> for line in handle.logs(): ...
    >>> handle.result(); handle.delete()

    ``full_notebook=True`` runs a notebook whole with papermill (``parameters`` injected)
    and returns the executed notebook. ``outputs``: paths the job writes that come back
    (``job.submit().outputs(dest)``, see :func:`train`). ``backend`` and ``options`` choose where it runs;
    they are checked here and completed from the settings (:mod:`fairing.settings`).
    The job's output goes to stdout unless ``quiet``.

    Kubeflow Fairing's arguments (``base_docker_image``, ``docker_registry``,
    ``output_map``, ``pod_spec_mutators``, ``backend=KubernetesBackend()``...) are accepted
    with a FutureWarning (:mod:`fairing.compat`); a job made with them runs on the
    kubernetes backend by default, and its ``submit()`` waits for the job, as there.
    """

    def __init__(
        self,
        entry_point: Any,
        *legacy_args: Any,
        backend: Any = None,
        input_files: Iterable = (),
        requirements: Any = None,
        args: Iterable[str] = (),
        full_notebook: bool = False,
        parameters: Optional[Mapping[str, Any]] = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
        name: Optional[str] = None,
        on_event: Optional[EventCallback] = None,
        quiet: bool = False,
        outputs: Iterable[str] = (),
        **options: Any,
    ) -> None:
        # None means not given, as Kubeflow Fairing code passes it
        input_files = () if input_files is None else input_files
        args = () if args is None else args
        env = {**(env or {}), **_outputs_env(_check_outputs(() if outputs is None else outputs))}
        full_notebook, quiet = bool(full_notebook), bool(quiet)
        options, self.legacy = _task_options("TrainJob", legacy_args,
                                             {"backend": backend, "input_files": input_files, **options})
        if self.legacy:
            _legacy_default_backend(options)
        input_files = options.pop("input_files", ())
        if self.legacy:
            requirements = _requirements_among_inputs(input_files, requirements)
        self.preprocessor = preprocessor_for(
            entry_point, full_notebook=full_notebook, args=args, parameters=parameters,
            input_files=input_files or (), requirements=requirements, base_dir=base_dir, env=env,
        )
        _watch_sigterm()
        self.name = name
        self.on_event = on_event
        self.quiet = quiet
        self.builder, self.deployer = options.pop("builder", None), options.pop("deployer", None)
        self._backend = BackendChoice(options.pop("backend", None), options, caller=_caller(TrainJob),
                                      builder=self.builder, deployer=self.deployer)

    def submit(self) -> Handle:
        """Start the job and return its handle without waiting.

        Made with Kubeflow Fairing's arguments, it waits as Kubeflow Fairing's did: the
        job's output streams here, its exception is re-raised, and the finished job's
        handle is returned (everything it made is removed).
        """
        handle = self._start()
        if self.legacy:
            run_handle(handle)
        return handle

    def run(self, *, timeout: Optional[float] = None, cleanup: str = "always", keep_logs: bool = False,
            outputs_dir: Any = ".") -> Any:
        """Submit, wait and return the result; ``keep_logs`` saves the log before cleanup. The files
        the job wrote (under ``$FAIRING_OUTPUTS``, or named by ``outputs``) are downloaded under
        ``outputs_dir`` before cleanup."""
        __tracebackhide__ = True  # IPython and pytest leave fairing's frames out  # noqa: F841
        try:
            return run_handle(self._start(), timeout=timeout, cleanup=cleanup, keep_logs=keep_logs,
                              outputs_dir=outputs_dir)
        except Exception as error:
            if not is_job_exception(error):
                raise
            raise shown_once(error, not self.quiet)  # the job's own exception, as it raised it (traceback above)

    def _start(self) -> Handle:
        backend = self._backend.make(builder=self.builder, deployer=self.deployer)
        return submit(self.preprocessor, backend=backend, builder=self.builder, deployer=self.deployer,
                      name=self.name, on_event=self.on_event, quiet=self.quiet)


def sweep(func: "RemoteFunction[..., Any]", grid: Mapping[str, Iterable[Any]], *, metric: Any = None, mode: str = "max",
          parallelism: int = 4, outputs_dir: Any = ".") -> SweepResult:
    """Call ``func`` with every combination of ``grid`` as keyword arguments (one map) and
    return the best: ``fairing.sweep(fit, {"alpha": [0.1, 1.0], "depth": [3, 5]}, metric="accuracy")``.

    ``metric``: how to score a result: a key of the dict it returns, a callable
    ``result -> number``, or None for the result itself. ``mode``: 'max' or 'min'. A
    failing combination raises :class:`~fairing.MapError` (its ``.results`` keeps the
    others). The best call's outputs are downloaded under ``outputs_dir``. (``fairing.sweep``
    is :func:`fairing.search.sweep`, which also searches on Katib.)
    """
    if not isinstance(func, RemoteFunction):
        raise ConfigurationError("sweep() takes a function decorated with @fairing.train.")
    if mode not in SWEEP_MODES:
        raise ConfigurationError(f"mode must be one of {SWEEP_MODES}, got {mode!r}.")
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigurationError("sweep() takes a grid: a dict of parameter name -> list of values, "
                                 "e.g. {'alpha': [0.1, 1.0]}.")
    names = list(grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]
    if not combos:
        raise ConfigurationError(f"The grid {dict(grid)!r} has a parameter with no values.")

    def score(result: Any) -> Any:
        if metric is None:
            return result
        if callable(metric):
            return metric(result)
        try:
            return result[metric]
        except (KeyError, TypeError, IndexError):
            raise ConfigurationError(f"The metric {metric!r} is not in the result {result!r}; give a key of the "
                                     "dict the function returns, or a callable.") from None

    handle = func.map_submit([((), c) for c in combos], parallelism=parallelism)
    best: dict = {}

    def fetch_best(results: list) -> None:
        scores = [score(r) for r in results]
        pick = (max if mode == "max" else min)(range(len(scores)), key=scores.__getitem__)
        outputs = handle.index_outputs(pick)
        best.update(index=pick, results=results, score=scores[pick],
                    outputs=outputs.download(outputs_dir) if outputs is not None else {})

    run_handle(handle, timeout=func.timeout, cleanup=func.cleanup, keep_logs=func.keep_logs, before_cleanup=fetch_best)
    i = best["index"]
    return SweepResult(params=combos[i], result=best["results"][i], score=best["score"], outputs=best["outputs"],
                       trials=list(zip(combos, best["results"])))
