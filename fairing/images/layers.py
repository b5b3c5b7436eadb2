"""Layers as files on disk with their two identities, and the local content cache.

A layer blob is a gzipped tar; its ``digest`` is the sha256 of the gzip bytes (what the
registry stores) and its ``diff_id`` the sha256 of the tar inside (what the image config
lists). Both are computed in one pass while the layer is written.

The :class:`LocalCache` (default ``$XDG_CACHE_HOME/fairing`` or ``~/.cache/fairing``)
keeps small content-addressed blobs (manifests, configs of base images, so a re-submit
need not fetch them again) and built layers keyed by what made them (the requirements
layer, keyed by the requirements and the target platform).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from ..context import BuildContext

__all__ = ["Layer", "LocalCache", "context_layer", "directory_layer", "default_cache_dir"]


@dataclass(frozen=True)
class Layer:
    """A gzipped layer tar on disk."""

    path: Path
    digest: str
    diff_id: str
    size: int


class _HashingWriter(io.RawIOBase):
    """Passes writes to ``target`` (if any) while hashing and counting them."""

    def __init__(self, target: Optional[IO[bytes]] = None) -> None:
        self._target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.hash.update(b)
        self.size += len(b)
        if self._target is not None:
            self._target.write(b)
        return len(b)

    def tell(self) -> int:
        return self.size

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _write_layer(write_tar, out: Path, compresslevel: int) -> Layer:
    """Run ``write_tar(fileobj)`` into a gzip file at ``out``, hashing both streams."""
    with open(out, "wb") as fh:
        blob = _HashingWriter(fh)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=compresslevel) as gz:
            tar = _HashingWriter(gz)
            write_tar(tar)
    return Layer(path=out, digest=blob.digest(), diff_id=tar.digest(), size=blob.size)


def context_layer(context: BuildContext, directory: Path, *, compresslevel: int = 6) -> Layer:
    """The code layer: the context's files under its workdir. Byte-identical to
    ``context.write_tar_gz(f, prefix=context.workdir, compresslevel=...)``."""
    fd, name = tempfile.mkstemp(prefix="code-", suffix=".tar.gz", dir=directory)
    os.close(fd)
    return _write_layer(lambda f: context.write_tar(f, prefix=context.workdir), Path(name), compresslevel)


def _tar_directory(root: Path, prefix: str, fileobj: IO[bytes]) -> None:
    """A reproducible tar of ``root`` placed at ``prefix``: sorted, mtime 0, uid/gid 0,
    modes 0755/0644, symlinks kept as links."""
    prefix = prefix.strip("/")
    entries: list[tuple[str, Path]] = []
    parts = prefix.split("/") if prefix else []
    for i in range(1, len(parts) + 1):
        entries.append(("/".join(parts[:i]), None))  # type: ignore[arg-type]
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            entries.append((f"{prefix}/{rel}" if prefix else rel, Path(dirpath) / name))
    entries.sort(key=lambda e: e[0])
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in entries:
            info = tarfile.TarInfo(arcname)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)


def directory_layer(root: Path, prefix: str, out: Path, *, compresslevel: int = 6) -> Layer:
    """A layer holding the tree under ``root`` at ``prefix`` in the image."""
    return _write_layer(lambda f: _tar_directory(Path(root), prefix, f), out, compresslevel)


def default_cache_dir() -> Path:
    """fairing's cache directory, as :mod:`fairing.environment` reports it."""
    from ..environment import current

    return current().cache_dir


class LocalCache:
    """Content-addressed small blobs and keyed layers under one directory."""

    def __init__(self, directory: "str | os.PathLike[str] | None" = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.directory / "blobs" / algo / hexpart

    def get_blob(self, digest: str) -> Optional[bytes]:
        path = self._blob_path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            path.unlink(missing_ok=True)
            return None
        return data

    def put_blob(self, digest: str, data: bytes) -> None:
        path = self._blob_path(digest)
        self._atomic_write(path, data)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- keyed layers -------------------------------------------------------------------

    def layers_dir(self) -> Path:
        d = self.directory / "layers"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def get_layer(self, key: str) -> Optional[Layer]:
        meta = self.directory / "layers" / f"{key}.json"
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        path = self.directory / "layers" / f"{key}.tar.gz"
        if not path.is_file() or path.stat().st_size != info.get("size"):
            return None
        return Layer(path=path, digest=info["digest"], diff_id=info["diff_id"], size=info["size"])

    def put_layer(self, key: str, layer: Layer) -> Layer:
        """Move ``layer``'s file into the cache under ``key``; returns the cached layer."""
        d = self.layers_dir()
        path = d / f"{key}.tar.gz"
        os.replace(layer.path, path)
        info = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}
        self._atomic_write(d / f"{key}.json", json.dumps(info).encode())
        return Layer(path=path, digest=layer.digest, diff_id=layer.diff_id, size=layer.size)
