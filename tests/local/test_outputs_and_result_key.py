"""A job's files and its result on the local backend, tried as a careless or hostile user would:
files under $FAIRING_OUTPUTS come back without ``outputs=``, a legal name such as ``..hidden``
works while ``..`` as a path part is refused, a missing result key never lets an unauthenticated
line be unpickled, and a value whose class exists only in the job is a typed error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import os
import pickle
import subprocess
import sys
import uuid
import zlib

import pytest

import fairing
from fairing import ConfigurationError, ResultError, TrainJob


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Records and kept logs in a directory of this test's own."""
    path = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


# -- outputs --------------------------------------------------------------------------------


@fairing.train(backend="local", quiet=True, timeout=300, outputs_dir="back")
def writes_only_to_fairing_outputs(a):
    import os

    root = os.environ["FAIRING_OUTPUTS"]
    os.makedirs(os.path.join(root, "metrics"), exist_ok=True)
    for name, text in (("model.txt", f"model {a}"), ("..hidden", "a legal name"), ("metrics/..x..", "also"),
                       ("a..b", "and this")):
        with open(os.path.join(root, name), "w") as fh:
            fh.write(text)
    return a * 3


def test_fairing_outputs_come_back_without_outputs_argument(workdir, cache, no_leftovers):
    assert writes_only_to_fairing_outputs(5) == 15  # the return value is not lost to an odd name
    back = workdir / "back"
    assert (back / "model.txt").read_text() == "model 5"
    assert (back / "..hidden").read_text() == "a legal name"
    assert (back / "metrics" / "..x..").read_text() == "also"
    assert (back / "a..b").read_text() == "and this"
    assert not (workdir / "hidden").exists() and not (workdir.parent / "hidden").exists()


def test_a_listed_output_named_dotdot_hidden_works(workdir, cache, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300, outputs=["..hidden", "..dir/"], outputs_dir="got")
    def listed():
        import os

        os.makedirs("..dir", exist_ok=True)
        with open("..hidden", "w") as fh:
            fh.write("h")
        with open(os.path.join("..dir", "f"), "w") as fh:
            fh.write("f")
        return "value"

    assert listed() == "value"
    assert (workdir / "got" / "..hidden").read_text() == "h"
    assert (workdir / "got" / "..dir" / "f").read_text() == "f"


def test_dotdot_as_a_path_part_is_refused(workdir):
    for bad in ("..", "../x", "a/../../x", "sub/../../x", "/abs/x"):
        with pytest.raises(ConfigurationError, match="outputs are paths relative to the job's working directory"):
            fairing.train(backend="local", outputs=[bad])(lambda: 1)
    from fairing.runtime.outputs import OutputsError, _safe

    for bad in ("..", "../x", "a/../../x", "/etc/passwd", "", "."):
        with pytest.raises(OutputsError, match="leaves the outputs directory"):
            _safe(bad)
    for good in ("..hidden", "a/..b", "...", "x/..y/z", "a..b", "a/./b"):
        assert ".." not in _safe(good).split(os.sep)


def test_a_pipe_or_a_dangling_link_among_the_outputs_costs_no_result(workdir, cache, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300, outputs_dir="got")
    def odd_files():
        import os

        root = os.environ["FAIRING_OUTPUTS"]
        os.mkfifo(os.path.join(root, "pipe"))  # copying it would block for ever
        os.symlink("/nonexistent/target", os.path.join(root, "dangling"))
        with open(os.path.join(root, "real.txt"), "w") as fh:
            fh.write("real")
        os.symlink(os.path.join(root, "real.txt"), os.path.join(root, "linked"))  # a link to a file: its bytes
        print("wrote them")
        return "kept"

    handle = odd_files.submit()
    try:
        assert handle.result(120) == "kept"
        log = "\n".join(handle.logs(follow=False))
        assert "the output 'pipe' is not a regular file" in log and "'dangling' is not a regular file" in log
        got = handle.outputs(workdir / "got")
        assert sorted(got) == ["linked", "real.txt"]
        assert got["real.txt"].read_text() == "real" and got["linked"].read_text() == "real"
    finally:
        handle.delete()


