"""Local deployer: runs a LocalDir (what the local builder makes) in a subprocess, as a container would run the image.

The context's files are laid out in a fresh temporary directory that is the working
directory, the entrypoint and env are the image's, and ``FAIRING_RUNTIME`` is set. The
process gets its own session so that a timeout, Ctrl-C or ``delete()`` stops the whole
process tree; the directory is removed by ``delete()`` (and at interpreter exit, unless
the handle was :meth:`~LocalHandle.detach`-ed).

The job's output, result and exit code go to files in its *job directory* (under the
user cache dir, see ``fairing.environment.Environment.jobs_dir``), not to a pipe: so the job survives
the process that started it when detached, and another process can follow its log and
read its result (:meth:`LocalHandle.reattach`). The files the job writes to its outputs
(see :mod:`fairing.runtime.outputs`) are copied to ``outputs/`` there. The result's key (see
:mod:`fairing.runtime.result`) is kept there too, readable by its owner only. A ``/bin/sh`` shim records the exit code
because only the parent of a process can learn it from the kernel.

A SIGTERM to the process that started jobs is handled as Ctrl-C is: the jobs it owns (not
detached), a map's running indexes included, are stopped and their directories removed,
then the process ends by SIGTERM as it would have. The handler is installed (from the main
thread) when a ``@train`` function or a ``TrainJob`` is made and when a job starts, only where
SIGTERM has its default disposition: a handler of the program's own is left alone. A second
SIGTERM, or one that lands during a ``delete()`` (after Ctrl-C, say) or a job's start-up, does
not cut the cleanup short.

A line a job prints longer than 64 KiB reaches events and memory cut into 64 KiB lines
(:class:`~fairing.handle.LineSplitter`), as ``logs()`` gives it; the job's log file, and a log
saved with ``keep_logs``, keep it whole.

A map's indexes share one copy of fairing's files and the payload (``.fairing/``, which holds
every input of the map): each index's working directory links to a read-only copy made once,
so a map of 200 inputs of 20 KB takes 200 small directories, not 200 copies of 4 MB.

It stays one module past 450 lines because a job's process, its files and its map of
indices share the same life cycle code (start, follow, stop, clean up).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional

from .._options import checks_options
from .._sigterm import _Pending, _handle_sigterm, _own, _remove_dirs
from ..artifacts import LocalDir
from ..errors import ConfigurationError, DeployError, JobTimeoutError, ResultError
from ..events import EventCallback, emitter
from ..handle import HasOutputs, JobStatus, LineSplitter, LogBuffer, publish_lines
from ..resources import Resources
from ..results import outcome, read_envelope
from ..runtime import PACKAGE, RUNTIME_DIR
from ..runtime.result import KEY_FILE_ENV, new_key

__all__ = ["LocalDeployer", "LocalHandle", "LocalMapHandle", "recorded_status", "process_start_time"]

LOG_FILE, RESULT_FILE, EXIT_FILE, KEY_FILE, OUTPUTS_DIR = "log", "result", "exit", "key", "outputs"
# $0 is the exit-code file; the job's own exit code is kept (written atomically, then returned).
_EXIT_SHIM = '"$@"; code=$?; echo "$code" > "$0.tmp" && mv "$0.tmp" "$0"; exit "$code"'


def _open_regular(path: "os.PathLike | str") -> Any:
    """``path`` opened for reading in binary, when it is a regular file: never through a link,
    never a FIFO or a device (a job directory's files may have been replaced: a FIFO would
    block the open, ``/dev/zero`` never end a read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def _read_small(path: "os.PathLike | str", limit: int = 4096) -> str:
    """The text of a small regular file of the job's (its exit code, its key); ValueError when larger."""
    with _open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data.decode("utf-8")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): trust kill()
        return True


