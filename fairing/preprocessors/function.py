"""Function preprocessor: a function (or a class with ``train()``) and its arguments, cloudpickled.

Only the function and its arguments are pickled. Functions defined in a notebook or in
``__main__`` travel by value (cloudpickle's default), and so does a target defined in
one of the user's own modules (with just the globals it uses). The local modules it
uses — imported from the user's files rather than from an installed distribution —
travel as *source files* under ``.fairing/modules`` and are imported in the job, so a
module's namespace (a password or token it read at import) never enters the payload.
Those files go through the same credential scan as the other inputs.
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
from ..runtime import MODULES_DIR, RUNTIME_DIR
from .base import Described, add_generated, normalise_requirements, payload_context
from .files import check_secrets, collect_input_files

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


def _local_closure(start: Iterable[types.ModuleType], roots: list[str]) -> set[types.ModuleType]:
    """The local modules in ``start`` and, through their namespaces, the local modules they use."""
    found: set[types.ModuleType] = set()
    todo = [m for m in start if _is_local_module(m, roots)]
    while todo:
        module = todo.pop()
        if module in found:
            continue
        found.add(module)
        for value in list(vars(module).values()):
            try:
                other = value if isinstance(value, types.ModuleType) else sys.modules.get(value.__module__ or "")
            except Exception:  # objects with odd attribute access
                continue
            if other is not None and other not in found and _is_local_module(other, roots):
                todo.append(other)
    return found


#: Only the Python sources of a shipped package (its data files stay the user's to list).
_PY_ONLY = ("*", "!*/", "!*.py")


def _module_sources(modules: Iterable[types.ModuleType]) -> dict:
    """Image path (under MODULES_DIR) -> source, for each module: the ``.py`` files of its
    whole top-level package (its modules import one another), or the module's own file."""
    files: dict = {}
    packages: dict[str, str] = {}
    for module in modules:
        top = module.__name__.split(".")[0]
        top_file = getattr(sys.modules.get(top), "__file__", None)
        if top_file and os.path.basename(top_file).startswith("__init__."):
            packages[os.path.dirname(top_file)] = f"{MODULES_DIR}/{top}"
            continue
        parts = module.__name__.split(".")  # a single-file module, or one in a namespace package
        rel = "/".join([*parts[:-1], os.path.basename(module.__file__)])
        files[f"{MODULES_DIR}/{rel}"] = Path(module.__file__)
    check_secrets(files)
    if packages:  # walked with the ignore and credential rules, and scanned
        files.update(collect_input_files(packages, extra_ignore=_PY_ONLY))
    return files


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
        input_files: Any = (),
        requirements: Any = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.is_class = inspect.isclass(target)
        self._check(target)
        self.target = target
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.input_files = input_files
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.requirements = normalise_requirements(requirements, self.base_dir)
        self.env = dict(env or {})

    def _check(self, target: Any) -> None:
        if self.is_class and not callable(getattr(target, "train", None)):
            raise ConfigurationError(
                f"The class {target.__qualname__} has no train() method. Give it one, or pass a function instead."
            )
        if not self.is_class and not callable(target):
            raise ConfigurationError(f"Expected a function or a class with train(), got {type(target).__name__}.")

    def _payload(self, cloudpickle_version: str) -> dict:
        from .origins import code_origins

        return {"kind": "function", "pickle": PICKLE_FILE, "python": "%d.%d" % sys.version_info[:2],
                "cloudpickle": cloudpickle_version, "origins": code_origins(self.target)}

    def _own_module(self) -> Optional[types.ModuleType]:
        return sys.modules.get(getattr(self.target, "__module__", None) or "")

    def _shipped_modules(self) -> set[types.ModuleType]:
        """The local modules the job imports from source: all the target uses except its own module."""
        roots = _installed_roots()
        used = _referenced_modules(self.target)
        for value in (*self.args, *self.kwargs.values()):
            mod = sys.modules.get(type(value).__module__)
            if mod is not None:
                used.add(mod)
        own = self._own_module()
        return {m for m in _local_closure(used - {own} if own else used, roots) if m is not own}

    def _dumps(self) -> bytes:
        cloudpickle = _cloudpickle()
        own = self._own_module()
        # The target's own module, when it is the user's: by value, so that only the target and
        # the globals it uses travel (the module is not imported in the job).
        local = [own] if own is not None and _is_local_module(own, _installed_roots()) else []
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
        files.update(_module_sources(self._shipped_modules()))
        add_generated(files, PICKLE_FILE, self._dumps(), "The pickled function")
        return payload_context(payload, files, requirements=self._requirements(cloudpickle.__version__),
                               env=self.env, described={PICKLE_FILE: Described(
                                   f"the pickled {getattr(self.target, '__qualname__', 'function')} with its "
                                   f"arguments ({PICKLE_FILE})")})

    def _requirements(self, cloudpickle_version: str):
        """The user's requirements plus what the job needs to load the payload, unless they name it."""
        from ..requirements import requirement_name

        wanted = [*self.extra_requirements, f"cloudpickle=={cloudpickle_version}"]
        named = self.requirements.names()
        missing = [r for r in wanted if requirement_name(r) not in named]
        if missing and any(" --hash=" in line for line in self.requirements):
            raise ConfigurationError(
                f"The requirements are hashed (pip's hash-checking mode), so the job's own {', '.join(missing)} cannot "
                "be added without a hash. Add them to your requirements with their hashes (pip-compile "
                "--generate-hashes, or pip hash on the wheel)."
            )
        return self.requirements.plus(missing)


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
        from ..runtime.tensors import model_tensors

        try:
            model_tensors(target)
        except ValueError as exc:
            raise ConfigurationError(
                f"The model class's tensor declaration is wrong: {exc}. Declare each input and output as "
                "inputs = [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 4]}] (or leave them out: the first "
                "request's tensors become the model's metadata).") from None

    def _payload(self, cloudpickle_version: str) -> dict:
        from .. import __version__ as version

        return {**super()._payload(cloudpickle_version), "kind": "serve", "model_name": self.model_name,
                "port": self.port, "server_version": version}
