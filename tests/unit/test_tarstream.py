"""The fast tar writer writes what tarfile writes; packed layers are valid, reproducible gzip."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from fairing.context import BuildContext, Link
from fairing.images import tarstream


def _tarfile_reference(context: BuildContext, prefix: str) -> bytes:
    """The tar as fairing wrote it with tarfile before the fast writer (the reference)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, source, _rel in context._entries(prefix):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if source is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(source, Link):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, source.target, 0o777
                tar.addfile(info)
            elif isinstance(source, bytes):
                info.size, info.mode = len(source), 0o644
                tar.addfile(info, io.BytesIO(source))
            else:
                st = source.stat()
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
                with source.open("rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def _context(tmp_path: Path) -> BuildContext:
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "block").write_bytes(b"x" * 512)
    (tmp_path / "big").write_bytes(os.urandom(300_000))
    long = "d/" + "n" * 120 + ".txt"
    return BuildContext(files={
        "main.py": b"print('hi')\n", "run.sh": tmp_path / "run.sh", "empty": tmp_path / "empty",
        "block": tmp_path / "block", "big.bin": tmp_path / "big", long: b"long name\n",
        "données/été.csv": b"a,b\n", "link": Link("main.py"), "deep/x/" + "l" * 101: Link("../../main.py"),
    }, entrypoint=["python3", "main.py"])


@pytest.mark.parametrize("prefix", ["", "/app", "/" + "p" * 90])
def test_the_tar_is_byte_identical_to_tarfiles(tmp_path, prefix):
    ctx = _context(tmp_path)
    buf = io.BytesIO()
    ctx.write_tar(buf, prefix=prefix)
    assert buf.getvalue() == _tarfile_reference(ctx, prefix)


@pytest.mark.parametrize("compressor", ["zlib", "isal"])
def test_packed_layers_are_valid_reproducible_multi_member_gzip(tmp_path, monkeypatch, compressor):
    monkeypatch.setattr(tarstream, "MEMBER_SIZE", 64 << 10)  # many members
    ctx = _context(tmp_path)
    tar = ctx.tar_bytes(prefix="/app")
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        result = tarstream.pack(tarstream.tar_chunks(ctx.tar_entries("/app")), buf.write, level=6,
                                compressor=compressor)
        outs.append((buf.getvalue(), result))
    (one, r1), (two, r2) = outs
    assert one == two and r1 == r2
    assert one.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") >= 3  # several members (the random file is stored)
    assert gzip.decompress(one) == tar
    import hashlib
    assert r1.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert r1.digest == "sha256:" + hashlib.sha256(one).hexdigest() and r1.size == len(one)
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as t:
        names = t.getnames()
    assert "app/big.bin" in names and "app/link" in names


def test_an_incompressible_file_is_stored_and_a_text_file_compressed(tmp_path):
    (tmp_path / "w.bin").write_bytes(os.urandom(1 << 20))
    (tmp_path / "t.csv").write_bytes(b"1,2,3\n" * 200_000)
    for name, bound in (("w.bin", lambda n: n > 1 << 20), ("t.csv", lambda n: n < 100_000)):
        ctx = BuildContext(files={name: tmp_path / name}, entrypoint=["x"])
        buf = io.BytesIO()
        tarstream.pack(tarstream.tar_chunks(ctx.tar_entries()), buf.write)
        assert bound(len(buf.getvalue())), (name, len(buf.getvalue()))


def test_a_file_that_shrinks_while_packed_is_an_error(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 1000)
    ctx = BuildContext(files={"f": tmp_path / "f"}, entrypoint=["x"])
    entries = ctx.tar_entries()
    (tmp_path / "f").write_bytes(b"x" * 10)
    with pytest.raises(OSError, match="changed size while it was being packed"):
        list(tarstream.tar_chunks(entries))


def test_memory_stays_flat_in_the_input_size():
    """Packing 128 MB holds about the same memory as packing 16 MB: a few members in flight."""
    import tracemalloc

    chunk = os.urandom(1 << 16) * 16  # 1 MiB, compressible only across 64 KiB

    def peak(mb: int) -> int:
        tracemalloc.start()
        try:
            tarstream.pack(((chunk, True) for _ in range(mb)), None, level=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(16), peak(128)
    assert large < 1.5 * small + (4 << 20), (small, large)
    assert large < 64 << 20, large
