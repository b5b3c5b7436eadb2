"""The warm worker's protocol on this machine (the worker in a thread, on a loopback port):
who it answers, what it refuses to write, and that a dropped connection stops the run but
not the worker. The options that cannot be warm: tests/unit/test_warm_options.py; the cluster
side: tests/e2e/test_warm.py."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
import time

import pytest

from fairing.runtime import warm as protocol

TOKEN = "t" * 40


@pytest.fixture
def worker(tmp_path):
    w = protocol.Worker(hashlib.sha256(TOKEN.encode()).hexdigest(), idle=30, state=str(tmp_path / "state"))
    thread = threading.Thread(target=w.serve, kwargs={"port": 0}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not w.port and time.time() < deadline:
        time.sleep(0.01)
    yield w
    if w.spare is not None:
        protocol._stop(w.spare)


def _connect(w) -> socket.socket:
    return socket.create_connection(("127.0.0.1", w.port), timeout=30)


def _call(w, tmp_path, files: dict, entrypoint: list, token: str = TOKEN, links=None) -> dict:
    """Send a call; the frames the worker answered, by type."""
    blobs = {hashlib.sha256(data).hexdigest(): data for data in files.values()}
    with _connect(w) as sock:
        protocol.send(sock, b"H", json.dumps({"token": token, "have": sorted(blobs)}).encode())
        kind, body = protocol.recv(sock)
        answer = json.loads(body)
        if "refused" in answer:
            return {"refused": answer["refused"]}
        for digest in answer["missing"]:
            protocol.send(sock, b"B", blobs[digest])
        run = {"files": {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}, "links": links or {},
               "exec": [], "entrypoint": entrypoint, "env": {}, "workdir": str(tmp_path / "app"), "key": "00" * 32}
        protocol.send(sock, b"R", json.dumps(run).encode())
        got: dict = {"missing": answer["missing"], "O": b"", "E": b""}
        try:
            while True:
                kind, body = protocol.recv(sock)
                if kind in (b"O", b"E"):
                    got[kind.decode()] += body
                elif kind == b"X":
                    got["X"] = json.loads(body)
                    return got
        except EOFError:
            return got


def test_a_wrong_token_is_refused_and_nothing_runs(worker, tmp_path):
    got = _call(worker, tmp_path, {"m.py": b"open('ran', 'w')"}, ["python3", "-m", "m"], token="guess")
    assert "another submitter" in got["refused"]
    assert not (tmp_path / "app" / "ran").exists()


def test_files_the_worker_has_are_not_sent_again_and_each_run_is_a_fresh_process(worker, tmp_path):
    code = b"import builtins, sys\nprint(getattr(builtins, 'seen', 'fresh'))\nbuiltins.seen = 1\nsys.exit(5)\n"
    first = _call(worker, tmp_path, {"m.py": code}, ["python3", "-m", "m"])
    second = _call(worker, tmp_path, {"m.py": code}, ["python3", "-m", "m"])
    assert first["missing"] == [hashlib.sha256(code).hexdigest()] and second["missing"] == []
    assert first["O"] == second["O"] == b"fresh\n"
    assert first["X"]["code"] == second["X"]["code"] == 5


@pytest.mark.parametrize("path", ["../escape.py", "/etc/evil.py", "a/../../escape.py"])
def test_a_path_outside_the_workdir_is_refused(worker, tmp_path, path):
    got = _call(worker, tmp_path, {path: b"x = 1"}, [sys.executable, "-c", "pass"])
    assert "X" not in got  # the call ended without a run
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "app" / "escape.py").exists()
    assert _call(worker, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('alive')"])["O"] == b"alive\n"


def test_a_blob_is_stored_under_its_own_hash_never_the_one_claimed(worker, tmp_path):
    with _connect(worker) as sock:
        protocol.send(sock, b"H", json.dumps({"token": TOKEN, "have": ["0" * 64]}).encode())
        assert json.loads(protocol.recv(sock)[1])["missing"] == ["0" * 64]
        protocol.send(sock, b"B", b"not what was claimed")
        run = {"files": {"f.py": "0" * 64}, "entrypoint": [sys.executable, "-c", "pass"], "workdir":
               str(tmp_path / "app"), "key": "00" * 32}
        protocol.send(sock, b"R", json.dumps(run).encode())
        with pytest.raises(EOFError):  # the file it names is not there: no run
            protocol.recv(sock)


def test_a_huge_frame_or_garbage_ends_the_call_not_the_worker(worker, tmp_path):
    with _connect(worker) as sock:
        sock.sendall(b"H" + (protocol.MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(EOFError):
            protocol.recv(sock)
    with _connect(worker) as sock:
        sock.sendall(b"Zgarbage-garbage")
        with pytest.raises((EOFError, ConnectionResetError)):
            protocol.recv(sock)
    assert _call(worker, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('alive')"])["O"] == b"alive\n"


def test_a_dropped_connection_kills_the_run_and_the_worker_serves_the_next(worker, tmp_path):
    marker = tmp_path / "still-running"
    code = f"import time\nprint('started', flush=True)\ntime.sleep(2)\nopen({str(marker)!r}, 'w')\n".encode()
    sock = _connect(worker)
    blob = hashlib.sha256(code).hexdigest()
    protocol.send(sock, b"H", json.dumps({"token": TOKEN, "have": [blob]}).encode())
    protocol.recv(sock)
    protocol.send(sock, b"B", code)
    protocol.send(sock, b"R", json.dumps({"files": {"slow.py": blob}, "entrypoint": ["python3", "-m", "slow"],
                                          "workdir": str(tmp_path / "app"), "key": "00" * 32}).encode())
    assert protocol.recv(sock) == (b"O", b"started\n")
    sock.close()  # Ctrl-C on the submitter's side
    assert _call(worker, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('next')"])["O"] == b"next\n"
    time.sleep(2.5)
    assert not marker.exists()  # the first run was killed, not left to finish


def test_an_idle_worker_exits(tmp_path):
    w = protocol.Worker(hashlib.sha256(TOKEN.encode()).hexdigest(), idle=0.5, state=str(tmp_path / "state"))
    started = time.time()
    assert w.serve(port=0) == 0
    assert time.time() - started < 10 and w.spare is None or w.spare.poll() is not None


def test_a_run_does_not_see_what_the_last_run_left_but_sees_the_images_files(worker, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "from-image.txt").write_text("base")
    leave = b"import os\nopen('left.txt', 'w').write('x')\nos.symlink('/etc', 'out')\nprint(sorted(os.listdir('.')))\n"
    first = _call(worker, tmp_path, {"m.py": leave}, ["python3", "-m", "m"])
    assert first["O"] == b"['from-image.txt', 'left.txt', 'm.py', 'out']\n"
    look = b"import os\nprint(sorted(os.listdir('.')))\n"
    second = _call(worker, tmp_path, {"m.py": look, "out/evil.py": b""}, ["python3", "-m", "m"])
    assert "X" in second and second["O"] == b"['from-image.txt', 'm.py', 'out']\n"  # the planted link is gone
    assert (app / "out").is_dir() and not (app / "out").is_symlink()


def test_a_link_leaving_the_workdir_is_refused(worker, tmp_path):
    got = _call(worker, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "pass"], links={"l": "../../etc/passwd"})
    assert "X" not in got and not (tmp_path / "app" / "l").exists()


def test_a_run_that_closes_its_output_and_hangs_is_still_stopped_by_the_submitter(worker, tmp_path):
    code = b"import os, time\nprint('closing', flush=True)\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    sock = _connect(worker)
    blob = hashlib.sha256(code).hexdigest()
    protocol.send(sock, b"H", json.dumps({"token": TOKEN, "have": [blob]}).encode())
    protocol.recv(sock)
    protocol.send(sock, b"B", code)
    protocol.send(sock, b"R", json.dumps({"files": {"hang.py": blob}, "entrypoint": ["python3", "-m", "hang"],
                                          "workdir": str(tmp_path / "app"), "key": "00" * 32}).encode())
    assert protocol.recv(sock) == (b"O", b"closing\n")
    sock.close()
    started = time.time()
    assert _call(worker, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('next')"])["O"] == b"next\n"
    assert time.time() - started < 30
