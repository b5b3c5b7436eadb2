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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..context import BuildContext
from ..errors import BuildError
from ..events import EventCallback, Stage, emitter

__all__ = ["LocalBuilder", "LocalImage", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fairing"


@dataclass(frozen=True)
class LocalImage:
    """What the local deployer runs: the context, the interpreter, and a site dir for requirements."""

    context: BuildContext
    python: str
    site_dir: Optional[Path] = None


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
    """Builds a :class:`LocalImage`; ``python`` is the interpreter the job will use."""

    def __init__(self, *, python: Optional[str] = None, cache_dir: Optional[os.PathLike] = None) -> None:
        self.python = python or sys.executable
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "local-requirements"

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> LocalImage:
        emit = emitter(on_event)
        same_interpreter = os.path.realpath(self.python) == os.path.realpath(sys.executable)
        needed = _unsatisfied(context.requirements) if same_interpreter else list(context.requirements)
        if not needed:
            emit(Stage("requirements", "skipped", "all requirements already installed"))
            return LocalImage(context, self.python)
        key = hashlib.sha256(("\n".join(sorted(needed)) + "\n" + self.python).encode()).hexdigest()[:24]
        site = self.cache_dir / key
        if site.is_dir():
            emit(Stage("requirements", "skipped", f"cached in {site}"))
            return LocalImage(context, self.python, site)
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
                raise BuildError(
                    f"pip could not install the job's requirements {needed}:\n{tail}\n"
                    "Check the package names and versions, and that this machine can reach the package index."
                )
            os.replace(staging, site)  # atomic: a half-finished install is never used
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        emit(Stage("requirements", "finished", str(site)))
        return LocalImage(context, self.python, site)
