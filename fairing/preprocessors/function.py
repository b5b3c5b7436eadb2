"""Function preprocessor: a function (or a class with ``train()``) and its arguments, cloudpickled.

Functions defined in a notebook or in ``__main__`` travel by value (cloudpickle's
default), and so do the local modules they use: modules imported from the user's
own files rather than from an installed distribution are registered with
``cloudpickle.register_pickle_by_value`` for the duration of the dump.
"""

from __future__ import annotations

import inspect
import os
import sys
import sysconfig
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from ..context import BuildContext
from ..errors import ConfigurationError, MissingDependencyError, SerializationError
from ..runtime import RUNTIME_DIR
from .base import normalise_requirements, payload_context
from .files import collect_input_files

__all__ = ["FunctionPreprocessor", "ServingPreprocessor"]

PICKLE_FILE = RUNTIME_DIR + "/function.pkl"


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError as exc:  # a core dependency, but say how to fix a broken install
        raise MissingDependencyError("cloudpickle", "core", "Packaging a function") from exc
    return cloudpickle


def _installed_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = {paths.get("stdlib"), paths.get("platstdlib"), paths.get("purelib"), paths.get("platlib"),
             sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted({os.path.realpath(r) for r in roots if r})


def _is_local_module(module: types.ModuleType, roots: list[str]) -> bool:
    name = module.__name__.split(".")[0]
    if name in sys.builtin_module_names or name in ("fairing", "cloudpickle", "__main__"):
        return False
    file = getattr(module, "__file__", None)
    if not file:
        return False
    real = os.path.realpath(file)
    return not any(real.startswith(root + os.sep) for root in roots)


def _referenced_modules(obj: Any) -> set[types.ModuleType]:
    """Modules that ``obj`` refers to through globals and closures, followed through the
    functions and classes it reaches (a module is reported, not walked)."""
    found: set[types.ModuleType] = set()
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        mod = sys.modules.get(getattr(item, "__module__", None) or "")
        if mod:
            found.add(mod)
        if inspect.isclass(item):
            todo.extend(v for v in vars(item).values() if inspect.isfunction(v))
            continue
        fn = getattr(item, "__func__", item)
        if not inspect.isfunction(fn):
            continue
        try:
            refs = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            continue
        for value in [*refs.nonlocals.values(), *refs.globals.values()]:
            if isinstance(value, types.ModuleType):
                found.add(value)
            elif inspect.isfunction(value) or inspect.isclass(value):
                todo.append(value)
            elif getattr(value, "__module__", None) in sys.modules:
                found.add(sys.modules[value.__module__])
    return found


class FunctionPreprocessor:
    extra_requirements: tuple[str, ...] = ()

    """Capture ``target(*args, **kwargs)``; a class is instantiated and its ``train()`` called.

    ``requirements`` are pip lines (or a requirements.txt path) for the image;
    ``cloudpickle`` pinned to this interpreter's version is always added, since the
    job needs the same version to load the payload. ``input_files`` are packaged
    next to the payload (relative to ``base_dir``, default the current directory).
    """

    def __init__(
        self,
        target: Callable[..., Any] | type,
        args: Iterable[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        input_files: Iterable[os.PathLike | str] = (),
        requirements: Any = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.is_class = inspect.isclass(target)
        self._check(target)
        self.target = target
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.input_files = list(input_files)
        self.requirements = normalise_requirements(requirements)
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.env = dict(env or {})

    def _check(self, target: Any) -> None:
        if self.is_class and not callable(getattr(target, "train", None)):
            raise ConfigurationError(
                f"The class {target.__qualname__} has no train() method. Give it one, or pass a function instead."
            )
        if not self.is_class and not callable(target):
            raise ConfigurationError(f"Expected a function or a class with train(), got {type(target).__name__}.")

    def _payload(self, cloudpickle_version: str) -> dict:
        return {"kind": "function", "pickle": PICKLE_FILE, "python": "%d.%d" % sys.version_info[:2],
                "cloudpickle": cloudpickle_version}

    def _dumps(self) -> bytes:
        cloudpickle = _cloudpickle()
        roots = _installed_roots()
        local = [m for m in _referenced_modules(self.target) if _is_local_module(m, roots)]
        for module in local:
            cloudpickle.register_pickle_by_value(module)
        call = {"target": self.target, "args": self.args, "kwargs": self.kwargs, "is_class": self.is_class}
        try:
            return cloudpickle.dumps(call, protocol=4)
        except Exception as exc:
            name = getattr(self.target, "__qualname__", repr(self.target))
            raise SerializationError(
                f"Could not pickle {name} with its arguments: {type(exc).__name__}: {exc}. "
                "A function sent to a job cannot capture objects that only make sense in this process "
                "(locks, open files or sockets, database connections, clients). Create them inside the "
                "function instead, or pass plain values (paths, URLs, numbers) as arguments."
            ) from exc
        finally:
            for module in local:
                cloudpickle.unregister_pickle_by_value(module)

    def context(self) -> BuildContext:
        cloudpickle = _cloudpickle()
        payload = self._payload(cloudpickle.__version__)
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        files[PICKLE_FILE] = self._dumps()
        return payload_context(
            payload, files,
            requirements=[*self.requirements, *self.extra_requirements, f"cloudpickle=={cloudpickle.__version__}"],
            env=self.env,
        )


class ServingPreprocessor(FunctionPreprocessor):
    """A model class (``predict(X)``, optional ``load()``) served over HTTP by the serving runtime."""

    extra_requirements = ("starlette>=0.37", "uvicorn>=0.29")

    def __init__(self, model_class: type, *, model_name: str, port: int = 8080, **kwargs: Any) -> None:
        super().__init__(model_class, **kwargs)
        self.model_name = model_name
        self.port = port

    def _check(self, target: Any) -> None:
        if not self.is_class or not callable(getattr(target, "predict", None)):
            raise ConfigurationError(
                f"A prediction endpoint serves a class with a predict(X) method (and optionally load()); "
                f"got {getattr(target, '__qualname__', repr(target))}."
            )

    def _payload(self, cloudpickle_version: str) -> dict:
        return {**super()._payload(cloudpickle_version), "kind": "serve", "model_name": self.model_name,
                "port": self.port}
