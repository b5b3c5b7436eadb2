"""Layers as files on disk with their two identities, and the local content cache.

A layer blob is a gzipped tar; its ``digest`` is the sha256 of the gzip bytes (what the
registry stores) and its ``diff_id`` the sha256 of the tar inside (what the image config
lists). Both are computed in one pass while the layer is packed
(:func:`fairing.images.tarstream.pack`); a small layer is packed in memory, a large one
into a temporary file.

The :class:`LocalCache` (default ``$XDG_CACHE_HOME/fairing`` or ``~/.cache/fairing``)
keeps small content-addressed blobs (manifests, configs of base images, so a re-submit
need not fetch them again) and built layers keyed by what made them (the requirements
layer, keyed by the requirements and the target platform), each directory pruned to a
size limit (least recently written first). The state beside them (blobs known per
repository, base tags, layer digests by stat) is :mod:`fairing._cache`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..context import BuildContext

__all__ = ["Layer", "LocalCache", "context_layer", "entries_layer", "directory_layer", "default_cache_dir"]


@dataclass(frozen=True)
class Layer:
    """A gzipped layer tar, on disk or in memory."""

    path: Optional[Path]  # None: held in ``data``
    digest: str
    diff_id: str
    size: int
    data: Optional[bytes] = None

    @property
    def source(self) -> "Path | bytes":
        """What to upload: the file, or the bytes."""
        return self.data if self.path is None else self.path  # type: ignore[return-value]


def _write_layer(entries, out: Optional[Path], compresslevel: int) -> Layer:
    """Pack tar ``entries`` into a gzip layer: into the file ``out``, or (None) into memory."""
    from .tarstream import pack, tar_chunks

    if out is None:
        parts: list[bytes] = []
        r = pack(tar_chunks(entries), parts.append, level=compresslevel)
        return Layer(path=None, digest=r.digest, diff_id=r.diff_id, size=r.size, data=b"".join(parts))
    with open(out, "wb") as fh:
        r = pack(tar_chunks(entries), fh.write, level=compresslevel)
    return Layer(path=out, digest=r.digest, diff_id=r.diff_id, size=r.size)


#: Layers whose files add up to less than this are packed in memory, not in a file.
IN_MEMORY = 8 << 20


def entries_layer(entries: list, directory: Path, *, compresslevel: int = 6) -> Layer:
    """A layer of tar ``entries`` (:class:`fairing.images.tarstream.Entry`), in memory when small."""
    if sum(e.size for e in entries) < IN_MEMORY:
        return _write_layer(entries, None, compresslevel)
    fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tar.gz", dir=directory)
    os.close(fd)
    return _write_layer(entries, Path(name), compresslevel)


def context_layer(context: BuildContext, directory: Path, *, compresslevel: int = 6) -> Layer:
    """The code layer: the context's files under its workdir. Byte-identical to
    ``context.write_tar_gz(f, prefix=context.workdir, compresslevel=...)``."""
    return entries_layer(context.tar_entries(context.workdir), directory, compresslevel=compresslevel)


def _directory_entries(root: Path, prefix: str) -> list:
    """Reproducible tar entries of ``root`` placed at ``prefix``: sorted, modes 0755/0644,
    symlinks kept as links."""
    from .tarstream import Entry, file_entry

    prefix = prefix.strip("/")
    entries: list = []
    parts = prefix.split("/") if prefix else []
    for i in range(1, len(parts) + 1):
        entries.append(Entry("/".join(parts[:i]), "dir", None, 0o755))
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            arcname = f"{prefix}/{rel}" if prefix else rel
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(arcname, "link", os.readlink(path), 0o777))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(arcname, "dir", None, 0o755))
            elif stat.S_ISREG(st.st_mode):
                entries.append(file_entry(arcname, path, st))
    entries.sort(key=lambda e: e.name)
    return entries


def directory_layer(root: Path, prefix: str, out: Path, *, compresslevel: int = 6) -> Layer:
    """A layer holding the tree under ``root`` at ``prefix`` in the image."""
    return _write_layer(_directory_entries(Path(root), prefix), out, compresslevel)


def default_cache_dir() -> Path:
    """fairing's cache directory, as :mod:`fairing.environment` reports it."""
    from ..environment import current

    return current().cache_dir


#: A temporary file of a put this old was left by a process that was killed (SIGKILL, OOM)
#: mid-copy: no put takes a day.
_STALE_TEMPORARY_SECONDS = 24 * 3600


def _remove_stale_temporaries(directory: Path) -> None:
    import time

    limit = time.time() - _STALE_TEMPORARY_SECONDS
    for tmp in directory.glob(".tmp-*"):
        try:
            if tmp.lstat().st_mtime < limit:
                tmp.unlink()
        except OSError:
            pass  # another process removed it


class LocalCache:
    """Content-addressed small blobs and keyed layers under one directory."""

    #: Size limits: the least recently written files beyond them are deleted.
    max_blob_bytes = 256 << 20
    max_layer_bytes = 4 << 30

    def __init__(self, directory: "str | os.PathLike[str] | None" = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    @property
    def state(self):
        """The :class:`fairing._cache.State` of this directory (blobs known, tags, layer stat keys)."""
        from .._cache import state_for

        return state_for(self.directory)

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
        from .._cache import prune_directory

        prune_directory(self.directory / "blobs", self.max_blob_bytes)

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
        if layer.path is None:
            self._atomic_write(path, layer.data or b"")
        else:
            try:
                os.replace(layer.path, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # the temporary directory and the cache on different file systems (a notebook
                # pod's /tmp and its home volume): copy beside the target, then rename; a name
                # of its own, as threads of one process may put the same layer at once
                fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as out, open(layer.path, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.replace(tmp, path)
                finally:
                    Path(tmp).unlink(missing_ok=True)
                os.unlink(layer.path)
        info = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}
        self._atomic_write(d / f"{key}.json", json.dumps(info).encode())
        from .._cache import prune_directory

        prune_directory(d, self.max_layer_bytes, pattern="*.tar.gz")
        _remove_stale_temporaries(d)
        return Layer(path=path, digest=layer.digest, diff_id=layer.diff_id, size=layer.size)
