"""Collecting input files: explicit paths, directories walked with ignore rules, symlinks.

``input_files`` is one path, a list of paths, or a dict mapping a path on disk to its
path in the image. Paths keep their layout relative to ``base_dir`` (the project);
a path outside it must be mapped with the dict form
(``{"../shared/config.yaml": "conf/shared.yaml"}``). Two different sources for one
path in the image raise :class:`~fairing.errors.PathCollisionError`.

Directories are walked with the rules of ``.gitignore`` and ``.fairingignore`` files
(in the base directory, the directories above the walked one, and each walked
directory, as git reads them) plus :data:`DEFAULT_IGNORE`. Credential files
(:data:`~fairing.preprocessors.secrets.CREDENTIAL_FILES`) are checked apart, so no
negation re-includes one; a file named by its own path in ``input_files`` passes
that name rule. Every file collected, walked or named, is scanned for private keys,
tokens and credential files by their shape
(:func:`~fairing.preprocessors.secrets.check_files`).

Symlinks are never followed silently. A link whose target is inside the project (or
inside the mapped directory it was found in; the project's root itself included)
stays a link in the context, and its target is packaged too, unless the ignore rules
exclude the target: then the link is refused with
:class:`~fairing.errors.OutsideProjectError`, so an ignored file never travels behind
a link. A link whose target is outside is refused the same way, unless the link
itself is named in ``input_files``: then what it points to is packaged under the
link's own path, after the credential rules and the content scan are applied to the
target as well.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..context import Link, Source, _normalise_path
from ..errors import (ConfigurationError, EntryPointNotFoundError, OutsideProjectError, PackagingError,
                      PathCollisionError, SecretInContextError)
from .secrets import check_files, credential_spec

__all__ = ["DEFAULT_IGNORE", "collect_input_files", "image_path", "check_secrets"]

DEFAULT_IGNORE = (
    # version control, environments, caches, fairing's own directory in the image
    ".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", ".venv/", "venv/", ".tox/", ".nox/",
    ".mypy_cache/", ".pytest_cache/", ".ipynb_checkpoints/", ".fairing-cache/", "/.fairing/",
)

_IGNORE_FILES = (".gitignore", ".fairingignore")

InputFiles = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]], Mapping[Union[str, os.PathLike], str]]


def _spec(lines: Iterable[str]):
    import pathspec  # light, but only needed when walking directories

    return pathspec.GitIgnoreSpec.from_lines(list(lines))


def _real_parent(path: Path) -> Path:
    """``path`` with its directories resolved but not the last part (a link stays a link)."""
    return Path(os.path.realpath(path.parent)) / path.name


def _inside(path: Path, root: Path) -> Optional[str]:
    """``path`` relative to ``root`` as POSIX, or None when it is outside."""
    for candidate, base in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))),
                            (_real_parent(Path(os.path.abspath(path))), Path(os.path.realpath(root)))):
        try:
            rel = candidate.relative_to(base).as_posix()
        except ValueError:
            continue
        return "" if rel == "." else rel
    return None


def image_path(path: Path, base_dir: Path) -> str:
    """Where ``path`` lands in the image: its path relative to ``base_dir``."""
    rel = _inside(path, base_dir)
    if not rel:
        raise OutsideProjectError(
            f"{str(path)!r} is outside the project directory {str(base_dir)!r} (base_dir), so it has no place in the "
            "image's layout. Set base_dir to a directory that contains it, or map it explicitly: "
            f"input_files={{{str(path)!r}: {Path(path).name!r}}}."
        )
    return rel


def _anchor(line: str, rel_dir: str) -> str:
    """Rewrite a rule of the ignore file in ``rel_dir`` to match paths relative to the walk's root."""
    if rel_dir in ("", "."):
        return line
    neg, body = (True, line[1:]) if line.startswith("!") else (False, line)
    if "/" in body.rstrip("/"):
        body = f"{rel_dir}/{body.lstrip('/')}"
    else:  # a bare name matches at any depth below its ignore file
        body = f"{rel_dir}/**/{body}"
    return ("!" if neg else "") + body


def _read_ignore_files(directory: Path, rel_dir: str) -> list[str]:
    rules = []
    for name in _IGNORE_FILES:
        if (directory / name).is_file():
            for line in (directory / name).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    rules.append(_anchor(line, rel_dir))
    return rules


