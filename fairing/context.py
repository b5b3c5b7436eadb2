"""BuildContext: the immutable set of files, entrypoint and settings that becomes an image.

Serialisation is reproducible by construction: entries sorted by path, every parent
directory listed, mtime 0, uid/gid 0 with empty owner names, modes normalised to 0755
(directories and executables) or 0644, and a gzip header with no name and mtime 0.
The same inputs give the same sha256 whatever the order the files were created in,
their mtimes, their owners or the machine. A :class:`Link` entry is a symbolic link
(mode 0777) whose target stays inside the context.

Requirements keep their order (hashed requirements and ``--pre``-style options depend
on it); pip index options (``--index-url``, ``--extra-index-url``) are held apart in
:class:`~fairing.requirements.PipIndexes`, which reach pip through its environment so
that a credential in an index URL never enters a file, a layer or a message.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import IO, Union

from .errors import ConfigurationError, EntryPointNotFoundError
from .requirements import PipIndexes, split_index_options

__all__ = ["BuildContext", "Link", "Source"]


@dataclass(frozen=True)
class Link:
    """A symbolic link in the context; ``target`` is relative to the link's directory."""

    target: str


#: What a file in the context is made from: a file on disk, bytes made by fairing, or a link.
Source = Union[Path, bytes, Link]

_CHUNK = 1 << 20
#: The name :meth:`BuildContext.requirements_txt` gives the constraints file, beside it.
CONSTRAINTS_FILE = "constraints.txt"


