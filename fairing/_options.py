"""Checking keyword options when they are given, and loading a part by its name.

At the bottom of fairing's import graph: it imports only :mod:`fairing.errors`, so every
stage (builders, deployers, preprocessors) and the facade above them can use it.
``inspect.signature`` is the source of truth for what a part accepts; a ``**options``
parameter is followed to where it goes (a base class's ``__init__``, or the callables a
function names with :func:`forwards_to`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Iterable, Optional

from .errors import ConfigurationError

__all__ = ["load", "accepted_options", "check_options", "checks_options", "forwards_to", "job_options",
           "job_options_of", "JOB_OPTIONS"]


def load(table: dict, name: str, what: str):
    """The class registered as ``name`` in ``table`` ('module:attr' strings)."""
    if not isinstance(name, str):
        raise ConfigurationError(f"The {what} must be named by a string, got {type(name).__name__} {name!r}.")
    try:
        target = table[name]
    except KeyError:
        choices = ", ".join(repr(k) for k in sorted(table))
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"Unknown {what} {name!r}.{hint} Choose one of: {choices}.") from None
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("fairing"):
            raise ConfigurationError(
                f"The {what} {name!r} is not available in this version of fairing. "
                f"Upgrade fairing, or choose another {what}."
            ) from None
        raise


def forwards_to(*targets: "str | Callable") -> Callable[[Callable], Callable]:
    """Mark a function whose ``**options`` go on to ``targets`` (callables, or
    'module:attr' strings resolved on first use), so its options can be checked."""

    def mark(fn: Callable) -> Callable:
        fn.__fairing_forwards__ = targets  # type: ignore[attr-defined]
        return fn

    return mark


def checks_options(fn: Callable) -> Callable:
    """Decorate a factory function or class so that a keyword it (or where its ``**options``
    go) does not take is a ConfigurationError naming the valid ones and the closest match,
    when it is called directly too. On a class, the check covers its subclasses that pass
    their ``**options`` on to it (it checks against the class being made)."""
    import functools

    if inspect.isclass(fn):
        init = fn.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            check_options(type(self), kwargs, f"{type(self).__name__}()")
            init(self, *args, **kwargs)

        fn.__init__ = __init__  # type: ignore[misc]
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_options(fn, kwargs, f"{fn.__name__}()")
        return fn(*args, **kwargs)

    return checked


def _resolve(target: "str | Callable") -> Callable:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


def accepted_options(target: Callable) -> Optional[frozenset[str]]:
    """The keyword names ``target`` accepts, following ``**options``; None when it
    takes ``**options`` that cannot be followed (then anything goes)."""
    names: set[str] = set()
    pending: list[Callable] = [target]
    seen: set[int] = set()
    while pending:
        fn = pending.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if inspect.isclass(fn):
            # the first __init__ along the MRO, then its bases' while it passes **kwargs on
            for klass in fn.__mro__:
                init = klass.__dict__.get("__init__")
                if init is None:
                    continue
                params = inspect.signature(init).parameters.values()
                names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                             and p.name != "self")
                if not any(p.kind is p.VAR_KEYWORD for p in params):
                    break
            continue
        params = inspect.signature(fn).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if any(p.kind is p.VAR_KEYWORD for p in params):
            forwards = getattr(fn, "__fairing_forwards__", None)
            if forwards is None:
                return None
            pending.extend(_resolve(t) for t in forwards)
    return frozenset(names)


def check_options(target: Callable, options: Iterable[str], what: str, *, also: Iterable[str] = (),
                  suggest: Iterable[str] = (), foreign: Iterable[str] = ()) -> None:
    """Raise ConfigurationError for a keyword in ``options`` that ``target`` does not take.
    ``also``: names the caller handles itself (valid, though ``target`` does not take them);
    ``suggest``: more names a 'did you mean' may offer (Kubeflow Fairing's, where the caller
    translates them); ``foreign``: Kubeflow Fairing's names of other parts, said to be so and
    never suggested back."""
    valid = accepted_options(target)
    if valid is None:
        return
    valid = valid | set(also)
    unknown = [name for name in options if name not in valid]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, sorted((valid | set(suggest)) - {name}), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if name in set(foreign):
        close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
        hint = (f" {name!r} is Kubeflow Fairing's option for another part; it does not apply here."
                + (f" Did you mean {close[0]!r}?" if close else ""))
    others = f" (and {', '.join(repr(u) for u in unknown[1:])})" if len(unknown) > 1 else ""
    raise ConfigurationError(
        f"Unknown option {name!r}{others} for {what}.{hint} Valid options: {', '.join(sorted(valid))}."
    )


#: The options a command line may give for a job, whatever the backend; each backend says
#: which of them it takes (:func:`job_options`), and the CLI asks it (:func:`job_options_of`).
JOB_OPTIONS = ("registry", "base_image", "insecure_registry", "namespace", "deployer", "replicas", "nodes", "cpu",
               "memory", "gpus", "env", "secret_env", "queue")


def job_options(*names: str) -> Callable[[Callable], Callable]:
    """Declare which of :data:`JOB_OPTIONS` a backend factory takes (as arguments, mutators
    or a deployer): ``@job_options("registry", "cpu", ...)``."""
    unknown = set(names) - set(JOB_OPTIONS)
    if unknown:
        raise ValueError(f"not job options: {sorted(unknown)}")

    def mark(fn: Callable) -> Callable:
        fn.__fairing_job_options__ = frozenset(names)  # type: ignore[attr-defined]
        return fn

    return mark


def job_options_of(factory: Callable) -> frozenset:
    """The job options ``factory`` (a backend) declared with :func:`job_options` (none when it did not)."""
    return getattr(factory, "__fairing_job_options__", frozenset())

