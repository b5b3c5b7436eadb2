"""The warm worker attacked as a careless run or a stalled submitter would: nothing a run
starts or writes outside its workdir reaches the next run, and a submitter that stops
mid-call does not hold the worker (nor keep its pod) for ever. The worker runs in its own
process here, as in the pod (it owns the processes runs start). The protocol itself:
tests/local/test_warm_worker_local.py."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fairing import JobFailedError
from fairing.runtime import warm as protocol

from test_warm_worker_local import TOKEN, _call

ROOT = Path(__file__).resolve().parents[2]

_WORKER = """
import sys
sys.path.insert(0, {root!r})
from fairing.runtime import warm
warm.MAX_FRAME = {max_frame!r}
w = warm.Worker({sha!r}, idle={idle!r}, state={state!r}, scratch=({scratch!r},), reaper=True)
sys.exit(w.serve(port=0))
"""


def _start_worker(tmp_path: Path, idle: float, max_frame: int = protocol.MAX_FRAME) -> tuple:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "from-image.txt").write_text("base")
    script = _WORKER.format(root=str(ROOT), sha=hashlib.sha256(TOKEN.encode()).hexdigest(), idle=idle,
                            state=str(tmp_path / "state"), scratch=str(scratch), max_frame=max_frame)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert protocol.READY in line, line + proc.stderr.read()
    return proc, SimpleNamespace(port=int(line.rsplit(":", 1)[1])), scratch


@pytest.fixture
def worker(tmp_path):
    proc, w, scratch = _start_worker(tmp_path, idle=60)
    w.scratch = scratch
    yield w
    proc.terminate()
    proc.wait(30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_background_process_or_a_daemon_a_run_started_is_gone_before_the_next_run(worker, tmp_path):
    pids = tmp_path / "pids"
    start = (b"import os, subprocess, sys\n"
             b"bg = subprocess.Popen(['sleep', '300'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
             b"r, w = os.pipe()\n"
             b"if os.fork() == 0:\n"  # a daemon: double fork, its own session, output closed
             b"    os.setsid()\n"
             b"    if os.fork() == 0:\n"
             b"        os.write(w, str(os.getpid()).encode())\n"
             b"        for fd in (0, 1, 2): os.close(fd)\n"
             b"        import time; time.sleep(300)\n"
             b"    os._exit(0)\n"
             b"daemon = os.read(r, 32).decode()\n"
             b"open(" + repr(str(pids)).encode() + b", 'w').write(f'{bg.pid} {daemon}')\n"
             b"print('started', bg.pid, daemon)\n")
    first = _call(worker, tmp_path, {"m.py": start}, ["python3", "-m", "m"])
    assert first["X"]["code"] == 0 and first["O"].startswith(b"started"), first
    bg, daemon = map(int, pids.read_text().split())
    look = (b"import os\nprint([p for p in " + pids.read_text().split().__repr__().encode()
            + b" if os.path.exists(f'/proc/{p}')])\n")
    second = _call(worker, tmp_path, {"m.py": look}, ["python3", "-m", "m"])
    assert second["O"] == b"[]\n", second  # neither is there for the next run
    assert not _alive(bg) and not _alive(daemon)


def test_files_a_run_leaves_in_tmp_are_gone_for_the_next_run_and_the_images_stay(worker, tmp_path):
    scratch = worker.scratch
    leave = (f"import os\nos.makedirs({str(scratch / 'sub')!r})\nopen({str(scratch / 'sub' / 'x')!r}, 'w')\n"
             f"open({str(scratch / 'left.txt')!r}, 'w').write('secret of run 1')\n"
             f"os.symlink('/etc', {str(scratch / 'link')!r})\n").encode()
    assert _call(worker, tmp_path, {"m.py": leave}, ["python3", "-m", "m"])["X"]["code"] == 0
    look = f"import os\nprint(sorted(os.listdir({str(scratch)!r})))\n".encode()
    assert _call(worker, tmp_path, {"m.py": look}, ["python3", "-m", "m"])["O"] == b"['from-image.txt']\n"
    assert (tmp_path / "state" / "cas").is_dir()  # the worker's own state, not a run's, stays


def test_a_submitter_that_stalls_mid_upload_does_not_hold_the_worker_or_its_idle_exit(tmp_path):
    proc, w, _ = _start_worker(tmp_path, idle=2)
    try:
        stalled = socket.create_connection(("127.0.0.1", w.port))
        stalled.sendall(b"H" + (1000).to_bytes(4, "big") + b'{"tok')  # half a hello, then nothing (held open)
        started = time.monotonic()
        got = _call(w, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('served')"])
        assert got["O"] == b"served\n" and time.monotonic() - started < 15
        assert proc.wait(30) == 0  # and, idle again, it exits: its pod would go
        stalled.close()
    finally:
        proc.kill()
        proc.wait()


def test_a_huge_idle_time_is_clamped_not_a_crash_of_the_worker(tmp_path):
    proc, w, _ = _start_worker(tmp_path, idle=1e308)  # past what select() takes: was an OverflowError at start
    try:
        assert _call(w, tmp_path, {"ok.py": b""}, [sys.executable, "-c", "print('up')"])["O"] == b"up\n"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


class _LoopbackDeployer:
    """The real WarmDeployer, its port-forward replaced by the worker's loopback port (the
    only part that needs a cluster)."""

    @staticmethod
    def make(w, tmp_path):
        from types import SimpleNamespace as NS

        from fairing.deployers.warm import WarmDeployer

        class Loopback(WarmDeployer):
            interrupt_after_hello = 0.0

            def connect(self, pod):
                return socket.create_connection(("127.0.0.1", w.port), timeout=60)

            def find_worker(self, image):  # the listing: the one worker there is
                return "pod", "fairing-warm-1", TOKEN

            def _hello(self, *args):
                missing = super()._hello(*args)
                if self.interrupt_after_hello:  # Ctrl-C while the files go up
                    signal.setitimer(signal.ITIMER_REAL, self.interrupt_after_hello)
                return missing

        deployer = Loopback(kube=NS(namespace="team"), idle=60, token_dir=tmp_path / "tokens")
        deployer._identity = "me"
        return deployer


def _image(tmp_path, files: dict):
    from fairing.artifacts import RegistryImage, WarmImage
    from fairing.context import BuildContext

    image = RegistryImage("registry.example", "team/worker", digest="sha256:" + "0" * 64)
    context = BuildContext(files=files, entrypoint=("python3", "-m", "m"), workdir=str(tmp_path / "app"))
    return WarmImage(image, context)


def test_ctrl_c_mid_upload_in_a_kernel_that_keeps_its_traceback_does_not_wedge_the_worker(worker, tmp_path):
    deployer = _LoopbackDeployer.make(worker, tmp_path)
    image = _image(tmp_path, {"m.py": b"print('small')\n"})
    deployer._known[deployer.worker_key(image.image)] = ("pod", "fairing-warm-1", TOKEN)
    big = _image(tmp_path, {"m.py": b"pass\n", "data.bin": os.urandom(1 << 20) * 400})  # 400 MiB to upload

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    deployer.interrupt_after_hello = 0.05
    try:
        with pytest.raises(KeyboardInterrupt) as ctrl_c:
            deployer.deploy(big)
        assert any(f.name == "send" for f in __import__("traceback").extract_tb(ctrl_c.value.__traceback__))
    finally:
        deployer.interrupt_after_hello = 0.0
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    kept = ctrl_c.value.__traceback__  # what IPython keeps in sys.last_traceback: the frames, their socket
    deployer._known[deployer.worker_key(image.image)] = ("pod", "fairing-warm-1", TOKEN)
    started = time.monotonic()
    handle = deployer.deploy(image)
    assert handle.wait(30).phase == "Succeeded"
    assert time.monotonic() - started < 20 and kept is not None  # not held until the worker's idle time


def _fake_worker(frames: list):
    """A loopback server that takes the hello and answers ``frames`` (raw bytes): what a
    pod impersonating the worker, or a corrupt one, sends."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(2):  # the call, and the second look after a refused hello
            conn, _ = listener.accept()
            with conn:
                protocol.recv(conn)
                for frame in frames:
                    conn.sendall(frame)
                try:
                    while conn.recv(1 << 16):
                        pass
                except OSError:
                    pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return SimpleNamespace(port=listener.getsockname()[1])


