"""Local deployer: runs a LocalDir (what the local builder makes) in a subprocess, as a container would run the image.

The context's files are laid out in a fresh temporary directory that is the working
directory, the entrypoint and env are the image's, and ``FAIRING_RUNTIME`` is set. The
process gets its own session so that a timeout, Ctrl-C or ``delete()`` stops the whole
process tree; the directory is removed by ``delete()`` (and at interpreter exit).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional

from .._registry import checks_options
from ..artifacts import LocalDir
from ..errors import ConfigurationError, DeployError, JobTimeoutError
from ..events import EventCallback, LogLine, emitter
from ..handle import JobStatus, LogBuffer
from ..results import outcome
from ..runtime import PACKAGE, RUNTIME_DIR
from ..runtime.result import KEY_ENV, decode, new_key

__all__ = ["LocalDeployer", "LocalHandle"]



def _kill_tree(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _cleanup(proc: subprocess.Popen, workdir: str) -> None:
    _kill_tree(proc, grace=0.5)
    shutil.rmtree(workdir, ignore_errors=True)


class LocalHandle:
    """A job running as a local process. See :class:`fairing.handle.Handle`."""

    def __init__(self, image: LocalDir, *, name: str, env: dict, on_event: Optional[EventCallback]) -> None:
        self.name = name
        self._emit = emitter(on_event)
        self.workdir = tempfile.mkdtemp(prefix=f"fairing-local-{name}-")
        try:
            image.context.materialize(Path(self.workdir))
            self._result_file = os.path.join(self.workdir, RUNTIME_DIR, "result")
            self._result_key = new_key()
            run_env = {**os.environ, **image.context.env, **env, "FAIRING_RUNTIME": "1",
                       "FAIRING_RESULT_FILE": self._result_file, KEY_ENV: self._result_key.hex()}
            paths = [os.path.join(self.workdir, RUNTIME_DIR)]
            if image.site_dir:
                paths.append(str(image.site_dir))
            if os.environ.get("PYTHONPATH"):
                paths.append(os.environ["PYTHONPATH"])
            run_env["PYTHONPATH"] = os.pathsep.join(paths)
            argv = list(image.context.entrypoint)
            if argv[:3] == ["python3", "-m", PACKAGE]:
                argv[0] = image.python
            self._proc = subprocess.Popen(
                argv, cwd=self.workdir, env=run_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise DeployError(f"Could not start the local job {name}: {exc}. Check the interpreter path.") from exc
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _cleanup, self._proc, self.workdir)
        self._log = LogBuffer()
        self._reader = threading.Thread(target=self._read, name=f"fairing-logs-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log.add(line)
            self._emit(LogLine(line))
        self._log.close()

    def logs(self, follow: bool = True) -> Iterator[str]:
        return self._log.follow(follow)

    def _tail(self) -> str:
        return self._log.tail()

    def status(self) -> JobStatus:
        code = self._proc.poll()
        if code is None:
            return JobStatus("Running")
        return JobStatus("Succeeded" if code == 0 else "Failed", code)

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(self._proc)
            self._reader.join(5)
            raise JobTimeoutError(
                f"The job {self.name} did not finish within {timeout:g} s and was stopped. "
                "Raise the timeout, or make the job do less.",
                job=self.name, logs_tail=self._tail(),
            ) from None
        except KeyboardInterrupt:
            self.delete()
            raise
        self._reader.join(10)
        return self.status()

    def result(self, timeout: Optional[float] = None) -> Any:
        status = self.wait(timeout)
        try:
            with open(self._result_file) as fh:
                envelope = decode(fh.read(), self._result_key)
        except (OSError, ValueError):
            envelope = None
        return outcome(envelope, job=self.name, exit_code=status.exit_code, logs_tail=self._tail())

    def delete(self) -> None:
        self._finalizer()
        self._reader.join(5)


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class LocalDeployer:
    """Runs a :class:`~fairing.artifacts.LocalDir` as a subprocess; ``env`` is added to every job's environment."""

    accepts = (LocalDir,)

    def __init__(self, *, env: Optional[dict] = None) -> None:
        self.env = dict(env or {})

    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None) -> LocalHandle:
        if not isinstance(image, LocalDir):
            raise ConfigurationError(
                f"The local deployer runs what the local builder makes (a LocalDir), not {type(image).__name__}. "
                "Use set_backend('local') for both, or the 'docker' or 'kubernetes' backend for images."
            )
        name = name or f"job-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return LocalHandle(image, name=name, env=self.env, on_event=on_event)
