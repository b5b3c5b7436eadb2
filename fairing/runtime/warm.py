"""The warm worker: a long-lived process in a pod that runs one call after another, each in
a fresh Python process, so that a code change needs no new pod.

Started as the pod's command (``python3 -m fairing_runtime.warm``). It listens on the pod's
loopback only (``127.0.0.1``): the submitter reaches it through the API server's
port-forward subresource, with its own permissions; no Service, nothing on the cluster
network. Why not an exec per call: on the local cluster an exec round trip costs ~0.1 s
(a process started by the container runtime), a port-forward connection ~0.02 s.

One connection is one call; calls are served one at a time (a second waits in the backlog).
Frames are ``type (1 byte) | length (4 bytes, big endian) | body``::

    client  H {"token": ..., "have": [sha256...]}   the worker answers N [sha256 it lacks]
    client  B <bytes>                                one per missing file, checked by its sha256
    client  R {"files": {path: sha256}, "links": {path: target}, "exec": [path],
               "entrypoint": [...], "env": {...}, "workdir": "/app", "key": hex}
    worker  O <stdout bytes> | E <stderr bytes>      while the run goes
    worker  T <tar of the outputs directory>         when the run wrote outputs
    worker  X {"code": exit code, "result": signed result line or ""}
    client  C (or closing the connection)            stops the run: its process group is killed

The ``token`` is checked against the sha256 the pod was started with (``FAIRING_WARM_TOKEN_SHA256``,
a hash, not the token): only the submitter that started the worker holds it. Files are
kept by content (sha256) under the cache directory, so a file the worker has is never sent
again; each run gets ``workdir`` emptied and laid out afresh from them. With no connection
for ``FAIRING_WARM_IDLE`` seconds the worker exits 0 (its Job's TTL then removes the pod).

Standard library only: this module runs inside the job image. It is past 450 lines because the
protocol, the layout of a run's files and the clean-up after it (processes, scratch files) are one
unit that the image carries as a single file.
"""

import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time

PORT = 38271
TOKEN_ENV = "FAIRING_WARM_TOKEN_SHA256"
IDLE_ENV = "FAIRING_WARM_IDLE"
STATE = "/tmp/fairing-warm"
MAX_FRAME = 1 << 30
MAX_IDLE = 7 * 86400.0
READY = "fairing warm worker: listening on"
_HEAD = struct.Struct(">cI")


class ProtocolError(Exception):
    pass


def send(sock, kind: bytes, body: bytes = b"") -> None:
    sock.sendall(_HEAD.pack(kind, len(body)) + body)