def _frame(kind: bytes, body) -> bytes:
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    return protocol._HEAD.pack(kind, len(body)) + body


_MISSING_NONE = _frame(b"N", {"missing": []})


@pytest.mark.parametrize("frames, error, says", [
    ([_frame(b"N", b"\xff not json")], "DeployError", "not a worker's answer"),
    ([_frame(b"N", [1, 2])], "DeployError", "not a worker's answer"),
    ([_frame(b"N", {"missing": ["../../etc/passwd"]})], "DeployError", "not a fairing warm worker"),
    ([_frame(b"N", {"missing": "all"})], "DeployError", "not a fairing warm worker"),
    ([_MISSING_NONE, _frame(b"X", {"code": 0, "result": "no envelope here"})], "JobError", "reported no result"),
    ([_MISSING_NONE, _frame(b"X", {"code": 0, "result": ["x"]})], "JobError", "reported no result"),
    ([_MISSING_NONE, _frame(b"X", {"code": "0"})], "JobFailedError", "no exit code"),
    ([_MISSING_NONE, _frame(b"X", "a string")], "JobFailedError", "went away"),
    ([_MISSING_NONE, b"O" + (0xFFFFFFFF).to_bytes(4, "big")], "JobFailedError", "went away"),  # 4 GiB claimed
])
def test_a_fake_or_corrupt_worker_is_a_typed_error_and_nothing_it_sends_is_unpickled(tmp_path, frames, error, says):
    import fairing.errors

    fake = _fake_worker(frames)
    deployer = _LoopbackDeployer.make(fake, tmp_path)
    image = _image(tmp_path, {"m.py": b"print(1)\n"})
    deployer._known[deployer.worker_key(image.image)] = ("pod", "fairing-warm-1", TOKEN)
    with pytest.raises(getattr(fairing.errors, error), match=says):
        deployer.deploy(image).result(timeout=30)


