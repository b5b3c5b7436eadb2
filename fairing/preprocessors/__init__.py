"""Preprocessors capture user code into a BuildContext.

``function`` (cloudpickle), ``python`` (script + input files), ``notebook`` (converted to a
script), ``full_notebook`` (run whole with papermill). Each has ``context() -> BuildContext``.
"""

from __future__ import annotations

from .base import Preprocessor

__all__ = ["Preprocessor", "get_preprocessor", "PREPROCESSORS"]

from .._names import PREPROCESSORS  # noqa: E402  (the table lives at the bottom)


def get_preprocessor(name: str):
    """The preprocessor class registered under ``name``."""
    from .._options import load

    return load(PREPROCESSORS, name, "preprocessor")
