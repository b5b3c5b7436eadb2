"""Reproducible tar streams and gzip layers packed at the machine's speed.

Why not just :mod:`tarfile` + :mod:`gzip`: ``tarfile.addfile`` costs tens of
microseconds of Python per entry (5,000 files: about a second), and ``GzipFile``
compresses on one core with zlib. Here:

* :func:`tar_chunks` writes the tar headers itself for the common case (an ASCII name
  and link of at most 100 bytes, a size below 8 GiB) and asks ``tarfile.TarInfo.tobuf``
  for the rest (PAX headers), so the stream is byte-for-byte what
  ``tarfile.open(mode="w|", format=PAX_FORMAT)`` writes for the same entries
  (a unit test checks this), padded to tarfile's 10 KiB records.
* :func:`pack` cuts the tar stream at fixed points (every :data:`MEMBER_SIZE` bytes of
  tar, and where a file that does not compress starts or ends), compresses each piece as
  its own gzip member on a thread pool (zlib and ISA-L release the GIL; concatenated
  members are one valid gzip stream, RFC 1952 section 2.2), and hashes the tar and the
  gzip bytes as they pass. The cut points depend only on the bytes, never on the number
  of threads, so the same input gives the same digest on any machine with the same
  compressor. Memory stays flat: at most ``2 x threads`` pieces are in flight.
* Files that do not compress (a 64 KiB sample shrinks by less than 3%: archives, images,
  model weights) are stored at level 0, which costs no more than a copy.
* The deflate is ISA-L's (``pip install isal``, the ``fast`` extra) when installed, else
  zlib's. Their bytes differ, so the compressor is part of every cache key; each is
  reproducible on its own and the uncompressed tar (the diff_id) is the same for both.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import struct
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

__all__ = ["Entry", "tar_chunks", "pack", "PackResult", "compressor_name", "stat_key", "file_entry", "MEMBER_SIZE"]

BLOCK = 512
RECORD = 20 * BLOCK
#: Bytes of tar per gzip member.
MEMBER_SIZE = 4 << 20
_READ = 1 << 20
_SAMPLE = 64 << 10
#: Files at least this large are sampled for compressibility.
SAMPLE_FROM = 256 << 10


@dataclass(frozen=True)
class Entry:
    """One tar entry: ``kind`` is "dir", "file" or "link"; ``source`` a Path or bytes for a
    file, the target for a link. ``mode`` is the normalised mode; ``size`` the file's."""

    name: str
    kind: str
    source: Union[Path, bytes, str, None] = None
    mode: int = 0o644
    size: int = 0
    #: For a file on disk: (mtime_ns, ctime_ns, inode, device), what the layer cache keys on.
    stamp: tuple = field(default=(), compare=False)


def _octal(n: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, n)


_TYPES = {"file": b"0", "dir": b"5", "link": b"2"}
_TAIL = b"ustar\x0000" + b"\0" * (64 + 16 + 155 + 12)


def header(entry: Entry) -> bytes:
    """The tar header(s) of ``entry``, as tarfile writes them in PAX format."""
    name = entry.name + "/" if entry.kind == "dir" and not entry.name.endswith("/") else entry.name
    link = entry.source if entry.kind == "link" else ""
    size = entry.size if entry.kind == "file" else 0
    # a name that is not UTF-8 on disk (b'caf\xe9.txt') reaches here with surrogates: a PAX record
    bname = name.encode("utf-8", "surrogateescape")
    blink = link.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
    if len(bname) > 100 or len(blink) > 100 or not (name.isascii() and link.isascii()) or size >= 8 ** 11:  # type: ignore[union-attr]
        info = tarfile.TarInfo(entry.name)
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "link": tarfile.SYMTYPE}[entry.kind]
        info.mode, info.size = entry.mode, size
        if entry.kind == "link":
            info.linkname = link  # type: ignore[assignment]
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    buf = b"".join((
        bname.ljust(100, b"\0"), _octal(entry.mode, 8), _octal(0, 8), _octal(0, 8), _octal(size, 12),
        _octal(0, 12), b"        ", _TYPES[entry.kind], blink.ljust(100, b"\0"), _TAIL,
    ))
    chksum = sum(buf)  # the checksum field counts as spaces
    return buf[:148] + b"%06o\0 " % chksum + buf[156:]


