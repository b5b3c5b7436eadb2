"""The Kubeflow-Fairing-style one-liner::

    from fairing import config
    config.set_builder("append", base_image="python:3.11", registry="localhost:5000")
    config.set_deployer("job")
    config.run()                  # the current notebook (or script) as a job
    remote_train = config.fn(train)
    remote_train(alpha=0.1)       # a function as a job, returning its value

Names and options are checked when given; the parts are made at ``run()`` (or the call of
``fn(...)``'s result), with the settings (:mod:`fairing.settings`) filling what is not given, so the
``set_*`` calls may come in any order. Inside a job (``FAIRING_RUNTIME`` set) every
call here is a no-op, so a notebook that submits itself does not submit again.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from ._typing import P, R
from .errors import ConfigurationError

__all__ = ["Config", "config", "set_preprocessor", "set_builder", "set_deployer", "set_backend",
           "set_options", "run", "fn", "reset"]


def _in_job() -> bool:
    from .api import in_job  # the one definition; imported when first asked (import fairing stays light)

    return in_job()


_OPTIONS = {"timeout": None, "cleanup": "always", "on_event": None, "quiet": False}


def _run_options(*, timeout=None, cleanup="always", on_event=None, quiet=False) -> None:
    """The options of set_options(), as a signature to check them against."""


class Config:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._preprocessor: Optional[tuple[str, dict]] = None
        self._builder: Optional[tuple[Callable, str, dict]] = None
        self._deployer: Optional[tuple[Callable, str, dict]] = None
        self._backend: tuple[Any, dict] = (None, {})  # None: the backend setting, else 'local'
        self._options: dict = dict(_OPTIONS)

    def _apply_run_options(self, run: dict) -> None:
        self._options.update(run)

    def set_preprocessor(self, name: str = "notebook", **kwargs: Any) -> None:
        """'notebook' (default in Jupyter), 'full_notebook', 'python' (default in scripts), 'function'."""
        if _in_job():
            return
        from ._registry import make
        from .preprocessors import PREPROCESSORS

        _factory, kwargs, run = make("preprocessor", PREPROCESSORS, name, kwargs,
                                     reserved=("target", "args", "kwargs") if name == "function" else ())
        self._apply_run_options(run)
        self._preprocessor = (name, kwargs)

    def set_builder(self, name: str = "append", **kwargs: Any) -> None:
        """'local', 'append', 'docker' or 'cluster', with that builder's options (checked now;
        the settings fill the rest at ``run()``)."""
        if _in_job():
            return
        from ._registry import make
        from .builders import BUILDERS

        factory, kwargs, run = make("builder", BUILDERS, name, kwargs)
        self._apply_run_options(run)
        self._builder = (factory, name, kwargs)

    def set_deployer(self, name: str = "job", **kwargs: Any) -> None:
        """'local', 'docker', 'job', 'tfjob', 'pytorchjob' or 'serving', with its options."""
        if _in_job():
            return
        from ._registry import make
        from .deployers import DEPLOYERS

        factory, kwargs, run = make("deployer", DEPLOYERS, name, kwargs)
        self._apply_run_options(run)
        self._deployer = (factory, name, kwargs)

    def set_backend(self, name: Any = None, **kwargs: Any) -> None:
        """'local', 'docker', 'kubernetes', 'kubeflow', 'gke' or 'aws' (None: the ``backend``
        setting, else 'local'), or a Kubeflow Fairing backend object; options checked now."""
        if _in_job():
            return
        from .backends import backend_factory

        backend_factory(name, kwargs)  # checks
        self._backend = (name, kwargs)

    def set_options(self, **options: Any) -> None:
        """How ``run()`` waits: ``timeout`` in seconds [None], ``cleanup`` policy ['always'],
        ``on_event`` renderer [None]; ``quiet=True`` keeps the job's output from streaming
        to stdout [False]. Options not given get their defaults."""
        if _in_job():
            return
        from ._registry import check_options
        from .api import CLEANUP_POLICIES

        check_options(_run_options, options, "config.set_options()")
        cleanup = options.get("cleanup", "always")
        if cleanup not in CLEANUP_POLICIES:
            raise ConfigurationError(f"cleanup must be one of {CLEANUP_POLICIES}, got {cleanup!r}.")
        self._options = {**_OPTIONS, **options}

    def _parts(self) -> dict:
        from ._registry import call
        from .settings import resolve

        settings = resolve()
        parts: dict = {}
        if self._builder:
            factory, name, kwargs = self._builder
            parts["builder"] = call(factory, {**settings.options_for(factory), **kwargs}, f"the {name} builder")
        if self._deployer:
            factory, name, kwargs = self._deployer
            parts["deployer"] = call(factory, {**settings.options_for(factory), **kwargs}, f"the {name} deployer")
        from .backends import BackendChoice

        name, kwargs = self._backend
        parts["backend"] = BackendChoice(name, kwargs).make(builder=parts.get("builder"),
                                                              deployer=parts.get("deployer"))
        return parts

    def _on_event(self):
        return self._options["on_event"]  # None: submit() picks the notebook renderer in Jupyter

    def _preprocessor_obj(self):
        from .notebook.display import in_notebook
        from .preprocessors import get_preprocessor

        if self._preprocessor:
            name, kwargs = self._preprocessor
        elif in_notebook():
            name, kwargs = "notebook", {}
        else:
            name, kwargs = "python", {}
        if name == "python" and "entry_point" not in kwargs:
            kwargs = {**kwargs, "entry_point": self._script(kwargs.get("input_files") or ())}
        return get_preprocessor(name)(**kwargs)

    @staticmethod
    def _script(input_files) -> str:
        """The script to run: the one .py among the input files (as Kubeflow Fairing chose),
        else the running script."""
        scripts = [str(f) for f in input_files if str(f).endswith(".py")]
        if len(scripts) == 1:
            return scripts[0]
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main:
            raise ConfigurationError(
                "config.run() could not tell what to run: this is neither a notebook nor a script. "
                "Call config.set_preprocessor('python', entry_point='train.py') or use config.fn(func)."
            )
        return main

    def _wait(self, preprocessor) -> Any:
        from .api import run_handle, submit

        parts = self._parts()
        handle = submit(preprocessor, on_event=self._on_event(), quiet=self._options["quiet"], **parts)
        return run_handle(handle, timeout=self._options["timeout"], cleanup=self._options["cleanup"],
                          outputs_dir=".")  # the files it wrote under $FAIRING_OUTPUTS come back here

    def run(self) -> Any:
        """Run the configured code as a job, wait, and return its result (None in a job)."""
        if _in_job():
            return None
        return self._wait(self._preprocessor_obj())

    def fn(self, func: Callable[P, R]) -> Callable[P, R]:
        """``func`` wrapped so that calling it runs it as a job with this configuration (its
        parameters and return type kept, for editors and type checkers)."""
        if _in_job():
            return func
        from .preprocessors.function import FunctionPreprocessor

        def remote(*args: P.args, **kwargs: P.kwargs) -> R:
            if _in_job():
                return func(*args, **kwargs)
            extra = {}
            if self._preprocessor and self._preprocessor[0] == "function":
                extra = {k: v for k, v in self._preprocessor[1].items() if k != "target"}
            result: R = self._wait(FunctionPreprocessor(func, args, kwargs, **extra))
            return result

        remote.__name__ = getattr(func, "__name__", "remote")
        remote.__doc__ = func.__doc__
        return remote


config = Config()
set_preprocessor = config.set_preprocessor
set_builder = config.set_builder
set_deployer = config.set_deployer
set_backend = config.set_backend
set_options = config.set_options
run = config.run
fn = config.fn
reset = config.reset
