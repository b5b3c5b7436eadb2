"""Progress events: how fairing reports what it is doing without printing.

Every long operation takes ``on_event``, a callable that receives :class:`Event`
values. The CLI (``fairing.cli``) and the notebook display (``fairing.notebook``)
render them; when no callback is given, events go to the ``fairing`` logger at
DEBUG level (fairing never configures logging itself).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

__all__ = ["Event", "Stage", "Queued", "Progress", "LogLine", "TrialUpdate", "EventCallback", "emitter", "run_stage",
           "failed_on_error"]

_logger = logging.getLogger("fairing")


@dataclass(frozen=True)
class Event:
    """Base of all events."""


@dataclass(frozen=True)
class Stage(Event):
    """A pipeline stage started or finished: name is 'package', 'build', 'push', 'deploy', 'run'..."""

    name: str
    status: str  # "started" | "finished" | "failed" | "skipped"
    detail: str = ""


@dataclass(frozen=True)
class Queued(Stage):
    """Kueue holds the job ``job`` in the LocalQueue ``queue`` (see :mod:`fairing.kube.kueue`):
    the stage 'queue', "started" when first seen held, "waiting" when Kueue's ``reason`` or
    ``message`` (from the job's Workload conditions) change, "finished" once admitted,
    "failed" when the queue does not exist. Renderers that know only :class:`Stage` show it
    as one; ``detail`` says it in words."""

    job: str = ""
    queue: str = ""
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Progress(Event):
    """Bytes or items done of a task: an upload of one blob, a pip install..."""

    task: str
    done: int
    total: Optional[int] = None
    unit: str = "B"
    note: str = ""  # "skipped" (already present), "mounted", "uploaded"...


@dataclass(frozen=True)
class LogLine(Event):
    """One line of the job's output; ``source`` names the replica ('worker-1') or ''."""

    line: str
    source: str = ""


@dataclass(frozen=True)
class TrialUpdate(Event):
    """A trial of a hyperparameter search (a Katib Trial) changed state: its ``trial`` name,
    ``state`` ('Created', 'Running', 'Succeeded', 'Failed'...), ``params`` (the values
    chosen for it) and ``value`` (the objective metric, once known)."""

    trial: str
    state: str
    params: dict
    value: Optional[float] = None


EventCallback = Callable[[Event], None]


def _log_event(event: Event) -> None:
    _logger.debug("%s", event)


def emitter(on_event: Optional[EventCallback]) -> EventCallback:
    """The callback to use: the given one, or the logger fallback."""
    return on_event if on_event is not None else _log_event


def run_stage(emit: EventCallback, name: str, fn: Callable[[], Any], *, detail: str = "") -> Any:
    """``fn()`` reported as the stage ``name``: "started" once (with ``detail``), then
    "finished" (with the seconds it took) or "failed" (with the error's type and message) once."""
    emit(Stage(name, "started", detail))
    start = time.perf_counter()
    try:
        value = fn()
    except BaseException as exc:
        emit(Stage(name, "failed", f"{type(exc).__name__}: {exc}"))
        raise
    emit(Stage(name, "finished", f"{time.perf_counter() - start:.2f}s"))
    return value


@contextlib.contextmanager
def failed_on_error(emit: EventCallback, name: str) -> Iterator[None]:
    """Inside a stage that was reported "started": an error ends it as "failed" (then propagates)."""
    try:
        yield
    except BaseException as exc:
        emit(Stage(name, "failed", type(exc).__name__))
        raise