def tar_chunks(entries: Iterable[Entry]) -> Iterator[tuple[bytes, bool]]:
    """The tar stream as ``(bytes, compressible)`` pieces; a piece marked not compressible
    is (part of) the data of a file whose sample did not compress."""
    total = 0
    for entry in entries:
        head = header(entry)
        total += len(head)
        yield head, True
        if entry.kind != "file":
            continue
        if isinstance(entry.source, bytes):
            data = entry.source
            if data:
                yield data, True
            written = len(data)
        else:
            written = 0
            with open(entry.source, "rb") as fh:  # type: ignore[arg-type]
                first = fh.read(min(entry.size, _READ))
                compressible = entry.size < SAMPLE_FROM or _compresses(first[:_SAMPLE])
                chunk = first
                while chunk:
                    if written + len(chunk) > entry.size:
                        chunk = chunk[: entry.size - written]
                    written += len(chunk)
                    yield chunk, compressible
                    if written >= entry.size:
                        break
                    chunk = fh.read(min(_READ, entry.size - written))
            if written != entry.size:
                raise OSError(f"{entry.source} changed size while it was being packed "
                              f"({entry.size} bytes when listed, {written} read)")
        total += written
        pad = -written % BLOCK
        if pad:
            total += pad
            yield b"\0" * pad, True
    end = 2 * BLOCK
    end += -(total + end) % RECORD
    yield b"\0" * end, True


def _compresses(sample: bytes) -> bool:
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


def compressor_name() -> str:
    """"isal" when python-isal is installed, else "zlib"."""
    return "isal" if _isal() is not None else "zlib"


_ISAL: list = []


def _isal():
    if not _ISAL:
        try:
            from isal import isal_zlib  # the `fast` extra: pip install isal
        except ImportError:
            isal_zlib = None
        _ISAL.append(isal_zlib)
    return _ISAL[0]


def _member(data: bytes, level: int, compressor: str) -> bytes:
    """One gzip member (fixed header: no name, mtime 0, OS unknown)."""
    if compressor == "isal" and level > 0:
        isal_zlib = _isal()
        c = isal_zlib.compressobj(min(3, max(0, (level + 1) // 3)), isal_zlib.DEFLATED, -15)
        crc = isal_zlib.crc32(data)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        crc = zlib.crc32(data)
    xfl = 2 if level == 9 else (4 if level == 1 else 0)
    return b"".join((b"\x1f\x8b\x08\x00\x00\x00\x00\x00", bytes((xfl, 255)), c.compress(data), c.flush(),
                     struct.pack("<II", crc & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)))


@dataclass(frozen=True)
class PackResult:
    digest: str  # sha256 of the gzip bytes
    diff_id: str  # sha256 of the tar
    size: int  # gzip bytes
    tar_size: int


_POOL: list = []


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)),
                                        thread_name_prefix="fairing-gzip"))
    return _POOL[0]


def pack(pieces: Iterable[tuple[bytes, bool]], write: Optional[Callable[[bytes], object]], *, level: int = 6,
         compressor: Optional[str] = None) -> PackResult:
    """Gzip the tar ``pieces`` into ``write`` (None: only hash), in members compressed in parallel."""
    compressor = compressor or compressor_name()
    tar_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
    tar_size = gz_size = 0
    workers = _pool()
    limit = 2 * (workers._max_workers)  # type: ignore[attr-defined]
    inflight: list = []

    def drain(keep: int) -> None:
        nonlocal gz_size
        while len(inflight) > keep:
            out = inflight.pop(0).result()
            gz_hash.update(out)
            gz_size += len(out)
            if write is not None:
                write(out)

    def submit(parts: list, mode: bool) -> None:
        data = b"".join(parts)
        inflight.append(workers.submit(_member, data, level if mode else 0, compressor))
        drain(limit)

    buf: list = []
    buf_len = 0
    buf_mode = True
    for data, compressible in pieces:
        tar_hash.update(data)
        tar_size += len(data)
        if buf and compressible != buf_mode:
            submit(buf, buf_mode)
            buf, buf_len = [], 0
        buf_mode = compressible
        while data:
            room = MEMBER_SIZE - buf_len
            part, data = data[:room], data[room:]
            buf.append(part)
            buf_len += len(part)
            if buf_len >= MEMBER_SIZE:
                submit(buf, buf_mode)
                buf, buf_len = [], 0
    if buf or not inflight:
        submit(buf, buf_mode)
    drain(0)
    return PackResult("sha256:" + gz_hash.hexdigest(), "sha256:" + tar_hash.hexdigest(), gz_size, tar_size)


def file_entry(name: str, path: Path, st: "os.stat_result") -> Entry:
    mode = 0o755 if st.st_mode & stat_module.S_IXUSR else 0o644
    return Entry(name, "file", path, mode, st.st_size, (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))


def stat_key(entries: Iterable[Entry], level: int) -> str:
    """What identifies a layer without reading its files: names, kinds, modes, sizes, each
    file's stamp (or the sha256 of bytes made in memory), the compressor and its level."""
    h = hashlib.sha256(f"fairing-layer-1 {compressor_name()} {level}\n".encode())
    for e in entries:
        if e.kind == "file" and isinstance(e.source, bytes):
            extra = hashlib.sha256(e.source).hexdigest()
        elif e.kind == "file":
            extra = f"{os.fspath(e.source)} {e.stamp}"  # type: ignore[arg-type]
        else:
            extra = str(e.source or "")
        h.update(f"{e.name}\0{e.kind}\0{e.mode}\0{e.size}\0{extra}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