def _normalise_path(name: str) -> str:
    """A context path: relative, POSIX, no '..', no '.' parts, no trailing slash."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"A file path in the build context must be a non-empty string, got {name!r}.")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise ConfigurationError(
            f"The build context path {name!r} is absolute. Give paths relative to the image's working "
            "directory, e.g. 'data/train.csv'."
        )
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise ConfigurationError(
            f"The build context path {name!r} leaves the working directory. Use a path below it, "
            "e.g. 'data/train.csv'."
        )
    return "/".join(parts)


def _normalise_workdir(workdir: str) -> str:
    if not workdir.startswith("/"):
        raise ConfigurationError(f"workdir must be an absolute path in the image, e.g. '/app'; got {workdir!r}.")
    clean = posixpath.normpath(workdir)
    return "/" if clean in ("/", "//") else clean


def _freeze_files(files: Mapping[str, Source]) -> Mapping[str, Source]:
    frozen: dict[str, Source] = {}
    for name, source in files.items():
        path = _normalise_path(name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = bytes(source)
        elif isinstance(source, Link):
            _check_link(path, source)
        elif isinstance(source, (str, os.PathLike)):
            source = Path(source)
            if not source.is_file():
                raise EntryPointNotFoundError(
                    f"The file {str(source)!r} (to be placed at {path!r} in the image) does not exist or is "
                    "not a regular file. Check the path, or remove it from input_files."
                )
        else:
            raise ConfigurationError(
                f"The source of {path!r} must be a path or bytes, got {type(source).__name__}."
            )
        if path in frozen:
            raise ConfigurationError(f"The build context names {path!r} twice; each image path may appear once.")
        frozen[path] = source
    return MappingProxyType(dict(sorted(frozen.items())))


def _check_link(path: str, link: Link) -> None:
    target = link.target
    if not isinstance(target, str) or not target or target.startswith("/") or "\\" in target:
        raise ConfigurationError(
            f"The link {path!r} in the build context must point to a relative path, got {target!r}."
        )
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ConfigurationError(
            f"The link {path!r} -> {target!r} points outside the build context; a link may only point to "
            "another path in it."
        )


@dataclass(frozen=True)
class BuildContext:
    """Files (path in the image's working directory -> source), entrypoint and settings.

    ``files`` maps relative POSIX paths to a :class:`~pathlib.Path` on disk or to bytes.
    ``entrypoint`` is the command the container runs, in ``workdir`` (default ``/app``).
    ``env`` is set in the image; ``requirements`` are pip requirement lines (in pip's
    file format, order kept) installed before the code so that a code change never
    reinstalls them. Index options among them move to ``pip_indexes``. Every ``with_*``
    method returns a new context.
    """

    files: Mapping[str, Source]
    entrypoint: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/app"
    requirements: tuple[str, ...] = ()
    pip_indexes: PipIndexes = PipIndexes()
    constraints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _freeze_files(self.files))
        entrypoint = tuple(self.entrypoint)
        if not entrypoint or not all(isinstance(a, str) for a in entrypoint):
            raise ConfigurationError(f"entrypoint must be a non-empty list of strings, got {self.entrypoint!r}.")
        object.__setattr__(self, "entrypoint", entrypoint)
        env = dict(self.env)
        for key, value in env.items():
            if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
                raise ConfigurationError(f"env entries must be str -> str with no '=' in the name; got {key!r}: {value!r}.")
        object.__setattr__(self, "env", MappingProxyType(dict(sorted(env.items()))))
        object.__setattr__(self, "workdir", _normalise_workdir(self.workdir))
        if isinstance(self.requirements, str):
            raise ConfigurationError(
                f"requirements must be a list of lines, got the string {self.requirements!r}; "
                f"write requirements=[{self.requirements!r}]."
            )
        lines, indexes = split_index_options(self.requirements)
        object.__setattr__(self, "requirements", lines)
        object.__setattr__(self, "pip_indexes", self.pip_indexes.merged(indexes))
        constraints, more = split_index_options(self.constraints)
        if more:
            raise ConfigurationError("Index options belong in the requirements, not in the constraints.")
        object.__setattr__(self, "constraints", constraints)

    # -- derived contexts -------------------------------------------------------------

    def with_files(self, files: Mapping[str, Source]) -> "BuildContext":
        """A new context with ``files`` added (an existing path is replaced)."""
        merged = dict(self.files)
        merged.update({_normalise_path(k): v for k, v in files.items()})
        return replace(self, files=merged)

    def with_env(self, env: Mapping[str, str]) -> "BuildContext":
        return replace(self, env={**self.env, **env})

    def with_requirements(self, requirements: Iterable[str]) -> "BuildContext":
        return replace(self, requirements=(*self.requirements, *requirements))

    def requirements_txt(self, *, public_indexes: bool = True) -> bytes:
        """The requirements as a pip requirements file. It never holds an index credential:
        index URLs without one are listed when ``public_indexes``; give pip the rest through
        ``pip_indexes.env()``. With constraints it names :data:`CONSTRAINTS_FILE`, to be
        written next to it from :meth:`constraints_txt`."""
        head = self.pip_indexes.public_lines() if public_indexes else []
        if self.constraints:
            head.append(f"-c {CONSTRAINTS_FILE}")
        return "".join(f"{r}\n" for r in (*head, *self.requirements)).encode()

    def constraints_txt(self) -> bytes:
        return "".join(f"{r}\n" for r in self.constraints).encode()

    # -- serialisation ----------------------------------------------------------------

    def _entries(self, prefix: str) -> list[tuple[str, "Source | None", str]]:
        """(tar path, source, context path) in tar order; source None for a directory."""
        base = prefix.strip("/")
        seen_dirs: set[str] = set()
        rows: list[tuple[str, Source | None, str]] = []
        for rel, source in self.files.items():
            full = f"{base}/{rel}" if base else rel
            parts = full.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    rows.append((d, None, ""))
            rows.append((full, source, rel))
        rows.sort(key=lambda r: r[0])
        return rows

    def tar_entries(self, prefix: str = "") -> list:
        """The tar entries (:class:`fairing.images.tarstream.Entry`) of the files and their
        parent directories, in tar order, each file stat'ed once."""
        from .images.tarstream import Entry, file_entry
        from .preprocessors.secrets import recheck

        out = []
        for name, source, _rel in self._entries(prefix):
            if source is None:
                out.append(Entry(name, "dir", None, 0o755))
            elif isinstance(source, Link):
                out.append(Entry(name, "link", source.target, 0o777))
            elif isinstance(source, bytes):
                out.append(Entry(name, "file", source, 0o644, len(source)))
            else:
                st = os.stat(source)
                recheck(source, st)  # changed since the scan: scanned again, or refused
                out.append(file_entry(name, source, st))
        return out

    def write_tar(self, fileobj: IO[bytes], *, prefix: str = "") -> None:
        """Write the files as an uncompressed, reproducible tar; ``prefix`` is prepended
        to every path (``prefix=context.workdir`` gives an image layer). The bytes are
        those of ``tarfile`` in PAX format (see :mod:`fairing.images.tarstream`)."""
        from .images.tarstream import tar_chunks

        for data, _ in tar_chunks(self.tar_entries(prefix)):
            fileobj.write(data)

    def write_tar_gz(self, fileobj: IO[bytes], *, prefix: str = "", compresslevel: int = 6) -> None:
        """The same tar, gzipped (members with a fixed header: no file name, mtime 0)."""
        from .images.tarstream import pack, tar_chunks

        pack(tar_chunks(self.tar_entries(prefix)), fileobj.write, level=compresslevel)

    def tar_bytes(self, *, prefix: str = "") -> bytes:
        buf = io.BytesIO()
        self.write_tar(buf, prefix=prefix)
        return buf.getvalue()

    def digest(self, *, prefix: str = "") -> str:
        """``sha256:<hex>`` of the uncompressed tar: the identity of the files."""
        h = hashlib.sha256()

        class _Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b) -> int:  # type: ignore[override]
                h.update(b)
                return len(b)

        self.write_tar(_Sink(), prefix=prefix)  # type: ignore[arg-type]
        return "sha256:" + h.hexdigest()

    def materialize(self, directory: Path) -> None:
        """Lay the files out under ``directory`` as they would be in the image's workdir."""
        directory = Path(directory)
        for rel, source in self.files.items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            elif isinstance(source, Link):
                os.symlink(source.target, target)
            else:
                from .preprocessors.secrets import recheck

                recheck(source, source.stat())
                with source.open("rb") as src, target.open("wb") as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                if source.stat().st_mode & stat.S_IXUSR:
                    target.chmod(0o755)