def process_start_time(pid: int) -> Optional[int]:
    """When ``pid`` started (field 22 of ``/proc/<pid>/stat``: clock ticks after boot), or
    None: no such process, or no ``/proc`` (macOS). A job's record keeps it, so that a pid
    reused by another process is never taken for the job's."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _still_the_job(pid: int, started: Optional[int], job_dir: Optional[Path] = None) -> bool:
    """Whether ``pid`` (the job's process group leader) may be looked at and signalled as the
    job's: it is the recorded process (same start time), or no process has that pid any more
    (then only the job's own leftover group can hold that id: Linux reuses no pid that is
    still a process group's). A record that did not say when its process started, on a
    system that says when a process started (``/proc``, where fairing always records it): a
    live pid is someone else's (the record was cut or planted); without ``/proc``, a live pid
    after the job's exit file was written is someone else's."""
    now = process_start_time(pid)
    if now is not None:
        return started is not None and now == started
    if os.path.exists("/proc/self/stat"):
        return True  # no such process: only the job's own leftover group can hold that id
    return job_dir is None or not (Path(job_dir) / EXIT_FILE).exists()


def _recorded_exit(job_dir: Path, pid: int, started: Optional[int] = None) -> "tuple[bool, Optional[int]]":
    """(ended, exit code) of a job another process started: the exit file, else whether it runs.
    The code is None when the job was killed before it could say."""
    exit_file = Path(job_dir) / EXIT_FILE
    for attempt in range(2):  # it may end between the two looks
        try:
            return True, int(_read_small(exit_file))
        except (OSError, ValueError):
            pass
        if attempt == 0 and _alive(pid) and _still_the_job(pid, started):
            return False, None
    return True, None


def _status(ended: bool, code: Optional[int]) -> JobStatus:
    if not ended:
        return JobStatus("Running")
    if code is None or code < 0:
        return JobStatus("Failed", code, "stopped by a signal")
    return JobStatus("Succeeded" if code == 0 else "Failed", code)


def recorded_status(job_dir: Path, pid: int, started: Optional[int] = None) -> JobStatus:
    """The status of a local job from its job directory, pid and the pid's start time, in any process."""
    return _status(*_recorded_exit(job_dir, pid, started))


def _group_alive(pgid: int, proc: Optional[subprocess.Popen]) -> bool:
    """True while any process of the job's group runs: the shell shim ends first, the job
    (a server shutting down gracefully, its own children) may not."""
    if proc is not None:
        proc.poll()  # reap our own child, so that its zombie does not keep the group
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int, proc: Optional[subprocess.Popen], grace: float = 3.0) -> None:
    """SIGTERM the job's process group, then SIGKILL whatever is left after ``grace`` s;
    return once the whole group is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _group_alive(pgid, proc):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while _group_alive(pgid, proc) and time.monotonic() < end:
            time.sleep(0.05)


def _cleanup(proc: Optional[subprocess.Popen], pid: int, workdir: str, job_dir: str,
             started: Optional[int] = None) -> None:
    if proc is not None or _still_the_job(pid, started, Path(job_dir)):
        _kill_group(pid, proc, grace=0.5)
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(job_dir, ignore_errors=True)


def _share_runtime(context: Any, directory: str) -> None:
    """Lay out the context's ``.fairing/`` files (fairing, the runtime, the payload) once, read-only,
    for a map's indexes to link to."""
    from dataclasses import replace

    replace(context, files={rel: src for rel, src in context.files.items() if _is_shared(rel)}).materialize(
        Path(directory))
    for base, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o555)


def _is_shared(rel: str) -> bool:
    return rel.startswith(RUNTIME_DIR + "/")


def _lay_out(context: Any, workdir: str, shared: Optional[str]) -> None:
    """The context's files under ``workdir``; with ``shared``, its ``.fairing/`` files as links there."""
    if shared is None:
        context.materialize(Path(workdir))
        return
    from dataclasses import replace

    replace(context, files={rel: src for rel, src in context.files.items() if not _is_shared(rel)}).materialize(
        Path(workdir))
    for rel in context.files:
        if _is_shared(rel):
            target = Path(workdir, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.join(shared, rel), target)


def _with_source(emit: EventCallback, source: str) -> EventCallback:
    """``emit`` with the job's lines marked as coming from ``source`` (a map's ``index-3``, as a
    cluster map's pods are), so that lines of calls running side by side can be told apart."""
    if not source:
        return emit
    from ..events import LogLine

    def marked(event: Any) -> None:
        emit(LogLine(event.line, source) if isinstance(event, LogLine) and not event.source else event)

    return marked
