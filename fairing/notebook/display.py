"""Rendering fairing's events: in a Jupyter cell (status line, progress bars, live logs,
error box), or as text lines on a terminal.

In Jupyter every part is an IPython display with a ``display_id``, created in the cell
that submitted the job and updated in place afterwards, so the job's log keeps
streaming into *that* cell even when ``.submit()`` returned and other cells run. Each
display carries ``text/html`` for JupyterLab, Notebook 7 and VS Code, and a
``text/plain`` twin that nbconvert, papermill and plain-text front ends keep. Progress
bars are HTML ``<progress>`` elements rather than tqdm's notebook bars: those are
ipywidgets, which need a live widget manager and leave only an unreadable widget repr
in a papermill or nbconvert output.

Log lines are HTML-escaped; each replica (``[worker-1]``) gets its own colour; past
:attr:`NotebookRenderer.max_lines` the earlier lines fold into a collapsed
``<details>``. A log line ending in ``\\r`` is a progress line still being drawn (a tqdm
bar in the job): the next line from the same replica replaces it, as on a terminal.
(Local jobs send those as they are drawn; Docker's and Kubernetes' logs are line-based
and deliver a redrawn line once it ends, and then only its final text shows.)
"""

from __future__ import annotations

import html
import sys
import threading
import time
from typing import Optional

from ..events import Event, LogLine, Progress, Stage, TrialUpdate

__all__ = ["NotebookRenderer", "TextRenderer", "in_notebook", "default_renderer"]

_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e")
_MARKS = {"started": "…", "finished": "✓", "failed": "✗", "skipped": "–"}


