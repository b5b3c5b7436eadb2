"""Local builder: the 'image' of the local backend is the BuildContext plus its installed requirements.

Requirements already satisfied by the interpreter that will run the job are not
installed again; the others are installed once with ``pip install --target`` into a
cache directory shared by every process of the user. The cache key is the
requirement lines (in order, with their hashes), the constraints, the indexes (with
credentials redacted) and the interpreter's version, implementation and platform, so a
virtualenv recreated with another Python never reuses an install made for the old one.
Concurrent submits are safe: the install runs in a temporary directory under an
exclusive lock on the key (``fcntl.flock``), is renamed into place atomically, and a
submit that waited for the lock finds the finished install and uses it.

Index URLs reach pip through its environment (``PIP_INDEX_URL``...), never its
arguments, and pip's output is redacted before it enters an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .._lock import exclusive
from .._options import checks_options
from ..artifacts import LocalDir
from ..context import CONSTRAINTS_FILE, BuildContext
from ..errors import BuildError
from ..events import EventCallback, Stage, emitter
from ..requirements import redact

__all__ = ["LocalBuilder"]


_IDENTITY = ("import json, platform, sys, sysconfig; print(json.dumps([platform.python_version(), "
             "sys.implementation.cache_tag, sysconfig.get_platform(), sys.abiflags if hasattr(sys, 'abiflags') else '']))")


@lru_cache(maxsize=None)
def _interpreter_identity(python: str) -> tuple[str, ...]:
    """Version, implementation tag, platform and ABI flags of ``python`` (what an install depends on)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        import platform

        return (platform.python_version(), sys.implementation.cache_tag, sysconfig.get_platform(),
                getattr(sys, "abiflags", ""))
    try:
        out = subprocess.run([python, "-c", _IDENTITY], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"Could not run the job's interpreter {python!r}: {exc}. Check the python= path.") from exc
    return tuple(json.loads(out))


def _unsatisfied(requirements: tuple[str, ...]) -> list[str]:
    """Requirement lines the current interpreter does not already satisfy, and every option line."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in requirements:
        if line.startswith("-"):
            missing.append(line)  # an option (--pre, --find-links...): pip's
            continue
        try:
            req = Requirement(line.split(" --", 1)[0].strip())
        except InvalidRequirement:
            missing.append(line)  # let pip judge (URLs, paths)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class LocalBuilder:
    """Builds a :class:`~fairing.artifacts.LocalDir`; ``python`` is the interpreter the job
    will use; ``cache_dir`` holds installed requirements [``<cache dir>/local-requirements``,
    see :mod:`fairing.environment`]."""

    produces = LocalDir

    def __init__(self, *, python: Optional[str] = None, cache_dir: Optional[os.PathLike] = None) -> None:
        from ..environment import current

        self.python = python or sys.executable
        self.cache_dir = Path(cache_dir) if cache_dir else current().cache_dir / "local-requirements"

    def cache_key(self, context: BuildContext, needed: list[str]) -> str:
        recipe = {"requirements": needed, "constraints": list(context.constraints),
                  "indexes": context.pip_indexes.redacted(), "python": list(_interpreter_identity(self.python))}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> LocalDir:
        emit = emitter(on_event)
        same_interpreter = os.path.realpath(self.python) == os.path.realpath(sys.executable)
        needed = _unsatisfied(context.requirements) if same_interpreter else list(context.requirements)
        if not any(not line.startswith("-") for line in needed):
            emit(Stage("requirements", "skipped", "all requirements already installed"))
            return LocalDir(context, self.python)
        key = self.cache_key(context, needed)
        site = self.cache_dir / key
        if site.is_dir():
            emit(Stage("requirements", "skipped", f"cached in {site}"))
            return LocalDir(context, self.python, site)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.cache_dir / f".{key}.lock"):
            if site.is_dir():  # another submit installed it while this one waited
                emit(Stage("requirements", "skipped", f"cached in {site}"))
                return LocalDir(context, self.python, site)
            emit(Stage("requirements", "started", " ".join(needed)))
            self._install(context, needed, site, key, emit)
        emit(Stage("requirements", "finished", str(site)))
        return LocalDir(context, self.python, site)

    def _install(self, context: BuildContext, needed: list[str], site: Path, key: str, emit: EventCallback) -> None:
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.cache_dir))
        try:
            staging = work / "site"
            needed_context = BuildContext(files={}, entrypoint=("true",), requirements=needed,
                                          constraints=context.constraints)
            (work / "requirements.txt").write_bytes(needed_context.requirements_txt(public_indexes=False))
            (work / CONSTRAINTS_FILE).write_bytes(context.constraints_txt())
            proc = subprocess.run(
                [self.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-input", "--target", str(staging), "-r", str(work / "requirements.txt")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, **context.pip_indexes.env()},
            )
            if proc.returncode != 0:
                tail = redact("\n".join(proc.stdout.strip().splitlines()[-15:]))
                emit(Stage("requirements", "failed", f"pip exited with {proc.returncode}"))
                raise BuildError(
                    f"pip could not install the job's requirements {needed}:\n{tail}\n"
                    "Check the package names and versions, and that this machine can reach the package index."
                )
            staging.mkdir(exist_ok=True)  # only options: nothing installed
            os.replace(staging, site)  # atomic, under the lock: a half-finished install is never used
        finally:
            shutil.rmtree(work, ignore_errors=True)