def _exact(sock, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(sock) -> tuple:
    kind, size = _HEAD.unpack(_exact(sock, _HEAD.size))
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes is over the limit")
    return kind, _exact(sock, size)


def _walk(top: str) -> list:
    """Every path under ``top`` (files, links, directories), relative to it; links not followed."""
    out = []
    for root, dirs, files in os.walk(top):
        rel = os.path.relpath(root, top)
        out.extend(os.path.normpath(os.path.join(rel, name)) for name in (*dirs, *files))
    return out


def _inside(workdir: str, rel: str) -> str:
    """``workdir/rel`` with its parent directories made, refused when a parent is a link
    (a run could have planted one pointing out of the working directory)."""
    parent = workdir
    for part in rel.split("/")[:-1]:
        parent = os.path.join(parent, part)
        if os.path.islink(parent):
            raise ProtocolError(f"a parent of {rel!r} is a link")
        os.makedirs(parent, exist_ok=True)
    return os.path.join(workdir, rel)


def _safe_rel(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or path.startswith("/"):
        raise ProtocolError(f"the path {path!r} leaves the working directory")
    return "/".join(parts)


class Worker:
    """``scratch``: directories a run may write to besides its workdir (the pod's ``/tmp``),
    emptied of what runs left after each run. ``reaper``: this process owns every process a
    run starts (the pod's PID 1, or a child subreaper): after each run the ones still alive
    (started in the background, daemonized) are killed, so no run sees another's."""

    def __init__(self, token_sha: str, idle: float, state: str = STATE, *, scratch: tuple = (),
                 reaper: bool = False) -> None:
        self.token_sha = token_sha
        self.idle = min(float(idle), MAX_IDLE)  # select() refuses a timeout past ~292 years
        self.state = os.path.realpath(state)
        self.reaper = reaper
        self.cas = os.path.join(state, "cas")
        self.out = os.path.join(state, "outputs")
        self.result = os.path.join(state, "result")
        self.pycache = os.path.join(state, "pycache")
        os.makedirs(self.cas, exist_ok=True)
        self.spare = None
        self.port = 0
        self.image_files = None  # (workdir, what the image has there)
        self.scratch = {os.path.realpath(d): set(_walk(d)) for d in scratch if os.path.isdir(d)}
        if reaper:
            _become_subreaper()

    def start_spare(self) -> None:
        """A fresh interpreter for the next run, started now so that the call does not wait for
        Python to start (it serves one run: nothing is carried from one run to the next)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": self.pycache}
        for name in (TOKEN_ENV, IDLE_ENV):
            env.pop(name, None)
        self.spare = subprocess.Popen([sys.executable, "-c", _SPARE], cwd="/", env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def serve(self, port: int = PORT) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        sys.stdout.write(f"{READY} 127.0.0.1:{self.port}\n")  # the pod's log: the submitter may connect now
        sys.stdout.flush()
        self.start_spare()
        while True:
            ready, _, _ = select.select([listener], [], [], self.idle)
            if not ready:
                if self.spare is not None:
                    _stop(self.spare)
                return 0  # idle: exit, and the cluster removes the pod
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # a submitter that stops sending (or reading) mid-call frees the worker after the idle
                # time, instead of holding it (and every later call, and its idle exit) for ever
                conn.settimeout(self.idle)
                try:
                    self.call(conn)
                except (EOFError, OSError, ProtocolError, ValueError) as exc:
                    sys.stderr.write(f"fairing warm worker: a call ended: {exc}\n")
                finally:
                    self.after_run()
            if self.spare is None or self.spare.poll() is not None:
                self.start_spare()  # after the answer (the connection is closed): no caller waits for it

    def call(self, conn) -> None:
        kind, body = recv(conn)
        if kind != b"H":
            raise ProtocolError("a call starts with a hello")
        hello = json.loads(body)
        given = hashlib.sha256(str(hello.get("token", "")).encode()).hexdigest()
        if not hmac.compare_digest(given, self.token_sha):
            send(conn, b"N", json.dumps({"refused": "this worker serves another submitter"}).encode())
            return
        missing = [h for h in hello.get("have", []) if not os.path.exists(self._blob(h))]
        send(conn, b"N", json.dumps({"missing": missing}).encode())
        while True:
            kind, body = recv(conn)
            if kind == b"B":
                self._store(body)
            elif kind == b"R":
                return self.run(conn, json.loads(body))
            else:
                raise ProtocolError(f"unexpected frame {kind!r}")

    def after_run(self) -> None:
        """What a run left outside its workdir goes: its processes, its files in the scratch
        directories (the next run's workdir is laid out afresh anyway)."""
        if self.reaper:
            keep = {self.spare.pid} if self.spare is not None and self.spare.poll() is None else set()
            _kill_children(keep)
        for directory, keep_paths in self.scratch.items():
            for path in sorted(_walk(directory), reverse=True):
                full = os.path.join(directory, path)
                if path in keep_paths or full == self.state or full.startswith(self.state + "/") \
                        or self.state.startswith(full + "/"):
                    continue
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full, ignore_errors=True)
                elif os.path.lexists(full):
                    try:
                        os.unlink(full)
                    except OSError:
                        pass

    def _blob(self, digest: str) -> str:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ProtocolError(f"not a sha256: {digest!r}")
        return os.path.join(self.cas, digest)

    def _store(self, data: bytes) -> None:
        path = self._blob(hashlib.sha256(data).hexdigest())
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def _lay_out(self, spec: dict) -> str:
        workdir = os.path.normpath(spec.get("workdir") or "/app")
        if not workdir.startswith("/") or workdir in ("/", "/tmp") or workdir.startswith(STATE):
            raise ProtocolError(f"refusing workdir {workdir!r}")
        os.makedirs(workdir, exist_ok=True)
        self._clean(workdir)
        executable = set(spec.get("exec", []))
        for rel, digest in spec.get("files", {}).items():
            rel = _safe_rel(rel)
            target = _inside(workdir, rel)
            source = self._blob(digest)
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)  # never written through a link the image or a run left
            shutil.copyfile(source, target)  # a copy: the run may change its files, not the cache
            os.chmod(target, 0o755 if rel in executable else 0o644)
            # an mtime from the content: bytecode cached by (mtime, size) stays valid exactly while it is unchanged
            stamp = int(digest[:7], 16)
            os.utime(target, (stamp, stamp))
        for rel, link in spec.get("links", {}).items():
            rel = _safe_rel(rel)
            resolved = os.path.normpath(os.path.join(os.path.dirname(rel), link))
            if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ProtocolError(f"the link {rel!r} -> {link!r} leaves the working directory")
            target = _inside(workdir, rel)
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(link, target)
        return workdir

    def _clean(self, workdir: str) -> None:
        """Remove what earlier runs left in ``workdir``: everything but what the image has there
        (recorded before the first run), so each run starts from the image and its own files."""
        if self.image_files is None or self.image_files[0] != workdir:
            self.image_files = (workdir, set(_walk(workdir)))
        keep = self.image_files[1]
        for path in sorted(_walk(workdir), reverse=True):  # children before their directory
            if path in keep:
                continue
            full = os.path.join(workdir, path)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            elif os.path.lexists(full):
                os.unlink(full)

    def run(self, conn, spec: dict) -> None:
        workdir = self._lay_out(spec)
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out)
        if os.path.exists(self.result):
            os.unlink(self.result)
        given = dict(spec.get("env", {}))
        if given.get("PYTHONPATH") and os.environ.get("PYTHONPATH"):  # the image's (the requirements) stays after
            given["PYTHONPATH"] += ":" + os.environ["PYTHONPATH"]
        env = {**os.environ, **given, "FAIRING_RESULT_FILE": self.result,
               "FAIRING_RESULT_KEY": spec["key"], "FAIRING_OUTPUTS_TARGET": self.out,
               "PYTHONPYCACHEPREFIX": self.pycache}
        for name in (TOKEN_ENV, IDLE_ENV, "FAIRING_RESULT_LOG", "FAIRING_RESULT_KEY_FILE"):
            env.pop(name, None)
        began = time.monotonic()
        entry = list(spec["entrypoint"])
        spare, self.spare = self.spare, None
        if spare is not None and spare.poll() is None and entry[:2] == ["python3", "-m"] and len(entry) >= 3:
            child = spare  # started before the call, its interpreter up: told what to run now
            child.stdin.write(json.dumps({"cwd": workdir, "env": env, "argv": entry[2:]}).encode() + b"\n")
            child.stdin.close()
        else:
            if spare is not None:
                _stop(spare)
            child = subprocess.Popen(entry, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        streams = {child.stdout.fileno(): b"O", child.stderr.fileno(): b"E"}
        stopped = True  # until the run's output ends: a broken connection stops it too
        try:
            while streams:
                ready, _, _ = select.select([*streams, conn], [], [])
                if conn in ready:  # a cancel, or the submitter went away: stop the run, not the worker
                    return
                for fd in ready:
                    chunk, ended = _read_lines(fd)
                    if chunk:
                        send(conn, streams[fd], chunk)
                    if ended:
                        del streams[fd]
            while child.poll() is None:  # its output closed, the process not ended yet
                if select.select([conn], [], [], 0.2)[0]:
                    return
            stopped = False
        finally:
            if stopped:
                _stop(child)
        code = child.wait()
        result = ""
        if os.path.exists(self.result):
            with open(self.result) as fh:
                result = fh.read()
        end = {"code": code, "result": result}
        tar = os.path.join(self.state, "outputs.tar")  # on disk: outputs may be larger than the pod's memory
        try:
            size = _tar_to(self.out, tar)
            if size > MAX_FRAME:
                end["error"] = (f"its outputs are {size} bytes, over the {MAX_FRAME} a warm call carries back; "
                                "write them to a volume or a bucket, or run without warm=True")
            elif size:
                with open(tar, "rb") as fh:
                    conn.sendall(_HEAD.pack(b"T", size))
                    while chunk := fh.read(1 << 20):
                        conn.sendall(chunk)
        finally:
            if os.path.exists(tar):
                os.unlink(tar)
        end["seconds"] = round(time.monotonic() - began, 4)
        send(conn, b"X", json.dumps(end).encode())


#: The spare interpreter: imports what the image has that every run needs (no user code), then waits
#: for its run (cwd, environment, module and arguments) on stdin.
_SPARE = """
import json, os, runpy, sys
# the standard library the runtime imports (urllib.request alone takes tens of milliseconds)
import base64, hashlib, hmac, platform, pickle, re, secrets, shutil, traceback, urllib.request, zlib
try:
    import cloudpickle
except ImportError:
    pass
spec = json.loads(sys.stdin.readline())
fd = os.open(os.devnull, os.O_RDONLY)
os.dup2(fd, 0)
os.chdir(spec["cwd"])
os.environ.clear()
os.environ.update(spec["env"])
sys.path[:] = [p for p in spec["env"].get("PYTHONPATH", "").split(":") if p] + [p for p in sys.path if p]
sys.path.insert(0, spec["cwd"])
sys.argv = [spec["argv"][0], *spec["argv"][1:]]
runpy.run_module(spec["argv"][0], run_name="__main__", alter_sys=True)
"""


def _read_lines(fd: int) -> tuple:
    """What ``fd`` has, waiting a moment for the rest of a line (unbuffered Python writes
    ``print``'s text and its newline apart); (bytes, whether the stream ended)."""
    chunk = os.read(fd, 65536)
    if not chunk:
        return b"", True
    while not chunk.endswith(b"\n") and len(chunk) < 65536 and select.select([fd], [], [], 0.02)[0]:
        more = os.read(fd, 65536)
        if not more:
            return chunk, True
        chunk += more
    return chunk, False


def _become_subreaper() -> None:
    """Processes a run detaches (double fork, setsid) are handed to this process when their
    parent ends, not to an init out of reach (in the pod this process is PID 1 anyway)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _children(parent: int) -> list:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            out.append(int(name))
    return out


def _kill_children(keep: set) -> None:
    """SIGKILL and reap this process's children but ``keep``; again for what their ends hand over."""
    for _ in range(100):
        strays = [pid for pid in _children(os.getpid()) if pid not in keep]
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _stop(child) -> None:
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            child.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _tar_to(directory: str, path: str) -> int:
    """Tar ``directory``'s files into ``path``; its size (0, and no file, when there are none)."""
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    if not names:
        return 0
    with tarfile.open(path, mode="w") as tar:
        for name in names:
            tar.add(os.path.join(directory, name), arcname=name)
    return os.path.getsize(path)


def main() -> int:
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) != 64:
        sys.stderr.write(f"fairing warm worker: no {TOKEN_ENV}; refusing to serve\n")
        return 2
    idle = float(os.environ.get(IDLE_ENV) or 600)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return Worker(token, idle, scratch=("/tmp",), reaper=True).serve()


if __name__ == "__main__":
    sys.exit(main())
