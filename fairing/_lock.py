"""An exclusive lock on a file, across threads and processes, for the caches (``fcntl.flock``:
released by the kernel when the holder exits, so a killed submit never leaves it held)."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

__all__ = ["exclusive"]


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    # A new open file description per call, so threads of one process exclude each other too.
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
