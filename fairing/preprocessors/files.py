"""Collecting input files: explicit paths, directories walked with ignore rules.

Directories are walked with the rules of ``.gitignore`` and ``.fairingignore`` files
(found in the base directory and in each walked directory, as git reads them) plus
a default list. The default list keeps out version-control data, virtualenvs,
caches and credentials; a credential file is packaged only when the user lists it
by its own path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from ..errors import ConfigurationError, EntryPointNotFoundError

__all__ = ["DEFAULT_IGNORE", "collect_input_files", "image_path"]

DEFAULT_IGNORE = (
    # version control, environments, caches
    ".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", ".venv/", "venv/", ".tox/", ".nox/",
    ".mypy_cache/", ".pytest_cache/", ".ipynb_checkpoints/", ".fairing-cache/",
    # credentials: never packaged unless listed explicitly
    ".aws/", ".docker/config.json", ".docker/", ".kube/", ".ssh/", ".gnupg/", ".env", ".env.*",
    "*.pem", "*.key", "id_rsa", "id_rsa.*", "id_dsa", "id_ecdsa", "id_ed25519", "id_ed25519.*",
    "kubeconfig", "*.kubeconfig", "kubeconfig.*", ".netrc", ".git-credentials", ".pypirc",
    "gcloud-service-key.json", "service-account*.json",
)

_IGNORE_FILES = (".gitignore", ".fairingignore")


def _spec(lines: Iterable[str]):
    import pathspec  # light, but only needed when walking directories

    return pathspec.GitIgnoreSpec.from_lines(list(lines))


def image_path(path: Path, base_dir: Path) -> str:
    """Where ``path`` lands in the image: relative to base_dir when below it, else its name."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _anchor(line: str, rel_dir: str) -> str:
    """Rewrite a rule of the ignore file in ``rel_dir`` to match paths relative to the walk's root."""
    if rel_dir == ".":
        return line
    neg, body = (True, line[1:]) if line.startswith("!") else (False, line)
    if "/" in body.rstrip("/"):
        body = f"{rel_dir}/{body.lstrip('/')}"
    else:  # a bare name matches at any depth below its ignore file
        body = f"{rel_dir}/**/{body}"
    return ("!" if neg else "") + body


def _walk(root: Path, base_dir: Path, rules: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    rules_for: dict[Path, list[str]] = {root: list(rules)}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        local = rules_for.pop(here)
        for name in _IGNORE_FILES:
            if (here / name).is_file():
                for line in (here / name).read_text().splitlines():
                    line = line.strip()
                    if line and not line.startswith("#"):
                        local.append(_anchor(line, rel_dir))
        spec = _spec(local)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not spec.match_file(prefix + d + "/"))
        for d in dirnames:
            rules_for[here / d] = local
        for name in sorted(filenames):
            full = here / name
            if name in _IGNORE_FILES or spec.match_file(prefix + name) or not full.is_file():
                continue
            found[image_path(full, base_dir)] = full
    return found


def collect_input_files(
    input_files: Iterable[os.PathLike | str],
    base_dir: Optional[os.PathLike | str] = None,
    *,
    extra_ignore: Iterable[str] = (),
) -> dict[str, Path]:
    """Map image paths to files for every input file and every file below input directories."""
    if isinstance(input_files, (str, os.PathLike)):
        raise ConfigurationError(
            f"input_files must be a list of paths, got the single path {str(input_files)!r}; "
            f"write input_files=[{str(input_files)!r}]."
        )
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    collected: dict[str, Path] = {}
    rules = [*DEFAULT_IGNORE, *extra_ignore]
    for item in input_files:
        path = Path(item)
        if not path.is_absolute():
            path = base / path
        if path.is_dir():
            collected.update(_walk(path, base, rules))
        elif path.is_file():
            collected[image_path(path, base)] = path  # listed by name: always included
        else:
            raise EntryPointNotFoundError(
                f"The input file {str(item)!r} does not exist (looked in {str(base)!r}). "
                "Check the path; relative paths are taken from the current directory or base_dir."
            )
    return collected
