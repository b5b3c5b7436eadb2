"""What every preprocessor shares: the runtime files, the payload description, and the scan.

:func:`payload_context` is where every preprocessor's files meet, so it is where the one
content scan (:func:`fairing.preprocessors.secrets.check_files`) runs on everything the
context will hold that is not fairing's own code: input files, link targets, the entry
script, a converted notebook, a notebook with its outputs, the pickled function, local
module sources, and the requirement files the requirements were read from.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

from ..context import BuildContext, Source, _normalise_path
from ..errors import PathCollisionError
from ..requirements import Requirements, parse_requirements, read_requirements_file, read_requirements_text
from ..runtime import ENTRYPOINT, PAYLOAD_FILE, RUNTIME_DIR, runtime_files
from .secrets import Described, check_files

#: The name the image's environment has in a refusal (it is not a file of the context).
_ENV_KEY = "<env>"

__all__ = ["Preprocessor", "payload_context", "normalise_requirements", "default_requirements", "add_generated"]


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
    described: Optional[Mapping[str, Described]] = None,
    own: Iterable[str] = (),
) -> BuildContext:
    """A context that runs ``payload`` with the fairing runtime, after the content scan
    of ``files`` and of the requirement files (``own``: image paths of fairing's own
    files among ``files``, not scanned; ``described``: how to name a file in a refusal)."""
    fairing_files = {**runtime_files(), PAYLOAD_FILE: b""}
    all_files: dict[str, Source] = {}
    for path, source in files.items():
        add_generated(all_files, path, source, "")
    for path in fairing_files:
        if path in all_files:
            raise PathCollisionError(
                f"{path!r} is where fairing puts its own runtime in the image, and an input file would land there too. "
                "Map it elsewhere with the dict form of input_files, e.g. input_files={'...': 'conf/...'}.")
    own = set(own)
    scanned: dict[str, object] = {k: v for k, v in all_files.items() if k not in own}
    notes = dict(described or {})
    if isinstance(requirements, Requirements):
        for name, private in requirements.files:
            scanned[name] = _without_lines(Path(name), private)
            notes[name] = Described(f"{name} (requirements)")
    # what fairing writes from the user's values: the payload (script arguments, notebook
    # parameters) in the tar, and the environment in the image's configuration
    payload_bytes = json.dumps(payload, sort_keys=True, indent=1).encode()
    scanned[PAYLOAD_FILE] = payload_bytes
    notes[PAYLOAD_FILE] = Described(f"the job's arguments and parameters ({PAYLOAD_FILE})")
    env_names = [str(k) for k in (env or {})]
    if env_names:
        scanned[_ENV_KEY] = "".join(f"{k}={v}\n" for k, v in (env or {}).items()).encode("utf-8", "surrogatepass")
        notes[_ENV_KEY] = Described("env= (the image's environment)",
                                    lambda line: f"variable {env_names[line - 1]}" if 0 < line <= len(env_names)
                                    else f"line {line}")
    check_files(scanned, described=notes)
    all_files.update(runtime_files())
    all_files[PAYLOAD_FILE] = payload_bytes
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


def _without_lines(path: Path, lines: Iterable[int]) -> bytes:
    """The bytes of ``path`` with ``lines`` emptied (their options reach pip through its
    environment only, never the image); line numbers are kept."""
    text = read_requirements_text(path)  # decoded and split into lines as the parser numbered them
    skip = set(lines)
    return "".join("\n" if i in skip else line
                   for i, line in enumerate(text.splitlines(keepends=True), 1)).encode("utf-8", "surrogatepass")


def add_generated(files: dict, path: str, source: Source, what: str) -> None:
    """Put ``source`` at ``path`` in ``files``; a file already there from another source is
    a :class:`PathCollisionError` (fairing never replaces a user's file with one it made).
    ``what`` describes the new file in the message ("the script converted from x.ipynb")."""
    path = _normalise_path(path)
    old = files.get(path)
    if old is None or old == source or (isinstance(old, Path) and isinstance(source, Path)
                                        and os.path.realpath(old) == os.path.realpath(source)):
        files[path] = source
        return
    if not what:
        raise PathCollisionError(f"Two sources would land at {path!r} in the image. Map one of them elsewhere "
                                 "with the dict form of input_files.")
    mine = f" ({old})" if isinstance(old, Path) else ""
    raise PathCollisionError(
        f"{what} would be written to {path!r} in the image, where your own file{mine} already is; fairing does not "
        f"replace it. Rename one of them, leave yours out (add {path!r} to .fairingignore), or map yours elsewhere "
        f"with the dict form of input_files, e.g. input_files={{{path!r}: 'src/{posixpath.basename(path)}'}}.")
