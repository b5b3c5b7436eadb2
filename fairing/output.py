"""The job's own output, shown to the caller.

What the job prints is the user's, so it goes to the caller's ``sys.stdout`` as it
arrives (in a notebook that is the cell's output), each line prefixed ``[worker-1]``
when the job has several replicas; ``quiet=True`` turns it off. fairing's own progress
stays on events (:mod:`fairing.events`). The deployers report the job's lines as
:class:`~fairing.events.LogLine` events; :func:`job_events` is the one place that
decides whether they are written out.
"""

from __future__ import annotations

import sys
import threading
from typing import Optional

from .events import Event, EventCallback, LogLine

__all__ = ["JobOutput", "job_events"]


class JobOutput:
    """Writes the job's lines to ``stream`` (default: ``sys.stdout`` at the time of writing,
    so that redirections and notebook cells see them)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self._lock = threading.Lock()  # replicas' reader threads write concurrently
        self._blank: dict[str, int] = {}  # blank lines held back, by source

    def __call__(self, event: Event) -> None:
        if not isinstance(event, LogLine):
            return
        with self._lock:
            if not event.line:
                # held until more output comes: the runtime's result line (not shown) follows a
                # blank line of its own at the very end of a cluster job's log
                self._blank[event.source] = self._blank.get(event.source, 0) + 1
                return
            stream = self.stream or sys.stdout
            prefix = f"[{event.source}] " if event.source else ""
            held = self._blank.pop(event.source, 0)
            stream.write(f"{prefix}\n" * held + f"{prefix}{event.line}\n")
            stream.flush()


def _shows_job_output(on_event: Optional[EventCallback]) -> bool:
    """A renderer that shows LogLine events itself (the CLI's, the notebook's, TextRenderer)
    says so with a true ``shows_job_output``: the job's output is then not written twice."""
    return bool(getattr(on_event, "shows_job_output", False))


def job_events(on_event: Optional[EventCallback], *, quiet: bool = False) -> Optional[EventCallback]:
    """The callback to give a deployer: the job's output is shown unless ``quiet``, and
    every event also goes to ``on_event`` (but no LogLine to a renderer when ``quiet``)."""
    if _shows_job_output(on_event):
        if not quiet:
            return on_event

        def without_logs(event: Event) -> None:
            if not isinstance(event, LogLine):
                on_event(event)  # type: ignore[misc]

        return without_logs
    if quiet:
        return on_event
    show = JobOutput()
    if on_event is None:
        from .events import emitter

        fallback = emitter(None)

        def shown(event: Event) -> None:
            show(event)
            if not isinstance(event, LogLine):
                fallback(event)

        return shown

    def both(event: Event) -> None:
        show(event)
        on_event(event)  # type: ignore[misc]

    return both
