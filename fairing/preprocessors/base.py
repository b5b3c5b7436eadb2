"""What every preprocessor shares: the runtime files and the payload description."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

from ..context import BuildContext, Source
from ..requirements import Requirements, parse_requirements, read_requirements_file
from ..runtime import ENTRYPOINT, PAYLOAD_FILE, RUNTIME_DIR, runtime_files

__all__ = ["Preprocessor", "payload_context", "normalise_requirements", "default_requirements"]


@runtime_checkable
class Preprocessor(Protocol):
    """Captures user code into a :class:`BuildContext`."""

    def context(self) -> BuildContext:
        ...


def payload_context(
    payload: dict,
    files: Mapping[str, Source],
    *,
    requirements: "Requirements | Iterable[str]" = (),
    env: Optional[Mapping[str, str]] = None,
    workdir: str = "/app",
) -> BuildContext:
    """A context that runs ``payload`` with the fairing runtime."""
    all_files: dict[str, Source] = dict(files)
    all_files.update(runtime_files())
    all_files[PAYLOAD_FILE] = json.dumps(payload, sort_keys=True, indent=1).encode()
    constraints = requirements.constraints if isinstance(requirements, Requirements) else ()
    return BuildContext(
        files=all_files,
        entrypoint=ENTRYPOINT,
        # Relative, so it works in any working directory: Python makes it absolute at startup.
        env={"PYTHONPATH": RUNTIME_DIR, "PYTHONUNBUFFERED": "1", **(env or {})},
        workdir=workdir,
        requirements=tuple(requirements),
        constraints=constraints,
    )


def normalise_requirements(requirements, base_dir: Optional[Path] = None) -> Requirements:
    """Parse a list of requirement lines, one line, or the path of a requirements file.

    ``-r``/``-c`` lines in a file are relative to that file; in a list, to ``base_dir``
    (default: the current directory).
    """
    if requirements is None:
        return Requirements()
    if isinstance(requirements, os.PathLike) or (
        isinstance(requirements, str) and Path(requirements).suffix in (".txt", ".in")
    ):
        return read_requirements_file(requirements)
    if isinstance(requirements, str):
        requirements = [requirements]
    if isinstance(requirements, Requirements):
        return requirements
    return parse_requirements(list(requirements), base_dir if base_dir is not None else Path.cwd())


def default_requirements(requirements, base_dir: Path) -> Requirements:
    """The given requirements, or ``base_dir/requirements.txt`` when none are given and it exists."""
    if requirements is None and (base_dir / "requirements.txt").is_file():
        return read_requirements_file(base_dir / "requirements.txt")
    return normalise_requirements(requirements, base_dir)
