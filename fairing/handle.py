"""The Handle protocol (what a deployer returns for a running job), and the log buffer and
line splitter handles share."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, runtime_checkable

from .events import EventCallback, LogLine

__all__ = ["Handle", "JobStatus", "Hooks", "LogBuffer", "LineSplitter", "publish_lines"]


@dataclass(frozen=True)
class JobStatus:
    """``phase`` is one of 'Pending', 'Queued' (Kueue holds it: ``message`` says where and
    why), 'Running', 'Succeeded', 'Failed'."""

    phase: str
    exit_code: Optional[int] = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@runtime_checkable
class Handle(Protocol):
    name: str

    def logs(self, follow: bool = True) -> Iterator[str]:
        """Lines of output; with ``follow``, until the job ends."""

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        """Block until the job ends; on timeout stop it and raise JobTimeoutError."""

    def status(self) -> JobStatus:
        ...

    def result(self, timeout: Optional[float] = None) -> Any:
        """Wait, then return the job's value or re-raise its exception."""

    def delete(self) -> None:
        """Stop the job if it runs and remove everything it left. Idempotent."""

    # Not part of the protocol (endpoints and Docker containers lack them), but the local
    # and Kubernetes job handles have: ``outputs(dest=".")`` downloads the files the job
    # wrote (see fairing.outputs) and ``outputs_artifact()`` names them without a copy;
    # a map's handle (``.map_submit``) has ``index_outcomes()``; a TFJob's or PyTorchJob's
    # ``results()`` gives every replica's value.


class Hooks:
    """Callbacks the facade gives a handle, so that a stage never imports what is above it:
    ``handle.on("delete", fn)`` has ``fn(handle)`` called once the handle's ``delete()`` has
    removed the job (job records use it to forget the job)."""

    def on(self, event: str, fn: Callable[[Any], None]) -> Any:
        hooks = self.__dict__.setdefault("_hooks", {})
        if fn not in hooks.setdefault(event, []):
            hooks[event].append(fn)
        return self

    def run_hooks(self, event: str) -> None:
        for fn in list(self.__dict__.get("_hooks", {}).get(event, ())):
            fn(self)


class HasOutputs:
    """``outputs()`` and ``outputs_artifact()`` for a job handle whose ``result()`` sets
    ``_outputs`` (a :class:`fairing.outputs.Outputs`) when the job wrote files."""

    _outputs: Any = None

    def outputs(self, dest: Any = ".") -> dict:
        """Wait, then copy the files the job wrote under ``dest``; ``{relative path: local path}``
        (empty when it wrote none)."""
        artifact = self.outputs_artifact()
        return artifact.download(dest) if artifact is not None else {}

    def outputs_artifact(self) -> Any:
        """The job's outputs as a :class:`fairing.outputs.Outputs` (None when it wrote none),
        without a copy; waits for the job and reads its result (raising what it raised)."""
        if self._outputs is None:
            self.result()  # type: ignore[attr-defined]
        return self._outputs