def _limited(argv: list, resources: Resources) -> list:
    """``argv`` run with ``resources`` held as a process can be (see :mod:`fairing.resources`):
    the address space by ``ulimit -v`` (the job only, not fairing's exit shim), the CPUs by
    affinity (``taskset``; without it, all CPUs)."""
    if resources.memory_bytes is not None:
        argv = ["/bin/sh", "-c", 'ulimit -v "$0" && exec "$@"', str(resources.memory_bytes // 1024), *argv]
    cpus = resources.local_cpus(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    taskset = shutil.which("taskset")
    if cpus is not None and taskset:
        argv = [taskset, "-c", ",".join(str(c) for c in sorted(cpus)), *argv]
    return argv


class LocalHandle(HasOutputs):
    """A job running as a local process. See :class:`fairing.handle.Handle`.

    Made by :class:`LocalDeployer`, or by :meth:`reattach` in another process.
    """

    def __init__(self, image: Optional[LocalDir], *, name: str, env: dict, on_event: Optional[EventCallback],
                 job_dir: Optional[Path] = None, _attach: Optional[dict] = None,
                 _shared: Optional[str] = None, source: str = "", resources: Optional[Resources] = None) -> None:
        self.name = name
        self._resources = resources or Resources()
        self._emit = _with_source(emitter(on_event), source)
        self._proc: Optional[subprocess.Popen] = None
        self._stop = threading.Event()
        if _attach is not None:
            self.job_dir = Path(_attach["job_dir"])
            self.workdir = _attach["workdir"]
            self.pid = int(_attach["pid"])
            self.started = _attach.get("started")
        else:
            assert image is not None
            if job_dir is None:
                from ..environment import current

                job_dir = current().jobs_dir / name
            self.job_dir = Path(job_dir)
            self._start(image, env, _shared)
        self.log_file = self.job_dir / LOG_FILE
        self._result_file = self.job_dir / RESULT_FILE
        if _attach is not None:
            try:
                self._result_key = bytes.fromhex(_read_small(self.job_dir / KEY_FILE).strip())
            except (OSError, ValueError):
                self._result_key = b""  # gone or spoilt: result() refuses to read anything (ResultError)
            if len(self._result_key) != len(new_key()):  # cut short or grown: not the key the job signed with
                self._result_key = b""
        self._cleanup_args = (self._proc, self.pid, self.workdir, str(self.job_dir), self.started)
        # Only the process that started the job stops it at exit (unless detached).
        self._finalizer = weakref.finalize(self, _cleanup, *self._cleanup_args)
        if _attach is not None:
            self._finalizer.detach()
        else:
            _own(self._finalizer, self.pid)
            self._starting.__exit__()
        self._log = LogBuffer()
        self._reader = threading.Thread(target=self._read, name=f"fairing-logs-{name}", daemon=True)
        self._reader.start()

    def _start(self, image: LocalDir, env: dict, shared: Optional[str] = None) -> None:
        _handle_sigterm()  # before anything exists that a SIGTERM could leave behind
        try:
            self.job_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ConfigurationError(f"A local job named {self.name!r} exists already ({self.job_dir}). "
                                     "Choose another name, or delete it: fairing delete " + self.name) from None
        # until the job is owned (see __init__), a SIGTERM removes what exists of it
        self._starting = _Pending(_remove_dirs, str(self.job_dir))
        self.workdir = tempfile.mkdtemp(prefix=f"fairing-local-{self.name}-")
        self._starting.update(_remove_dirs, self.workdir, str(self.job_dir))
        try:
            _lay_out(image.context, self.workdir, shared)
            self._result_key = new_key()
            fd = os.open(self.job_dir / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:  # for another process that attaches: the owner's eyes only
                fh.write(self._result_key.hex())
            run_env = {**os.environ, **image.context.env, **env, "FAIRING_RUNTIME": "1",
                       "FAIRING_RESULT_FILE": str(self.job_dir / RESULT_FILE),
                       KEY_FILE_ENV: str(self.job_dir / KEY_FILE),  # a path: no secret in the environment
                       "FAIRING_OUTPUTS_TARGET": str(self.job_dir / OUTPUTS_DIR)}
            run_env.pop("FAIRING_OUTPUTS", None)  # the runtime makes the job's own
            paths = [os.path.join(self.workdir, RUNTIME_DIR)]
            if image.site_dir:
                paths.append(str(image.site_dir))
            if os.environ.get("PYTHONPATH"):
                paths.append(os.environ["PYTHONPATH"])
            run_env["PYTHONPATH"] = os.pathsep.join(paths)
            argv = list(image.context.entrypoint)
            if argv[:3] == ["python3", "-m", PACKAGE]:
                argv[0] = image.python
            argv = _limited(argv, self._resources)
            with open(self.job_dir / LOG_FILE, "wb") as out:
                self._proc = subprocess.Popen(
                    ["/bin/sh", "-c", _EXIT_SHIM, str(self.job_dir / EXIT_FILE), *argv],
                    cwd=self.workdir, env=run_env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            self.pid = self._proc.pid
            self.started = process_start_time(self.pid)
            self._starting.update(_cleanup, self._proc, self.pid, self.workdir, str(self.job_dir), self.started,
                                  pgid=self.pid)
        except OSError as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            shutil.rmtree(self.job_dir, ignore_errors=True)
            self._starting.__exit__()
            raise DeployError(f"Could not start the local job {self.name}: {exc}. Check the interpreter path.") from exc
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            shutil.rmtree(self.job_dir, ignore_errors=True)
            self._starting.__exit__()
            raise

    @classmethod
    def reattach(cls, *, name: str, job_dir: os.PathLike, workdir: str, pid: int, started: Optional[int] = None,
                 on_event: Optional[EventCallback] = None) -> "LocalHandle":
        """A handle on a job another process started (its log is followed from the start).
        ``started``: the pid's start time when the job started (:func:`process_start_time`);
        the pid is signalled only while it is still that process."""
        return cls(None, name=name, env={}, on_event=on_event,
                   _attach={"job_dir": str(job_dir), "workdir": workdir, "pid": pid, "started": started})

    def attach_info(self) -> dict:
        """What :meth:`reattach` needs, for the job's record."""
        return {"job_dir": str(self.job_dir), "workdir": self.workdir, "pid": self.pid, "started": self.started}

    def detach(self) -> None:
        """Let the job outlive this process (it is no longer stopped at interpreter exit)."""
        self._finalizer.detach()

    # -- state -----------------------------------------------------------------------------

    def _exit_code(self) -> "tuple[bool, Optional[int]]":
        if self._proc is not None:
            code = self._proc.poll()
            return (False, None) if code is None else (True, code)
        return _recorded_exit(self.job_dir, self.pid, self.started)

    def _read(self) -> None:
        # The job writes its output to a file (so another process can follow it too); it is
        # read as it grows and cut into lines as a terminal shows them (\r redraws included).
        try:
            fh = _open_regular(self.log_file)
        except OSError:  # deleted before we looked
            self._log.close()
            return
        splitter = LineSplitter()
        with fh:
            while not self._stop.is_set():
                ended = self._exit_code()[0]  # looked at before reading: nothing written before the end is missed
                chunk = fh.read(65536)
                if chunk:
                    publish_lines(splitter.feed(chunk), self._log, self._emit)
                    continue
                if ended:
                    break
                self._stop.wait(0.05)
        publish_lines(splitter.close(), self._log, self._emit)
        self._log.close()


    def logs(self, follow: bool = True) -> Iterator[str]:
        """Every line the job printed, from its log file (memory keeps only a tail, see
        :class:`~fairing.handle.LogBuffer`); from that tail once the job was deleted."""
        try:
            fh = _open_regular(self.log_file)
        except OSError:
            return self._log.follow(follow)
        return self._file_lines(fh, follow)

    def _file_lines(self, fh: Any, follow: bool) -> Iterator[str]:
        splitter = LineSplitter()
        with fh:
            while True:
                ended = not follow or self._stop.is_set() or self._exit_code()[0]  # before reading: nothing missed
                chunk = fh.read(65536)
                if chunk:
                    yield from (text for text, partial in splitter.feed(chunk) if not partial)
                    continue
                if ended:
                    break
                self._stop.wait(0.05)
        if follow or self._exit_code()[0]:  # a line still being written is not handed out as whole
            yield from (text for text, _partial in splitter.close())

    def _tail(self, n: int = 30) -> str:
        """The job's last ``n`` lines: from the end of its log file (the reader may still be
        catching up with a job that printed millions), else from memory."""
        try:
            with _open_regular(self.log_file) as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - (1 << 16)))
                data = fh.read()
        except OSError:
            return self._log.tail(n)
        splitter = LineSplitter()
        lines = [text for text, partial in splitter.feed(data) if not partial] + \
            [text for text, _p in splitter.close()]
        if size > len(data) and lines:
            lines = lines[1:]  # the first may be cut
        return "\n".join(lines[-n:])

    def status(self) -> JobStatus:
        return _status(*self._exit_code())

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._exit_code()[0]:
                if deadline is not None and time.monotonic() > deadline:
                    self._stop_job()
                    self._reader.join(5)
                    raise JobTimeoutError(
                        f"The job {self.name} did not finish within {timeout:g} s and was stopped. "
                        "Raise the timeout, or make the job do less.",
                        job=self.name, logs_tail=self._tail(),
                    )
                if self._proc is not None:
                    try:
                        self._proc.wait(0.2)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.1)  # not our child: nothing to wait on but the exit file
        except KeyboardInterrupt:
            self.delete()
            raise
        self._reader.join(10)
        return self.status()

    def _stop_job(self) -> None:
        if self._proc is not None or _still_the_job(self.pid, self.started, self.job_dir):
            _kill_group(self.pid, self._proc)

    def result(self, timeout: Optional[float] = None) -> Any:
        status = self.wait(timeout)
        if not self._result_key:
            raise ResultError(
                f"The result of the job {self.name} cannot be read: its key ({self.job_dir / KEY_FILE}) is missing "
                "or unreadable, and a result is never read unauthenticated. The key is written when the job "
                "starts and removed with the job; run the job again (and leave its directory alone).",
                job=self.name, logs_tail=self._tail())
        try:
            with _open_regular(self._result_file) as fh:
                text = fh.read().decode("utf-8")
            envelope = read_envelope(text, self._result_key, job=self.name)
        except (OSError, ValueError):
            envelope = None
        if envelope and envelope.get("outputs"):
            from ..outputs import Outputs

            self._outputs = Outputs(envelope["outputs"])
        return outcome(envelope, job=self.name, exit_code=status.exit_code, logs_tail=self._tail())

    def delete(self) -> None:
        """Stop the job and remove its working directory and job directory. Idempotent."""
        with _Pending(_cleanup, *self._cleanup_args, pgid=self.pid):  # a SIGTERM meanwhile finishes it
            self._finalizer.detach()
            self._stop.set()
            self._reader.join(5)
            _cleanup(*self._cleanup_args)


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class LocalDeployer:
    """Runs a :class:`~fairing.artifacts.LocalDir` as a subprocess; ``env`` is added to every job's environment.

    ``cpu``, ``memory``, ``gpus`` (checked now; :mod:`fairing.resources` says how far a
    process can be held to them): the job runs on ``ceil(cpu)`` CPUs, with an address space
    of ``memory`` bytes, seeing the first ``gpus`` GPUs (``CUDA_VISIBLE_DEVICES``).
    """

    accepts = (LocalDir,)

    def __init__(self, *, env: Optional[dict] = None, cpu: Any = None, memory: Any = None, gpus: Any = None) -> None:
        self.env = dict(env or {})
        self.resources = Resources.of(cpu, memory, gpus)
        if self.resources.gpus is not None:
            self.env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(self.resources.gpus)))

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None,
               count: Optional[int] = None, parallelism: int = 1) -> Any:
        """Run ``image`` in a process, or ``count`` times (a map: :class:`LocalMapHandle`)."""
        if count is not None:
            name = name or f"map-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
            return LocalMapHandle(self, image, name=name, count=count, parallelism=parallelism, on_event=on_event)
        if not isinstance(image, LocalDir):
            raise ConfigurationError(
                f"The local deployer runs what the local builder makes (a LocalDir), not {type(image).__name__}. "
                "Use set_backend('local') for both, or the 'docker' or 'kubernetes' backend for images."
            )
        name = name or f"job-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return LocalHandle(image, name=name, env=self.env, on_event=on_event, resources=self.resources)


