"""The Kubeflow-Fairing-style one-liner::

    from fairing import config
    config.set_builder("append", base_image="python:3.11", registry="localhost:5000")
    config.set_deployer("job")
    config.run()                  # the current notebook (or script) as a job
    remote_train = config.fn(train)
    remote_train(alpha=0.1)       # a function as a job, returning its value

Nothing is resolved until ``run()`` or the call of ``fn(...)``'s result, so the
``set_*`` calls may come in any order. Inside a job (``FAIRING_RUNTIME`` set) every
call here is a no-op, so a notebook that submits itself does not submit again.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from .errors import ConfigurationError

__all__ = ["Config", "config", "set_preprocessor", "set_builder", "set_deployer", "set_backend",
           "set_options", "run", "fn", "reset"]


def _in_job() -> bool:
    from .environment import current

    return current().in_job


class Config:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._preprocessor: Optional[tuple[str, dict]] = None
        self._builder: Optional[tuple[str, dict]] = None
        self._deployer: Optional[tuple[str, dict]] = None
        self._backend: tuple[str, dict] = ("local", {})
        self._options: dict = {"timeout": None, "cleanup": "always", "on_event": None}

    def set_preprocessor(self, name: str = "notebook", **kwargs: Any) -> None:
        """'notebook' (default in Jupyter), 'full_notebook', 'python' (default in scripts), 'function'."""
        if not _in_job():
            self._preprocessor = (name, kwargs)

    def set_builder(self, name: str = "append", **kwargs: Any) -> None:
        """'local', 'append', 'docker' or 'cluster', with that builder's options."""
        if not _in_job():
            self._builder = (name, kwargs)

    def set_deployer(self, name: str = "job", **kwargs: Any) -> None:
        """'local', 'docker', 'job', 'tfjob', 'pytorchjob' or 'serving', with its options."""
        if not _in_job():
            self._deployer = (name, kwargs)

    def set_backend(self, name: str = "local", **kwargs: Any) -> None:
        """'local' (default), 'docker', 'kubernetes', 'kubeflow', 'gke' or 'aws'."""
        if not _in_job():
            self._backend = (name, kwargs)

    def set_options(self, *, timeout: Optional[float] = None, cleanup: str = "always",
                    on_event: Optional[Callable] = None) -> None:
        """How ``run()`` waits: ``timeout`` in seconds, ``cleanup`` policy, ``on_event`` renderer."""
        if not _in_job():
            self._options = {"timeout": timeout, "cleanup": cleanup, "on_event": on_event}

    def _parts(self) -> dict:
        from ._registry import load
        from .builders import BUILDERS
        from .deployers import DEPLOYERS

        parts: dict = {"backend": self._backend[0], **self._backend[1]}
        if self._builder:
            parts["builder"] = load(BUILDERS, self._builder[0], "builder")(**self._builder[1])
        if self._deployer:
            parts["deployer"] = load(DEPLOYERS, self._deployer[0], "deployer")(**self._deployer[1])
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
            main = getattr(sys.modules.get("__main__"), "__file__", None)
            if not main:
                raise ConfigurationError(
                    "config.run() could not tell what to run: this is neither a notebook nor a script. "
                    "Call config.set_preprocessor('python', entry_point='train.py') or use config.fn(func)."
                )
            name, kwargs = "python", {"entry_point": main}
        return get_preprocessor(name)(**kwargs)

    def run(self) -> Any:
        """Run the configured code as a job, wait, and return its result (None in a job)."""
        if _in_job():
            return None
        from .api import run_handle, submit

        handle = submit(self._preprocessor_obj(), on_event=self._on_event(), **self._parts())
        return run_handle(handle, timeout=self._options["timeout"], cleanup=self._options["cleanup"])

    def fn(self, func: Callable) -> Callable:
        """``func`` wrapped so that calling it runs it as a job with this configuration."""
        if _in_job():
            return func
        from .api import run_handle, submit
        from .preprocessors.function import FunctionPreprocessor

        def remote(*args: Any, **kwargs: Any) -> Any:
            if _in_job():
                return func(*args, **kwargs)
            pre = FunctionPreprocessor(func, args, kwargs, **(self._preprocessor[1] if self._preprocessor
                                                              and self._preprocessor[0] == "function" else {}))
            handle = submit(pre, on_event=self._on_event(), **self._parts())
            return run_handle(handle, timeout=self._options["timeout"], cleanup=self._options["cleanup"])

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