def test_outputs_over_what_a_call_carries_are_a_typed_error_and_the_worker_stays(tmp_path):
    """Outputs are tarred to disk, not memory, and refused past the frame limit (1 GiB; 1 MiB
    here): past 4 GiB the frame's length did not fit its 4 bytes and the worker died."""
    proc, w, _ = _start_worker(tmp_path, idle=60, max_frame=1 << 20)
    try:
        deployer = _LoopbackDeployer.make(w, tmp_path)
        write = (b"import os\nwith open(os.path.join(os.environ['FAIRING_OUTPUTS_TARGET'], 'model.bin'), 'wb') as fh:\n"
                 b"    fh.write(os.urandom(3 << 20))\n")
        big = _image(tmp_path, {"m.py": write})
        deployer._known[deployer.worker_key(big.image)] = ("pod", "fairing-warm-1", TOKEN)
        with pytest.raises(JobFailedError, match="over the 1048576 a warm call carries back"):
            deployer.deploy(big).result(timeout=60)
        assert not (tmp_path / "state" / "outputs.tar").exists()
        small = _image(tmp_path, {"m.py": b"print('still here')\n"})
        handle = deployer.deploy(small)
        assert handle.wait(60).phase == "Succeeded" and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_file_rewritten_with_a_token_while_it_is_read_for_the_worker_is_never_sent_unscanned(tmp_path):
    """The warm call reads the code files itself (no tar): a file that gets a token between its
    last scan and the read (an editor's autosave, a run writing its log) is scanned as read."""
    import threading
    import uuid

    from fairing.context import BuildContext
    from fairing.deployers.warm import _payload
    from fairing.errors import SecretInContextError
    from fairing.preprocessors.secrets import check_files

    secret = ("ghp_" + uuid.uuid4().hex + "abcd").encode()
    path = tmp_path / "train.py"
    clean = b"x = 1\n" * 2000
    path.write_bytes(clean)
    check_files({"train.py": path})  # what the preprocessors' scan did
    context = BuildContext(files={"train.py": path}, entrypoint=("python3", "train.py"))
    stop = threading.Event()

    def autosave():
        while not stop.is_set():
            path.write_bytes(clean + b"token = '" + secret + b"'\n")
            path.write_bytes(clean)

    writer = threading.Thread(target=autosave)
    writer.start()
    sent = refused = 0
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                blobs = _payload(context)[0]
            except SecretInContextError:
                refused += 1
                continue
            assert not any(secret in data for data in blobs.values()), "a token went out unscanned"
            sent += 1
    finally:
        stop.set()
        writer.join()
    assert refused and sent  # both states were seen: the race was run