class LogBuffer:
    """The last lines a job printed, kept for ``logs()`` and error messages, shared by the handles.

    Writers (one thread per stream) call :meth:`add`; readers iterate :meth:`follow`,
    which blocks for new lines until :meth:`close` is called or ``done()`` says so.

    Only a bounded tail is kept in memory: the last ``max_lines`` lines, and no more than
    ``max_chars`` characters of them [10,000 and 8 Mi], so a job that prints millions of lines
    costs the submitter a few MB. The whole log is where the job wrote it (a local job's log
    file, which ``keep_logs`` saves; the container's or pod's log); a reader that falls
    further behind than the tail is told how many lines it missed (``dropped`` counts them all).
    """

    MAX_LINES = 10_000
    MAX_CHARS = 8 << 20

    def __init__(self, max_lines: Optional[int] = None, max_chars: Optional[int] = None) -> None:
        self.max_lines = max(1, max_lines or self.MAX_LINES)
        self.max_chars = max(1, max_chars or self.MAX_CHARS)
        self._lines: "deque[tuple[str, str]]" = deque()
        self._first = 0  # the number of the oldest line kept (lines are numbered from 0)
        self._chars = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def dropped(self) -> int:
        """How many lines were let go to keep the tail bounded."""
        return self._first

    def add(self, line: str, source: str = "") -> None:
        with self._cond:
            self._lines.append((source, line))
            self._chars += len(line)
            while len(self._lines) > self.max_lines or (self._chars > self.max_chars and len(self._lines) > 1):
                self._chars -= len(self._lines.popleft()[1])
                self._first += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def follow(self, follow: bool = True, done: Optional[Callable[[], bool]] = None) -> Iterator[str]:
        """Lines as ``[source] line`` (or ``line`` without a source); with ``follow``, until the end."""
        finished = done or (lambda: self._closed)
        i = 0  # the number of the next line to hand out
        while True:
            with self._cond:
                while follow and i >= self._first + len(self._lines) and not finished():
                    self._cond.wait(0.5)
                missed = max(0, self._first - i)
                i += missed
                batch = list(islice(self._lines, i - self._first, None))
                over = not follow or finished()
                end = self._first + len(self._lines)
            if missed:
                yield f"[fairing: {missed} earlier lines are not kept in memory; the job's own log has them]"
            for source, line in batch:
                yield f"[{source}] {line}" if source else line
            i += len(batch)
            if over and i >= end:
                return

    def tail(self, n: int = 30, source: Optional[str] = None) -> str:
        with self._cond:
            if source is None:
                lines = [line for _s, line in islice(self._lines, max(0, len(self._lines) - n), None)]
            else:
                lines = [line for s, line in self._lines if s == source][-n:]
        return "\n".join(lines[-n:])


class LineSplitter:
    """Cuts a job's output stream into lines as a terminal shows them.

    :meth:`feed` returns ``(text, partial)`` pairs: ``partial`` is True for a line still
    being drawn (a progress bar redrawn with ``\\r``, or text not ended yet), sent again
    each time it changes; the line's final text comes once, with ``partial`` False.
    Deployers send partial lines as ``LogLine(text + "\\r")`` and keep only whole lines.
    """

    # a lone "\r" at the end may be the first half of "\r\n": wait for the next chunk
    _ENDS = re.compile(rb"(\r\n|\n|\r(?!$))")
    #: A line longer than this many bytes is cut (at a UTF-8 boundary) into lines of at most this
    #: length, as container runtimes cut theirs: a job that prints 100 MB without a newline
    #: (binary data, a giant repr) costs a bounded amount of memory and time per chunk, not a
    #: copy and a scan of everything pending for each chunk read.
    MAX_LINE = 64 << 10

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bool]]:
        *done, self._pending = self._ENDS.split(self._pending + chunk)
        out = [(text.decode("utf-8", "replace"), end == b"\r") for text, end in zip(done[::2], done[1::2])
               if text or end != b"\r"]
        while len(self._pending) > self.MAX_LINE:
            cut = self.MAX_LINE
            while cut > self.MAX_LINE - 3 and self._pending[cut] & 0xC0 == 0x80:  # not inside a character
                cut -= 1
            out.append((self._pending[:cut].decode("utf-8", "replace"), False))
            self._pending = self._pending[cut:]
        tail = self._pending.rstrip(b"\r")
        if tail:
            out.append((tail.decode("utf-8", "replace"), True))
        return out

    def close(self) -> list[tuple[str, bool]]:
        """What is left when the stream ends, as a whole line."""
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        return [(rest.decode("utf-8", "replace"), False)] if rest else []


def publish_lines(lines: Iterable[tuple[str, bool]], log: LogBuffer, emit: EventCallback, source: str = "") -> None:
    """:class:`LineSplitter` output to a handle: whole lines into ``log`` and out as
    :class:`~fairing.events.LogLine`; partial ones only out, ending in ``\\r``."""
    for text, partial in lines:
        if not partial:
            log.add(text, source)
        emit(LogLine(text + "\r" if partial else text, source))
