"""Name -> class lookups for the string-keyed config API, and checking options when given.

Every part made from a name and keyword arguments (``set_builder('append', ...)``,
``get_backend('kubernetes', ...)``) goes through :func:`make`: Kubeflow Fairing 1.0.2
spellings are translated (:mod:`fairing.compat`), the keywords are bound against what
the part accepts *now* (a misspelled one is a ConfigurationError naming the valid ones
and the closest match), and settings (:mod:`fairing.settings`) fill what the caller
left out. ``inspect.signature`` is the source of truth for what a part accepts; a
``**options`` parameter is followed to where it goes (a base class's ``__init__``, or
the callables a function names with :func:`forwards_to`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Iterable, Optional

from .errors import ConfigurationError

__all__ = ["load", "accepted_options", "check_options", "checks_options", "forwards_to", "make", "call"]


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
                  legacy: "bool | frozenset[str]" = False) -> None:
    """Raise ConfigurationError for a keyword in ``options`` that ``target`` does not take.
    ``also``: names the caller handles itself (valid, though ``target`` does not take them);
    ``legacy``: Kubeflow Fairing's names are translated here, so they may be suggested too."""
    valid = accepted_options(target)
    if valid is None:
        return
    valid = valid | set(also)
    unknown = [name for name in options if name not in valid]
    if not unknown:
        return
    from .compat import legacy_names

    name = unknown[0]
    # Kubeflow Fairing's names to suggest: those this part translates (``legacy`` given as a set)
    old_names = set(legacy) if isinstance(legacy, (set, frozenset)) else legacy_names() if legacy else set()
    close = difflib.get_close_matches(name, sorted((valid | old_names) - {name}), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if name in legacy_names():  # a Kubeflow Fairing name, for another part: never suggest it back
        close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
        hint = (f" {name!r} is Kubeflow Fairing's option for another part; it does not apply here."
                + (f" Did you mean {close[0]!r}?" if close else ""))
    others = f" (and {', '.join(repr(u) for u in unknown[1:])})" if len(unknown) > 1 else ""
    raise ConfigurationError(
        f"Unknown option {name!r}{others} for {what}.{hint} Valid options: {', '.join(sorted(valid))}."
    )


def make(kind: str, table: dict, name: str, options: dict, *, settings: Any = None,
         reserved: Iterable[str] = ()) -> tuple[Callable, dict, dict]:
    """Check ``options`` for the part ``name`` of ``kind`` ('builder', 'deployer',
    'backend', 'preprocessor') now, and return (factory, keyword arguments to call it
    with, run options such as ``cleanup``/``quiet`` that old spellings asked for).

    ``settings`` (a :class:`fairing.settings.Settings`) fills the keywords the caller did
    not give; ``reserved`` are names the caller passes itself (checked as valid).
    """
    from . import compat

    name = compat.translate_name(kind, name)
    factory = load(table, name, kind)
    options, run_options = compat.translate(kind, name, options)
    what = f"the {name} {kind} ({getattr(factory, '__qualname__', name)})"
    check_options(factory, options, what, also=reserved, legacy=frozenset(compat._rules(kind, name)))
    from .settings import check_arguments

    check_arguments(options, what)
    if settings is not None:
        options = {**settings.options_for(factory, exclude=reserved), **options}
    return factory, options, run_options


def call(factory: Callable, kwargs: dict, what: str) -> Any:
    """``factory(**kwargs)``, with a missing required argument said as a ConfigurationError
    naming where it may be given (not a raw TypeError)."""
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        from .settings import PARAMETERS

        missing = [name for name in PARAMETERS.values() if f"'{name}'" in str(exc)]
        where = ""
        if missing:
            env = {"registry": "FAIRING_REGISTRY", "base_image": "FAIRING_BASE_IMAGE", "namespace": "FAIRING_NAMESPACE"}
            where = (f" Give {'= and '.join(missing)}=..., or set {'them' if len(missing) > 1 else 'it'} once: "
                     f"{', '.join(env.get(m, 'FAIRING_' + m.upper()) for m in missing)} in the environment, or "
                     f"{' and '.join(missing)} under [tool.fairing] in pyproject.toml.")
        raise ConfigurationError(f"{what} cannot be made: {exc}.{where}") from None
    return factory(**kwargs)
