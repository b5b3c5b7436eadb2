"""Local builder: the 'image' of the local backend is the BuildContext plus its installed requirements.

Requirements already satisfied by the interpreter that will run the job are not
installed again; the others are installed once with ``pip install --target`` into a
cache directory keyed by the requirements' hash (the same idea as the append
builder's requirements layer).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from ..artifacts import LocalDir
from ..context import BuildContext
from ..errors import BuildError
from ..events import EventCallback, Stage, emitter

__all__ = ["LocalBuilder"]


def _unsatisfied(requirements: tuple[str, ...]) -> list[str]:
    """Requirements the current interpreter does not already satisfy."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            missing.append(line)  # let pip judge (URLs, paths, options)
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


class LocalBuilder:
    """Builds a :class:`~fairing.artifacts.LocalDir`; ``python`` is the interpreter the job
    will use; ``cache_dir`` holds installed requirements [``<cache dir>/local-requirements``,
    see :mod:`fairing.environment`]."""

    produces = LocalDir

    def __init__(self, *, python: Optional[str] = None, cache_dir: Optional[os.PathLike] = None) -> None:
        from ..environment import current

        self.python = python or sys.executable
        self.cache_dir = Path(cache_dir) if cache_dir else current().cache_dir / "local-requirements"

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> LocalDir:
        emit = emitter(on_event)
        same_interpreter = os.path.realpath(self.python) == os.path.realpath(sys.executable)
        needed = _unsatisfied(context.requirements) if same_interpreter else list(context.requirements)
        if not needed:
            emit(Stage("requirements", "skipped", "all requirements already installed"))
            return LocalDir(context, self.python)
        key = hashlib.sha256(("\n".join(sorted(needed)) + "\n" + self.python).encode()).hexdigest()[:24]
        site = self.cache_dir / key
        if site.is_dir():
            emit(Stage("requirements", "skipped", f"cached in {site}"))
            return LocalDir(context, self.python, site)
        emit(Stage("requirements", "started", " ".join(needed)))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.cache_dir))
        try:
            proc = subprocess.run(
                [self.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-input", "--target", str(staging), *needed],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
                emit(Stage("requirements", "failed", f"pip exited with {proc.returncode}"))
                raise BuildError(
                    f"pip could not install the job's requirements {needed}:\n{tail}\n"
                    "Check the package names and versions, and that this machine can reach the package index."
                )
            os.replace(staging, site)  # atomic: a half-finished install is never used
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        emit(Stage("requirements", "finished", str(site)))
        return LocalDir(context, self.python, site)
