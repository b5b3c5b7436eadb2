"""What every preprocessor shares: the runtime files and the payload description."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

from ..context import BuildContext, Source
from ..errors import EntryPointNotFoundError
from ..runtime import ENTRYPOINT, PAYLOAD_FILE, RUNTIME_DIR, runtime_files

__all__ = ["Preprocessor", "payload_context", "read_requirements", "normalise_requirements", "default_requirements"]


@runtime_checkable
class Preprocessor(Protocol):
    """Captures user code into a :class:`BuildContext`."""

    def context(self) -> BuildContext:
        ...


def payload_context(
    payload: dict,
    files: Mapping[str, Source],
    *,
    requirements: Iterable[str] = (),
    env: Optional[Mapping[str, str]] = None,
    workdir: str = "/app",
) -> BuildContext:
    """A context that runs ``payload`` with the fairing runtime."""
    all_files: dict[str, Source] = dict(files)
    all_files.update(runtime_files())
    all_files[PAYLOAD_FILE] = json.dumps(payload, sort_keys=True, indent=1).encode()
    return BuildContext(
        files=all_files,
        entrypoint=ENTRYPOINT,
        # Relative, so it works in any working directory: Python makes it absolute at startup.
        env={"PYTHONPATH": RUNTIME_DIR, "PYTHONUNBUFFERED": "1", **(env or {})},
        workdir=workdir,
        requirements=tuple(requirements),
    )


def read_requirements(path: os.PathLike | str) -> list[str]:
    """Requirement lines of a requirements.txt (comments and blanks dropped)."""
    p = Path(path)
    if not p.is_file():
        raise EntryPointNotFoundError(
            f"The requirements file {str(p)!r} does not exist. Check the path, or pass requirements=[...] as a list."
        )
    lines = []
    for raw in p.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def normalise_requirements(requirements) -> list[str]:
    """Accept a list of requirement lines or the path of a requirements file."""
    if requirements is None:
        return []
    if isinstance(requirements, (str, os.PathLike)) and Path(requirements).suffix == ".txt":
        return read_requirements(requirements)
    if isinstance(requirements, str):
        return [requirements]
    return list(requirements)


def default_requirements(requirements, base_dir: Path) -> list[str]:
    """The given requirements, or ``base_dir/requirements.txt`` when none are given and it exists."""
    if requirements is None and (base_dir / "requirements.txt").is_file():
        return read_requirements(base_dir / "requirements.txt")
    return normalise_requirements(requirements)