class LocalMapHandle:
    """A map run locally: ``count`` processes, at most ``parallelism`` at once (a process
    pool with an Indexed Job's semantics). Process ``i`` is a :class:`LocalHandle` named
    ``<name>-<i>`` with ``JOB_COMPLETION_INDEX=i``; every index runs even when some fail.
    A timeout or Ctrl-C stops and removes them all."""

    def __init__(self, deployer: LocalDeployer, image: Any, *, name: str, count: int, parallelism: int,
                 on_event: Optional[EventCallback]) -> None:
        self.name, self.count, self.parallelism = name, count, parallelism
        self._deployer, self._image, self._on_event = deployer, image, on_event
        self._handles: dict[int, LocalHandle] = {}
        self._next = 0
        if not isinstance(image, LocalDir):
            raise ConfigurationError(f"The local deployer runs what the local builder makes (a LocalDir), not "
                                     f"{type(image).__name__}. Use set_backend('local') for both.")
        # fairing, the runtime and the payload (every input of the map): one read-only copy for all indexes
        self._shared = tempfile.mkdtemp(prefix=f"fairing-local-{name}-shared-")
        self._remove_shared = weakref.finalize(self, shutil.rmtree, self._shared, True)
        try:
            _own(self._remove_shared, None)  # before the copy, which takes a while for a large payload
            _share_runtime(image.context, self._shared)
            self._start_more()
        except BaseException:
            self.delete()
            raise

    def _start_more(self) -> None:
        running = sum(1 for h in self._handles.values() if not h.status().done)
        while self._next < self.count and running < self.parallelism:
            i = self._next
            env = {**self._deployer.env, "JOB_COMPLETION_INDEX": str(i)}
            self._handles[i] = LocalHandle(self._image, name=f"{self.name}-{i}", env=env, on_event=self._on_event,
                                           _shared=self._shared, source=f"index-{i}",
                                           resources=self._deployer.resources)
            self._next += 1
            running += 1

    def _done(self) -> bool:
        return self._next >= self.count and all(h.status().done for h in self._handles.values())

    def status(self) -> JobStatus:
        if not self._done():
            return JobStatus("Running")
        failed = any(h.status().phase == "Failed" for h in self._handles.values())
        return JobStatus("Failed" if failed else "Succeeded")

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self._start_more()
                if self._done():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.delete()
                    raise JobTimeoutError(f"The map {self.name} did not finish within {timeout:g} s and was stopped. "
                                          "Raise the timeout, or make each call do less.", job=self.name)
                time.sleep(0.05)
            for handle in self._handles.values():
                handle.wait()  # its log is read to the end
        except KeyboardInterrupt:
            self.delete()
            raise
        return self.status()

    def index_outcomes(self, timeout: Optional[float] = None) -> list:
        """Each index's ``(True, value)`` or ``(False, exception)``, in order."""
        self.wait(timeout)
        found = []
        for i in range(self.count):
            try:
                found.append((True, self._handles[i].result()))
            except Exception as exc:
                found.append((False, exc))
        return found

    def index_outputs(self, i: int) -> Any:
        return self._handles[i].outputs_artifact()

    def tail(self, source: Optional[str] = None) -> str:
        """The last lines of index ``source`` (``"index-3"``), or of every index."""
        if source is not None:
            handle = self._handles.get(int(source.rsplit("-", 1)[-1]))
            return handle._tail() if handle is not None else ""
        return "\n".join(h._tail() for _i, h in sorted(self._handles.items()))

    def logs(self, follow: bool = True) -> Iterator[str]:
        for i in range(self.count):
            while i not in self._handles:  # not started yet
                self._start_more()
                time.sleep(0.05)
            for line in self._handles[i].logs(follow):
                yield f"[index-{i}] {line}"

    def result(self, timeout: Optional[float] = None) -> Any:
        from ..results import map_results

        return map_results(self, self.index_outcomes(timeout))

    def delete(self) -> None:
        self._next = self.count  # start no more
        with _Pending(_remove_dirs, self._shared):  # a SIGTERM meanwhile finishes it
            for handle in self._handles.values():
                handle.delete()
            self._remove_shared()  # once no index runs
