"""Name -> class lookups for the string-keyed config API, imported lazily."""

from __future__ import annotations

import importlib

from .errors import ConfigurationError


def load(table: dict, name: str, what: str):
    """The class registered as ``name`` in ``table`` ('module:attr' strings)."""
    try:
        target = table[name]
    except KeyError:
        choices = ", ".join(repr(k) for k in sorted(table))
        raise ConfigurationError(f"Unknown {what} {name!r}. Choose one of: {choices}.") from None
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
