import gzip
import hashlib
import io
import os
import tarfile

import pytest

from fairing import BuildContext, ConfigurationError, EntryPointNotFoundError


def _make_tree(root, order, mtime):
    contents = {"b.txt": b"bee", "a/x.py": b"print(1)\n", "a/run.sh": b"#!/bin/sh\n", "z/deep/f": b"f"}
    for name in order:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(contents[name])
        os.utime(p, (mtime, mtime))
    (root / "a/run.sh").chmod(0o700)
    (root / "b.txt").chmod(0o600)
    return {name: root / name for name in contents}


def _ctx(files):
    return BuildContext(files=files, entrypoint=("python3", "a/x.py"), env={"B": "2", "A": "1"})


def test_same_inputs_same_digest_whatever_the_creation_order_and_mtimes(tmp_path):
    one = _make_tree(tmp_path / "one", ["b.txt", "a/x.py", "a/run.sh", "z/deep/f"], 1_000_000)
    two = _make_tree(tmp_path / "two", ["z/deep/f", "a/run.sh", "b.txt", "a/x.py"], 2_000_000)
    d1, d2 = _ctx(one).digest(), _ctx(dict(reversed(list(two.items())))).digest()
    assert d1 == d2 == _ctx(one).digest()
    assert d1.startswith("sha256:")
    buf1, buf2 = io.BytesIO(), io.BytesIO()
    _ctx(one).write_tar_gz(buf1, prefix="/app")
    _ctx(two).write_tar_gz(buf2, prefix="/app")
    assert hashlib.sha256(buf1.getvalue()).digest() == hashlib.sha256(buf2.getvalue()).digest()
    assert gzip.decompress(buf1.getvalue())[:512] == _ctx(one).tar_bytes(prefix="/app")[:512]


def test_a_changed_byte_changes_the_digest(tmp_path):
    files = _make_tree(tmp_path, ["b.txt", "a/x.py", "a/run.sh", "z/deep/f"], 0)
    before = _ctx(files).digest()
    files["b.txt"].write_bytes(b"bee!")
    assert _ctx(files).digest() != before


def test_tar_entries_are_normalised(tmp_path):
    files = _make_tree(tmp_path, ["b.txt", "a/x.py", "a/run.sh", "z/deep/f"], 1234)
    with tarfile.open(fileobj=io.BytesIO(_ctx(files).tar_bytes(prefix="/app"))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:3] == ["app", "app/a", "app/a/run.sh"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["app/a/run.sh"] == 0o755 and modes["app/b.txt"] == 0o644 and modes["app/z"] == 0o755


@pytest.mark.parametrize("bad", ["/etc/passwd", "../secret", "a/../../b", "C:/x", ""])
def test_paths_outside_the_workdir_are_refused(bad):
    with pytest.raises(ConfigurationError) as err:
        BuildContext(files={bad: b"x"}, entrypoint=("true",))
    assert "path" in str(err.value)


def test_missing_source_file_is_a_clear_error(tmp_path):
    with pytest.raises(EntryPointNotFoundError, match="does not exist"):
        BuildContext(files={"x.py": tmp_path / "nope.py"}, entrypoint=("true",))


def test_context_is_immutable_and_with_methods_return_new_values(tmp_path):
    ctx = BuildContext(files={"a": b"1"}, entrypoint=("true",), requirements=["b==1", "a", "a", "# c"])
    assert ctx.requirements == ("b==1", "a")  # order kept (hashed files depend on it), duplicates dropped
    with pytest.raises(TypeError):
        ctx.files["b"] = b"2"  # type: ignore[index]
    new = ctx.with_files({"b": b"2"}).with_env({"K": "V"})
    assert set(ctx.files) == {"a"} and set(new.files) == {"a", "b"}
    assert dict(ctx.env) == {} and dict(new.env) == {"K": "V"}
    assert new.digest() != ctx.digest()


def test_materialize_lays_out_the_files(tmp_path):
    src = tmp_path / "run.sh"
    src.write_text("#!/bin/sh\necho hi\n")
    src.chmod(0o755)
    ctx = BuildContext(files={"bin/run.sh": src, "data/x.txt": b"x"}, entrypoint=("bin/run.sh",))
    out = tmp_path / "out"
    ctx.materialize(out)
    assert (out / "data/x.txt").read_bytes() == b"x"
    assert os.access(out / "bin/run.sh", os.X_OK)
