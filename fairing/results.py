"""Turning a job's result envelope (see ``fairing.runtime.result``) into a value or an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from .errors import JobError, JobFailedError, RemoteError, ResultError, RuntimeMismatchError, SerializationError

__all__ = ["RemoteTraceback", "outcome", "read_envelope", "map_results", "shown_once", "is_job_exception",
           "SweepResult", "SweepTrial"]


class SweepTrial(NamedTuple):
    """One trial of a Katib search: its ``name`` (the Trial), ``params``, the function's
    ``result`` (None when it failed), the ``value`` Katib recorded for the objective metric
    (None when none), and its ``state``: 'Succeeded', 'Failed', 'EarlyStopped',
    'MetricsUnavailable', 'Killed', 'Running' or 'Created'."""

    name: str
    params: dict
    result: Any
    value: Optional[float]
    state: str


@dataclass(frozen=True)
class SweepResult:
    """What :func:`fairing.sweep` found: the best ``params``, their ``result`` and ``score``, the
    best call's ``outputs`` (local paths, when the function was given ``outputs``), and
    every ``(params, result)`` in ``trials`` (grid order; Katib's creation order). A Katib
    search also names its ``experiment`` and keeps each trial's name, value and state in
    ``details`` (:class:`SweepTrial`)."""

    params: dict
    result: Any
    score: Any
    outputs: dict
    trials: list
    experiment: str = ""
    details: list = field(default_factory=list)


class RemoteTraceback(Exception):
    """Carries the job's traceback as the ``__cause__`` of a re-raised remote exception.

    Not a FairingError: it is never raised, only chained, so that Python prints the
    remote traceback above the local one (as concurrent.futures does). When the job's
    output was shown as it ran (not ``quiet``), the traceback was in it, and the API
    does not chain it again (:func:`shown_once`); the exception's ``fairing_job`` names
    the job either way.
    """

    def __init__(self, tb: str) -> None:
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.tb.rstrip()}\n\"\"\""


def is_job_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is a job's own exception, re-raised here by :func:`outcome`."""
    return bool(getattr(exc, "fairing_job", None)) or isinstance(exc.__cause__, RemoteTraceback)


def shown_once(exc: BaseException, output_shown: bool) -> BaseException:
    """``exc`` without its chained remote traceback when the job's output, which printed that
    traceback, was shown (so that it appears once); its traceback starts afresh, so that the
    frames of fairing it came through are not shown either."""
    if output_shown and isinstance(exc.__cause__, RemoteTraceback):
        exc.__cause__ = None
        exc.__suppress_context__ = True
    return exc.with_traceback(None) if is_job_exception(exc) else exc


def _load_exception(data: bytes) -> Optional[BaseException]:
    """The job's exception, or None when it cannot be recreated here: its class is importable
    only in the job, or its ``__init__`` does not take what ``args`` holds."""
    import pickle

    try:
        exc = pickle.loads(data)
    except Exception:
        return None
    return exc if isinstance(exc, BaseException) else None


def read_envelope(text: str, key: bytes, *, job: str) -> dict:
    """:func:`fairing.runtime.result.decode` on the submitter's side: a signed envelope that
    cannot be unpickled here (its value's class exists only in the job) is a :class:`ResultError`
    naming what is missing; no envelope, or none signed with ``key``, is a ValueError."""
    from .runtime.result import Unloadable, decode

    try:
        return decode(text, key)
    except Unloadable as exc:
        missing = f"the module {exc.module!r}, which exists only in the job" if exc.module else "what it needs"
        raise ResultError(
            f"The job {job} finished, but its return value cannot be recreated here: unpickling it needs "
            f"{missing} ({exc}). Return plain types (numbers, strings, lists, dicts, arrays) or an instance of "
            f"a class importable here (install{' ' + exc.module if exc.module else ' the module'} locally, or "
            "define the class in this process so that it travels by value); or save the object to a file "
            "under $FAIRING_OUTPUTS and return its path.", job=job, module=exc.module) from exc.__cause__


def outcome(envelope: Optional[dict], *, job: str, exit_code: Optional[int], logs_tail: str = "") -> Any:
    """The job's return value, or raise what it raised (or why it failed)."""
    if envelope is None:
        if exit_code not in (0, None):
            raise JobFailedError(
                f"The job {job} exited with code {exit_code} before reporting a result "
                "(killed, out of memory, or failed to start). Check its log below.",
                job=job, exit_code=exit_code, logs_tail=logs_tail,
            )
        raise JobError(
            f"The job {job} finished but reported no result. Was it started with fairing's runtime entrypoint?",
            job=job, logs_tail=logs_tail,
        )
    if envelope.get("ok"):
        return envelope.get("value")
    error = envelope.get("error")
    if error == "mismatch":
        raise RuntimeMismatchError(f"The job {job} could not load its payload: {envelope['message']}.", job=job)
    if error == "result":
        raise SerializationError(
            f"The job {job} finished, but {envelope['message']}. Return plain data (numbers, lists, dicts, "
            "arrays) or save large objects to a file and return its path."
        )
    if error:
        raise JobFailedError(f"The job {job} failed in fairing's runtime: {envelope['message']}", job=job,
                             exit_code=exit_code, logs_tail=logs_tail)
    exc = envelope.get("exc")
    if exc is None and envelope.get("exc_pickle"):
        exc = _load_exception(envelope["exc_pickle"])
    tb = envelope.get("traceback", "")
    if isinstance(exc, SystemExit):
        raise JobFailedError(f"The job {job} called sys.exit({exc.code!r}).", job=job,
                             exit_code=exc.code if isinstance(exc.code, int) else 1, logs_tail=logs_tail)
    if isinstance(exc, BaseException) and not isinstance(exc, KeyboardInterrupt):
        __tracebackhide__ = True  # IPython and pytest leave fairing's frames out  # noqa: F841
        exc.__cause__ = RemoteTraceback(tb)
        exc.fairing_job = job  # what the notebook's error box and the CLI recognise a job's exception by
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised in the job {job}; its traceback is shown above)")
        raise exc
    raise RemoteError(envelope.get("exc_type", "Exception"), envelope.get("message", ""), tb, job=job)


def map_results(handle: Any, outcomes: list) -> list:
    """The values of a map's ``[(ok, value or exception), ...]``, or raise MapError naming each failure."""
    from .errors import MapError

    failures = {i: value for i, (ok, value) in enumerate(outcomes) if not ok}
    results = [value if ok else None for ok, value in outcomes]
    if not failures:
        return results
    logs = {i: getattr(exc, "logs_tail", None) or handle.tail(f"index-{i}") for i, exc in failures.items()}
    lines = [f"{len(failures)} of {len(outcomes)} calls of the map {handle.name} failed (indexes "
             f"{', '.join(map(str, failures))}); the other results are in .results, the exceptions in .failures:"]
    for i, exc in failures.items():
        lines.append(f"  [{i}] {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        tail = [line for line in (logs[i] or "").splitlines() if line.strip()][-5:]
        lines.extend(f"      | {line}" for line in tail)
    raise MapError("\n".join(lines), failures=failures, results=results, logs=logs, job=handle.name)
