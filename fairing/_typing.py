"""Type variables for the decorators that keep a function's signature (``@train``,
``config.fn``): ``P`` its parameters, ``R`` its return type. ``ParamSpec`` is in
:mod:`typing` from Python 3.10; before that it comes from ``typing_extensions``."""

from __future__ import annotations

import sys
from typing import TypeVar

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover - Python 3.9
    from typing_extensions import ParamSpec

__all__ = ["P", "R"]

P = ParamSpec("P")
R = TypeVar("R")