@dataclass
class _Collector:
    """Accumulates image path -> source, refusing collisions; remembers what to scan."""

    extra_ignore: tuple[str, ...]
    found: dict[str, Source]
    origin: dict[str, str]
    to_scan: dict[str, Path]
    pending_links: list[tuple[str, Path, Path, str]]
    walked: set = field(default_factory=set)  # real paths of the directories walked

    def add(self, dest: str, source: Source, origin: str) -> None:
        dest = _normalise_path(dest)
        if dest in self.found:
            same = self.found[dest] == source or (
                isinstance(source, Path) and isinstance(self.found[dest], Path)
                and os.path.realpath(source) == os.path.realpath(self.found[dest]))  # type: ignore[arg-type]
            if same:
                return
            raise PathCollisionError(
                f"Two sources would land at {dest!r} in the image: {self.origin[dest]!r} and {origin!r}. Map one of "
                f"them to another path with the dict form, e.g. input_files={{{origin!r}: 'other/{posixpath.basename(dest)}'}}."
            )
        self.found[dest] = source
        self.origin[dest] = origin
        if isinstance(source, Path):  # walked or named: every file is scanned
            self.to_scan[dest] = source

    # -- links -----------------------------------------------------------------------

    def link(self, link: Path, dest: str, src_root: Path, dest_root: str, *, explicit: bool) -> None:
        """A symlink found at ``link`` (image path ``dest``), in an input rooted at ``src_root``."""
        target = Path(os.path.realpath(link))
        rel = _inside(target, src_root)
        if rel is not None:  # inside, the root itself included (proj/self -> .)
            target_dest = posixpath.join(dest_root, rel) if dest_root and rel else (rel or dest_root)
            text = posixpath.relpath(target_dest or ".", posixpath.dirname(dest) or ".")
            self.add(dest, Link(text), str(link))
            self.pending_links.append((target_dest, target, src_root, dest_root))
            return
        if not explicit:
            raise OutsideProjectError(
                f"{str(link)!r} is a symbolic link to {str(target)!r}, which is outside the project "
                f"{str(src_root)!r}. Fairing does not follow it. To package what it points to under the link's own "
                f"path, name the link in input_files (input_files=[..., {str(link)!r}]); otherwise remove the link "
                "or add it to .fairingignore."
            )
        if _ignored_outside(target):
            raise SecretInContextError(
                f"{str(link)!r} is a symbolic link to {str(target)!r}, which looks like a credential file. Fairing does "
                f"not package it. If the job really needs it, name the target itself in input_files: "
                f"input_files={{{str(target)!r}: {dest!r}}}.", paths=(dest,))
        if target.is_dir():
            self.walk(target, dest)
        elif target.is_file():
            self.add(dest, target, str(link))
        elif os.path.lexists(target):
            raise PackagingError(
                f"The symbolic link {str(link)!r} points to {str(target)!r}, which is not a regular file (a FIFO, "
                "socket or device), so fairing does not package it. Name a regular file instead.")
        else:
            raise EntryPointNotFoundError(f"The symbolic link {str(link)!r} points to {str(target)!r}, which does not exist.")

    def resolve_pending_links(self) -> None:
        """Package the in-project targets of kept links that are not packaged yet."""
        seen: set[str] = set()
        while self.pending_links:
            target_dest, target, src_root, dest_root = self.pending_links.pop()
            if target_dest in seen or str(target) in self.walked or target_dest in self.found or \
                    any(p.startswith(target_dest + "/") for p in self.found):
                continue
            seen.add(target_dest)
            credentials = credential_spec()
            rel = _inside(target, src_root) or ""
            if rel and (credentials.match_file(rel) or (target.is_dir() and credentials.match_file(rel + "/"))):
                raise SecretInContextError(
                    f"A symbolic link among the inputs points to {str(target)!r}, which looks like a credential file. "
                    "Remove the link, or name the target in input_files if the job needs it.", paths=(target_dest,))
            rule = self.ignored(target, src_root)
            if rule is not None:
                raise OutsideProjectError(
                    f"A symbolic link among the inputs points to {str(target)!r}, which the ignore rules exclude "
                    f"({rule}), so fairing does not package it behind the link. Remove the link or ignore it too "
                    "(add it to .fairingignore), or, if the job needs the target, stop ignoring it or name the link "
                    "in input_files with the dict form to package the target under the link's path.")
            if target.is_dir():
                self.walk(target, target_dest, src_root=src_root, dest_root=dest_root)
            elif target.is_file():
                self.add(target_dest, target, str(target))

    def ignored(self, target: Path, src_root: Path) -> Optional[str]:
        """The rule that excludes ``target`` (inside ``src_root``) or one of the directories
        above it, read as the walk reads them; None when it would be walked."""
        rel = _inside(target, src_root) or ""
        parts = [p for p in rel.split("/") if p]
        rules = [*DEFAULT_IGNORE, *self.extra_ignore]
        for i, part in enumerate(parts):
            here = "/".join(parts[:i])
            rules += _read_ignore_files(src_root.joinpath(*parts[:i]), here)
            path = "/".join(parts[: i + 1])
            is_dir = i < len(parts) - 1 or target.is_dir()
            candidate = path + "/" if is_dir else path
            if part in _IGNORE_FILES or _spec(rules).match_file(candidate):
                where = "a default rule" if _spec([*DEFAULT_IGNORE, *self.extra_ignore]).match_file(candidate) \
                    else ".gitignore/.fairingignore"
                return f"{candidate!r} matches {where}"
        return None

    # -- directories -------------------------------------------------------------------

    def walk(self, root: Path, dest: str, *, src_root: Optional[Path] = None, dest_root: Optional[str] = None) -> None:
        """Walk ``root`` into image path ``dest``; links may point anywhere below ``src_root``."""
        src_root = root if src_root is None else src_root
        dest_root = dest if dest_root is None else dest_root
        credentials = credential_spec()
        # ignore files of the source root and of the directories between it and the walked one
        rules = [*DEFAULT_IGNORE, *self.extra_ignore]
        above = Path(_inside(root, src_root) or "").parts
        for i in range(len(above)):
            rules += _read_ignore_files(src_root.joinpath(*above[:i]), "/".join(above[:i]))
        rules_for: dict[Path, list[str]] = {root: rules}

        for dirpath, dirnames, filenames in os.walk(root):  # never follows links
            here = Path(dirpath)
            self.walked.add(os.path.realpath(here))
            rel_dir = _inside(here, src_root) or ""
            local = rules_for.pop(here) + _read_ignore_files(here, rel_dir)
            spec = _spec(local)
            prefix = rel_dir + "/" if rel_dir else ""

            def skip(rel: str) -> bool:
                return spec.match_file(rel) or credentials.match_file(rel)

            kept_dirs = []
            for d in sorted(dirnames):
                full = here / d
                if skip(prefix + d + "/"):
                    continue
                if full.is_symlink():
                    self.link(full, self._dest(dest, root, full), src_root, dest_root, explicit=False)
                    continue
                kept_dirs.append(d)
                rules_for[full] = local
            dirnames[:] = kept_dirs
            for name in sorted(filenames):
                full = here / name
                if name in _IGNORE_FILES or skip(prefix + name):
                    continue
                target = self._dest(dest, root, full)
                if full.is_symlink():
                    self.link(full, target, src_root, dest_root, explicit=False)
                elif full.is_file():
                    self.add(target, full, str(full))

    @staticmethod
    def _dest(dest: str, root: Path, full: Path) -> str:
        rel = full.relative_to(root).as_posix()
        return posixpath.join(dest, rel) if dest else rel