def _bar(done: int, total: Optional[int], width: int = 30) -> str:
    if not total:
        return f"{done:,} B"
    filled = int(width * min(done, total) / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%"


def _terminal_text(line: str) -> str:
    """What a terminal shows of a line with carriage returns: the text after the last one."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


class TextRenderer:
    """Writes events as text lines to a stream (the CLI uses it with stderr/stdout)."""

    shows_job_output = True  # LogLines go to log_stream (fairing.output writes none again)

    def __init__(self, stream=None, log_stream=None) -> None:
        self.stream = stream or sys.stderr
        self.log_stream = log_stream or sys.stdout

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogLine):
            prefix = f"[{event.source}] " if event.source else ""
            end = "\r" if event.line.endswith("\r") else "\n"
            self.log_stream.write(f"{prefix}{_terminal_text(event.line)}{end}")
            self.log_stream.flush()
        elif isinstance(event, Stage):
            detail = f" ({event.detail})" if event.detail else ""
            self.stream.write(f"fairing: {event.name} {event.status}{detail}\n")
            self.stream.flush()
        elif isinstance(event, TrialUpdate):
            value = "" if event.value is None else f" = {event.value:g}"
            self.stream.write(f"fairing: trial {event.trial} {event.state} {event.params}{value}\n")
            self.stream.flush()
        elif isinstance(event, Progress) and (event.total is None or event.done >= event.total or event.note):
            note = f" {event.note}" if event.note else ""
            self.stream.write(f"fairing: {event.task} {_bar(event.done, event.total)}{note}\n")
            self.stream.flush()


class _Live:
    """One display in the cell, updated in place (from any thread)."""

    def __init__(self, bundle: dict) -> None:
        from IPython.display import display

        self._handle = display(bundle, raw=True, display_id=True)

    def update(self, bundle: dict) -> None:
        self._handle.update(bundle, raw=True)


class NotebookRenderer:
    """In a notebook: a status line, a bar per upload, the job's log and an error box.

    ``max_lines`` log lines stay visible (earlier ones fold away, up to ``keep_lines``);
    log updates are sent at most every ``interval`` seconds, and always when the cell ends.
    """

    max_lines = 200
    keep_lines = 5000
    shows_job_output = True  # the job's log is a display of the cell (fairing.output writes none again)

    def __init__(self, *, interval: float = 0.2) -> None:
        self.interval = interval
        self._lock = threading.RLock()
        self._stages: dict[str, tuple[str, str]] = {}
        self._status: Optional[_Live] = None
        self._error: Optional[_Live] = None
        self._bars: dict[str, _Live] = {}
        self._log: Optional[_Live] = None
        self._lines: list[tuple[str, str]] = []
        self._dropped = 0
        self._partial: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._dirty = False
        self._sent = 0.0
        self._timer: Optional[threading.Timer] = None
        _install_error_box()

    # -- events -----------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._status is None:  # made on the first event, in the submitting cell
                self._status = _Live(self._status_bundle())
            if self._log is None and (isinstance(event, LogLine) or isinstance(event, Stage) and event.name == "deploy"):
                self._log = _Live({"text/plain": ""})  # below the upload bars, still in the submitting cell
            if isinstance(event, Stage):
                self._stage(event)
            elif isinstance(event, Progress):
                self._progress(event)
            elif isinstance(event, LogLine):
                self._line(event)

    def _stage(self, event: Stage) -> None:
        self._stages[event.name] = (event.status, event.detail)
        self._status.update(self._status_bundle())
        if event.status == "failed":
            _boxed.add(event.detail)  # the same error reaching the cell gets no second box
            bundle = _error_bundle(f"fairing: {event.name} failed", event.detail)
            if self._error is None:
                self._error = _Live(bundle)
            else:
                self._error.update(bundle)

    def _status_bundle(self) -> dict:
        parts = [(name, _MARKS.get(status, status), detail if status != "failed" else "")
                 for name, (status, detail) in self._stages.items()]
        text = "fairing: " + " · ".join(f"{n} {m}{' ' + d if d else ''}" for n, m, d in parts)
        rich = " · ".join(f"<b>{html.escape(n)}</b> {m}{' <small>' + html.escape(d) + '</small>' if d else ''}"
                          for n, m, d in parts)
        return {"text/plain": text, "text/html": f'<div class="fairing-status"><code>fairing</code> {rich}</div>'}

    def _progress(self, event: Progress) -> None:
        total = event.total or 0
        value = min(event.done, total) if total else 0
        note = f" {event.note}" if event.note else ""
        text = f"{event.task} {_bar(event.done, event.total)}{note}".rstrip()
        bar = f'<progress value="{value}" max="{total or 1}" style="width:20em"></progress>' if total else ""
        bundle = {"text/plain": text,
                  "text/html": f'<div class="fairing-progress" data-task="{html.escape(event.task)}" '
                               f'data-done="{int(bool(total) and event.done >= total or bool(event.note))}">'
                               f"<code>{html.escape(event.task)}</code> {bar} "
                               f"{html.escape(_bar(event.done, event.total).split('] ')[-1])}{html.escape(note)}</div>"}
        live = self._bars.get(event.task)
        if live is None:
            self._bars[event.task] = _Live(bundle)
        else:
            live.update(bundle)

    def _line(self, event: LogLine) -> None:
        if event.source not in self._sources:
            self._sources[event.source] = _COLOURS[len(self._sources) % len(_COLOURS)]
        text = _terminal_text(event.line)
        if event.line.endswith("\r"):
            self._partial[event.source] = text
        else:
            self._partial.pop(event.source, None)
            self._lines.append((event.source, text))
            if len(self._lines) > self.keep_lines:
                self._dropped += len(self._lines) - self.keep_lines
                del self._lines[: len(self._lines) - self.keep_lines]
        self._dirty = True
        if time.monotonic() - self._sent >= self.interval:
            self.flush()
        elif self._timer is None:
            self._timer = threading.Timer(self.interval, self.flush)
            self._timer.daemon = True
            self._timer.start()
            _flush_when_the_cell_ends(self)

    # -- the log display --------------------------------------------------------------

    def flush(self) -> None:
        """Send the log display its pending lines now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._dirty or self._log is None:
                return
            self._dirty = False
            self._sent = time.monotonic()
            self._log.update(self._log_bundle())

    def _log_bundle(self) -> dict:
        rows = self._lines + [(s, t) for s, t in self._partial.items()]
        shown, folded = rows[-self.max_lines:], rows[: -self.max_lines]
        plain = [f"[{s}] {t}" if s else t for s, t in shown]
        if folded or self._dropped:
            plain.insert(0, f"... {len(folded) + self._dropped} earlier lines ...")

        def pre(chunk):
            return "<pre style='margin:0'>" + "\n".join(
                (f"<span style='color:{self._sources[s]}'>[{html.escape(s)}]</span> " if s else "")
                + html.escape(t) for s, t in chunk) + "</pre>"

        rich = ""
        if folded or self._dropped:
            lost = f" ({self._dropped} older not kept; handle.logs() has every line)" if self._dropped else ""
            rich += f"<details><summary>{len(folded)} earlier lines{lost}</summary>{pre(folded)}</details>"
        rich += pre(shown)
        return {"text/plain": "\n".join(plain), "text/html": f'<div class="fairing-log">{rich}</div>'}


def _error_bundle(title: str, detail: str) -> dict:
    return {"text/plain": f"{title}\n{detail}",
            "text/html": '<div class="fairing-error" style="border-left:4px solid #d32f2f;background:#fdecea;'
                         f'padding:6px 10px;margin:4px 0"><b>{html.escape(title)}</b>'
                         f"<pre style='margin:4px 0 0;white-space:pre-wrap'>{html.escape(detail)}</pre></div>"}


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython else None


def _flush_when_the_cell_ends(renderer: NotebookRenderer) -> None:
    shell = _shell()
    if shell is None:
        return

    def flush(*_args) -> None:
        renderer.flush()
        shell.events.unregister("post_execute", flush)

    shell.events.register("post_execute", flush)


#: Errors a stage failure already showed in a box (``Stage.detail``: "Type: message").
_boxed: set = set()


def _error_title(value: BaseException) -> Optional[str]:
    """The box's title for an error from fairing or re-raised from a job; None for others."""
    from ..errors import FairingError
    from ..results import is_job_exception

    if isinstance(value, FairingError):
        return f"fairing: {type(value).__name__}"
    if is_job_exception(value):
        return f"fairing: the job raised {type(value).__name__}"
    return None


def _without_fairing_frames(tb):
    """The traceback ``tb`` without the frames of fairing's own code (the API that re-raised
    a job's exception), rebuilt with :class:`types.TracebackType`; unchanged when it has none."""
    import os
    import types

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frames = []
    while tb is not None:
        if not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package):
            frames.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for kept in reversed(frames):
        rebuilt = types.TracebackType(rebuilt, kept.tb_frame, kept.tb_lasti, kept.tb_lineno)
    return rebuilt


def _install_error_box() -> None:
    """Show fairing's errors, and exceptions re-raised from a job, as a box with the
    diagnosis above the usual traceback (which stays, for papermill and nbconvert)."""
    shell = _shell()
    if shell is None or getattr(shell, "_fairing_error_box", False):
        return
    from IPython.display import display

    def show(shell_, etype, value, tb, tb_offset=None):
        title = _error_title(value)
        if title and f"{etype.__name__}: {value}" not in _boxed:
            display(_error_bundle(title, str(value)), raw=True)
        _boxed.clear()
        from ..results import is_job_exception

        if is_job_exception(value):  # the job's traceback is in its log above: only the cell's frames here
            tb = _without_fairing_frames(tb)
        shell_.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((Exception,), show)
    shell._fairing_error_box = True


def in_notebook() -> bool:
    """True in a Jupyter kernel (not in a terminal IPython)."""
    shell = _shell()
    return type(shell).__name__ == "ZMQInteractiveShell"


def default_renderer():
    """The renderer used when the caller gives none: the notebook's inside Jupyter, else none."""
    return NotebookRenderer() if in_notebook() else None
