"""Rendering fairing's events in a Jupyter cell: stage lines, live logs, progress bars."""

from __future__ import annotations

import sys
from typing import Optional

from ..events import Event, LogLine, Progress, Stage

__all__ = ["NotebookRenderer", "TextRenderer", "in_notebook", "default_renderer"]


def _bar(done: int, total: Optional[int], width: int = 30) -> str:
    if not total:
        return f"{done:,} B"
    filled = int(width * min(done, total) / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%"


class TextRenderer:
    """Writes events as text lines to a stream (the CLI uses it with stderr/stdout)."""

    def __init__(self, stream=None, log_stream=None) -> None:
        self.stream = stream or sys.stderr
        self.log_stream = log_stream or sys.stdout

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogLine):
            prefix = f"[{event.source}] " if event.source else ""
            self.log_stream.write(f"{prefix}{event.line}\n")
            self.log_stream.flush()
        elif isinstance(event, Stage):
            detail = f" ({event.detail})" if event.detail else ""
            self.stream.write(f"fairing: {event.name} {event.status}{detail}\n")
            self.stream.flush()
        elif isinstance(event, Progress) and (event.total is None or event.done >= event.total or event.note):
            note = f" {event.note}" if event.note else ""
            self.stream.write(f"fairing: {event.task} {_bar(event.done, event.total)}{note}\n")
            self.stream.flush()


class NotebookRenderer(TextRenderer):
    """In a notebook: one live-updating progress line per task, logs as cell output."""

    def __init__(self) -> None:
        super().__init__(sys.stdout, sys.stdout)
        self._handles: dict = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            from IPython.display import display  # present: we only run inside IPython

            text = f"{event.task} {_bar(event.done, event.total)} {event.note}".rstrip()
            handle = self._handles.get(event.task)
            if handle is None:
                self._handles[event.task] = display({"text/plain": text}, raw=True, display_id=True)
            else:
                handle.update({"text/plain": text}, raw=True)
            return
        super().__call__(event)


def in_notebook() -> bool:
    """True in a Jupyter kernel (not in a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def default_renderer():
    """The renderer used when the caller gives none: the notebook's inside Jupyter, else none."""
    return NotebookRenderer() if in_notebook() else None
