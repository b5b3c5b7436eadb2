"""Name -> class lookups for the string-keyed config API, and checking options when given.

Every part made from a name and keyword arguments (``set_builder('append', ...)``,
``get_backend('kubernetes', ...)``) goes through :func:`make`: Kubeflow Fairing 1.0.2
spellings are translated (:mod:`fairing.compat`), the keywords are bound against what
the part accepts *now* (a misspelled one is a ConfigurationError naming the valid ones
and the closest match; the checking itself is :mod:`fairing._options`, at the bottom),
and settings (:mod:`fairing.settings`) fill what the caller left out.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from ._options import accepted_options, check_options, checks_options, forwards_to, load
from .errors import ConfigurationError

__all__ = ["load", "accepted_options", "check_options", "checks_options", "forwards_to", "make", "call"]


def make(kind: str, table: dict, name: str, options: dict, *, settings: Any = None,
         reserved: Iterable[str] = (), caller: Any = None) -> tuple[Callable, dict, dict]:
    """Check ``options`` for the part ``name`` of ``kind`` ('builder', 'deployer',
    'backend', 'preprocessor') now, and return (factory, keyword arguments to call it
    with, run options such as ``cleanup``/``quiet`` that old spellings asked for).

    ``settings`` (a :class:`fairing.settings.Settings`) fills the keywords the caller did
    not give; ``reserved`` are names the caller passes itself (checked as valid). An option
    given as None is not given. ``caller``: (what, parameter names) of the call the options
    were given to (``TrainJob()``): a misspelled option is said to be that call's, and its
    own parameters are valid and suggested (``timout`` -> ``timeout``).
    """
    from . import compat

    name = compat.translate_name(kind, name)
    factory = load(table, name, kind)
    options, run_options = compat.translate(kind, name, options)
    options = {k: v for k, v in options.items() if v is not None}
    what = f"the {name} {kind} ({getattr(factory, '__qualname__', name)})"
    also = set(reserved)
    if caller is not None:
        what = f"{caller[0]} with {what}"
        also.update(caller[1])
    check_options(factory, options, what, also=also, suggest=frozenset(compat._rules(kind, name)),
                  foreign=compat.legacy_names())
    from .settings import check_arguments

    check_arguments(options, what)
    _check_resources(options, what)
    if settings is not None:
        options = {**settings.options_for(factory, exclude=reserved), **options}
    return factory, options, run_options


def _check_resources(options: dict, what: str) -> None:
    """``cpu``/``memory``/``gpus`` checked by Kubernetes' rules when given (:mod:`fairing.resources`),
    so ``memory="4GB"`` is refused here, before any build."""
    from .resources import check_cpu, check_gpus, check_memory

    check_cpu(options.get("cpu"))
    check_memory(options.get("memory"))
    if options.get("gpus") != "all":  # the Docker engine's own "every GPU"
        check_gpus(options.get("gpus"))


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