def _items(input_files: InputFiles) -> list[tuple[Union[str, os.PathLike], Optional[str]]]:
    if isinstance(input_files, (str, os.PathLike)):
        return [(input_files, None)]
    if isinstance(input_files, Mapping):
        items = []
        for src, dest in input_files.items():
            if not isinstance(dest, str):
                raise ConfigurationError(
                    f"In the dict form of input_files each value is a path in the image, got {dest!r} for {str(src)!r}."
                )
            items.append((src, dest))
        return items
    try:
        return [(item, None) for item in input_files]
    except TypeError:
        raise ConfigurationError(
            f"input_files must be a path, a list of paths, or a dict of path -> path in the image; "
            f"got {type(input_files).__name__}."
        ) from None


def check_secrets(files: Mapping[str, Path]) -> None:
    """Refuse, naming each file and line, when any of ``files`` (image path -> file) holds
    a secret: :func:`fairing.preprocessors.secrets.check_files`, the one scan."""
    check_files(files)


def collect_input_files(
    input_files: InputFiles,
    base_dir: Optional[os.PathLike | str] = None,
    *,
    extra_ignore: Iterable[str] = (),
) -> dict[str, Source]:
    """Map image paths to sources for every input file and every file below input directories."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    collector = _Collector(tuple(extra_ignore), {}, {}, {}, [])
    for item, mapped in _items(input_files):
        if not isinstance(item, (str, os.PathLike)):
            raise ConfigurationError(f"input_files must hold paths, got {type(item).__name__} ({item!r}).")
        path = Path(os.path.abspath(base / item))  # lexical: '..' folded, links not followed
        if not path.exists() and not path.is_symlink():
            raise EntryPointNotFoundError(
                f"The input file {str(item)!r} does not exist (looked in {str(base)!r}). "
                "Check the path; relative paths are taken from base_dir (default: the current directory)."
            )
        if mapped is None:
            rel = _inside(path, base)
            if rel is None:
                raise OutsideProjectError(
                    f"The input path {str(item)!r} is outside the project directory {str(base)!r} (base_dir). Paths "
                    "keep their layout relative to it, so this one needs a place in the image: map it with the dict "
                    f"form, e.g. input_files={{{str(item)!r}: {Path(os.path.abspath(path)).name!r}}}."
                )
            dest, src_root, dest_root = rel, base, ""
        else:
            # "." maps a directory's contents to the top of the image's working directory
            dest = "" if mapped.strip().strip("/") in ("", ".") and path.is_dir() else _normalise_path(mapped)
            src_root, dest_root = path, dest
        if path.is_symlink():
            # a mapped link is packaged as what it points to (its directory has no layout in the image)
            collector.link(path, dest, src_root, dest_root, explicit=True)
        elif path.is_dir():
            collector.walk(path, dest, src_root=src_root, dest_root=dest_root)
        else:
            collector.add(dest, path, str(item))  # named by its own path: past the name rules
    collector.resolve_pending_links()
    check_secrets(collector.to_scan)
    return collector.found


def _ignored_outside(path: Path) -> bool:
    """Whether a path outside the project matches the credential rules (on any trailing part of it)."""
    credentials = credential_spec()
    parts = Path(os.path.abspath(path)).parts
    is_dir = path.is_dir()
    return any(credentials.match_file("/".join(parts[i:]) + ("/" if is_dir else "")) for i in range(1, len(parts)))
