"""The user-facing APIs: ``submit``, the ``@train`` decorator and ``TrainJob``."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from .backends import Backend, get_backend
from .errors import ConfigurationError
from .events import EventCallback, emitter, run_stage
from .handle import Handle

__all__ = ["submit", "run_handle", "train", "TrainJob", "in_job", "CLEANUP_POLICIES"]

CLEANUP_POLICIES = ("always", "on_success", "never")


def in_job() -> bool:
    """True inside a job started by fairing (``FAIRING_RUNTIME`` is set)."""
    from .environment import current

    return current().in_job


def submit(
    preprocessor: Any,
    *,
    backend: "str | Backend" = "local",
    builder: Any = None,
    deployer: Any = None,
    name: Optional[str] = None,
    on_event: Optional[EventCallback] = None,
    **backend_options: Any,
) -> Handle:
    """Package, build and deploy; return the running job's handle without waiting.

    ``builder`` and ``deployer`` replace the backend's own (and must share an artifact
    type, see :mod:`fairing.artifacts`). This reports the stages "package", "build" and
    "deploy", each started once and finished (or failed) once.
    """
    if on_event is None:
        from .notebook.display import default_renderer

        on_event = default_renderer()
    emit = emitter(on_event)
    chosen = get_backend(backend, builder=builder, deployer=deployer, **backend_options)
    builder, deployer = chosen.builder, chosen.deployer
    from . import jobs

    context = run_stage(emit, "package", preprocessor.context)
    origin = jobs.origin_of(context, preprocessor)
    image = run_stage(emit, "build", lambda: builder.build(context, on_event=on_event))
    handle = run_stage(emit, "deploy",
                       lambda: jobs.stamped(deployer, origin).deploy(image, name=name, on_event=on_event))
    try:
        jobs.remember(handle, origin, backend=chosen.name, image=image)
    except BaseException:
        handle.delete()
        raise
    return handle


def run_handle(handle: Handle, *, timeout: Optional[float] = None, cleanup: str = "always",
               keep_logs: bool = False) -> Any:
    """Wait for the job's result; clean up per ``cleanup`` (also on error and Ctrl-C).

    ``keep_logs``: save the log before deleting (see :func:`fairing.jobs.saved_log`), so
    that a failed job's log can still be read after cleanup.
    """
    from . import jobs

    if cleanup not in CLEANUP_POLICIES:
        raise ConfigurationError(f"cleanup must be one of {CLEANUP_POLICIES}, got {cleanup!r}.")
    succeeded = False
    try:
        value = handle.result(timeout)
        succeeded = True
        return value
    finally:
        if cleanup == "always" or (cleanup == "on_success" and succeeded):
            jobs.finish(handle, keep_logs=keep_logs)


class RemoteFunction:
    """A function that runs as a job when called. Made by :func:`train`."""

    def __init__(self, func: Callable, *, timeout: Optional[float], cleanup: str, input_files: Iterable,
                 requirements: Any, on_event: Optional[EventCallback], options: Mapping[str, Any],
                 keep_logs: bool = False) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.timeout = timeout
        self.cleanup = cleanup
        self.keep_logs = keep_logs
        self.input_files = input_files  # a path, a list, or a dict (collect_input_files reads each form)
        self.requirements = requirements
        self.on_event = on_event
        self.options = dict(options)

    def submit(self, *args: Any, **kwargs: Any) -> Handle:
        """Start the job with these arguments and return its handle without waiting."""
        from .preprocessors.function import FunctionPreprocessor

        pre = FunctionPreprocessor(self.func, args, kwargs, input_files=self.input_files,
                                   requirements=self.requirements)
        return submit(pre, on_event=self.on_event, **self.options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if in_job():  # already inside the job: just run
            return self.func(*args, **kwargs)
        return run_handle(self.submit(*args, **kwargs), timeout=self.timeout, cleanup=self.cleanup,
                          keep_logs=self.keep_logs)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function here, in this process."""
        return self.func(*args, **kwargs)


def train(
    func: Optional[Callable] = None,
    *,
    backend: "str | Backend" = "local",
    timeout: Optional[float] = None,
    cleanup: str = "always",
    input_files: Iterable = (),
    requirements: Any = None,
    on_event: Optional[EventCallback] = None,
    keep_logs: bool = False,
    **options: Any,
):
    """Decorator: calling the function runs it as a job and returns its value.

    A remote exception is re-raised here with the job's traceback chained as its cause
    (a :class:`~fairing.RemoteError` when its type cannot be recreated). ``.submit(...)``
    returns a handle instead of waiting; ``.local(...)`` calls it in this process.
    ``options`` go to the backend (and may name ``builder``/``deployer`` objects).
    ``keep_logs=True`` saves the job's log before cleanup (:func:`fairing.jobs.saved_log`).

    >>> @fairing.train(backend="local", timeout=600)
    ... def fit(alpha):
    ...     return alpha * 2
    """
    if cleanup not in CLEANUP_POLICIES:
        raise ConfigurationError(f"cleanup must be one of {CLEANUP_POLICIES}, got {cleanup!r}.")

    def wrap(f: Callable) -> RemoteFunction:
        return RemoteFunction(f, timeout=timeout, cleanup=cleanup, input_files=input_files,
                              requirements=requirements, on_event=on_event,
                              options={"backend": backend, **options}, keep_logs=keep_logs)

    return wrap(func) if func is not None else wrap


def preprocessor_for(entry_point: Any, *, full_notebook: bool = False, args: Iterable[str] = (),
                     parameters: Optional[Mapping[str, Any]] = None, **kwargs: Any):
    """The preprocessor for a function, a class with train(), a .py file or an .ipynb file."""
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


class TrainJob:
    """A training job for a function, a class with ``train()``, a script or a notebook.

    >>> job = TrainJob("train.py", input_files=["data/"], requirements="requirements.txt")
    >>> handle = job.submit()
    >>> for line in handle.logs(): ...
    >>> handle.result(); handle.delete()

    ``full_notebook=True`` runs a notebook whole with papermill (``parameters`` injected)
    and returns the executed notebook. ``backend`` and ``options`` choose where it runs.
    """

    def __init__(
        self,
        entry_point: Any,
        *,
        backend: "str | Backend" = "local",
        input_files: Iterable = (),
        requirements: Any = None,
        args: Iterable[str] = (),
        full_notebook: bool = False,
        parameters: Optional[Mapping[str, Any]] = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
        name: Optional[str] = None,
        on_event: Optional[EventCallback] = None,
        **options: Any,
    ) -> None:
        self.preprocessor = preprocessor_for(
            entry_point, full_notebook=full_notebook, args=args, parameters=parameters,
            input_files=input_files, requirements=requirements, base_dir=base_dir, env=env,
        )
        self.name = name
        self.on_event = on_event
        self.options = {"backend": backend, **options}

    def submit(self) -> Handle:
        return submit(self.preprocessor, name=self.name, on_event=self.on_event, **self.options)

    def run(self, *, timeout: Optional[float] = None, cleanup: str = "always", keep_logs: bool = False) -> Any:
        """Submit, wait and return the result; ``keep_logs`` saves the log before cleanup."""
        return run_handle(self.submit(), timeout=timeout, cleanup=cleanup, keep_logs=keep_logs)