def test_trainjob_run_brings_fairing_outputs_back(workdir, cache, no_leftovers):
    (workdir / "train.py").write_text(
        "import os\n"
        "with open(os.path.join(os.environ['FAIRING_OUTPUTS'], 'weights.bin'), 'wb') as fh:\n"
        "    fh.write(b'w' * 10)\n"
    )
    TrainJob("train.py", backend="local", quiet=True).run(timeout=300, outputs_dir=workdir / "out")
    assert (workdir / "out" / "weights.bin").read_bytes() == b"w" * 10


def test_cli_run_brings_fairing_outputs_back_to_the_current_directory(workdir, cache, no_leftovers):
    (workdir / "train.py").write_text(
        "import os\n"
        "open(os.path.join(os.environ['FAIRING_OUTPUTS'], 'report.txt'), 'w').write('done')\n"
    )
    out = subprocess.run([sys.executable, "-m", "fairing", "run", "train.py"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert out.returncode == 0, out.stderr
    assert (workdir / "report.txt").read_text() == "done"


# -- the result key -------------------------------------------------------------------------


def _forged_line(obj) -> str:
    """A result line signed with an empty key: anyone can make one."""
    from fairing.runtime.result import PREFIX

    body = base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()
    mac = hmac.new(b"", (PREFIX + body).encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}{body}:{mac}"


class _Planted:
    """Unpickling it creates a file: proof that an unauthenticated line was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_decode_and_encode_refuse_an_empty_key(tmp_path):
    from fairing.runtime.result import MissingKey, decode, encode, new_key

    marker = tmp_path / "unpickled"
    line = _forged_line({"ok": True, "value": _Planted(str(marker))})
    for key in (b"", None):
        with pytest.raises(MissingKey):
            decode(line, key)
        with pytest.raises(MissingKey):
            encode({"ok": True}, key)
    with pytest.raises(ValueError):  # a real key does not accept it either
        decode(line, new_key())
    assert not marker.exists()
    key = new_key()
    assert decode(encode({"ok": True, "value": 3}, key), key)["value"] == 3


def test_attaching_to_a_job_whose_key_is_gone_is_a_typed_error(workdir, cache, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def quick():
        return 42

    handle = quick.submit()
    try:
        handle.wait(120)
        marker = workdir / "unpickled"
        (handle.job_dir / "key").unlink()  # lost, or removed by someone who wants their line read
        (handle.job_dir / "result").write_text(_forged_line({"ok": True, "value": _Planted(str(marker))}))
        attached = fairing.attach(handle.name)
        with pytest.raises(ResultError, match="key .* is missing") as info:
            attached.result()
        assert isinstance(info.value, fairing.FairingError) and info.value.job == handle.name
        assert not marker.exists()
        (handle.job_dir / "key").write_text("not hex")  # spoilt: the same
        with pytest.raises(ResultError):
            fairing.attach(handle.name).result()
        assert not marker.exists()
    finally:
        handle.delete()


def test_a_value_whose_class_exists_only_in_the_job_is_a_typed_error(workdir, cache, no_leftovers):
    module = f"jobonly_{uuid.uuid4().hex[:10]}"
    (workdir / f"{module}.py").write_text("class Point:\n    def __init__(self, x):\n        self.x = x\n")
    assert importlib.util.find_spec(module) is None  # not importable here

    @fairing.train(backend="local", quiet=True, timeout=300, input_files=[f"{module}.py"])
    def make_point():
        import importlib

        return importlib.import_module(module).Point(1)

    with pytest.raises(ResultError) as info:
        make_point()
    err = info.value
    assert isinstance(err, fairing.FairingError) and not isinstance(err, ModuleNotFoundError)
    assert err.module == module and module in str(err) and "Return plain types" in str(err)
    assert isinstance(err.__cause__, ModuleNotFoundError)
