"""A Katib trial inside its pod: the parameters Katib chose become the function's
keyword arguments, and its return value goes back to Katib as ``fairing-metric:name=value`` lines
on stdout, read by Katib's StdOut metrics collector with the filter METRICS_FORMAT (the sidecar reads the
container's output).

The submitter describes the search space in the payload (``TRIAL_CALL``): for each
parameter its ``kind`` ('int', 'double' or 'categorical'), for a categorical one the
values by the text Katib carries (``choices``). Katib writes each chosen value, as
text, into the trial's ``FAIRING_TRIAL_<i>`` variable (``i``: the parameter's position).
Standard library only, as the rest of the runtime.
"""

import math
import os
import re
import sys
import time

ENV_PREFIX = "FAIRING_TRIAL_"
#: The runtime's metric lines start with this marker and the Experiment's collector filter
#: (METRICS_FORMAT) reads only such lines: the function's own output (a training log that
#: prints ``accuracy=0.1``, with or without a leading timestamp, which Katib would sort after
#: the runtime's untimestamped line) cannot stand in for the value the function returns.
MARKER = "fairing-metric:"
#: Katib's filter (Go RE2, two groups: name and value; no ';', the collector's list separator).
METRICS_FORMAT = MARKER + r"([\w|-]+)=([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)"
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class TrialError(Exception):
    """The trial cannot run or report: a value Katib sent does not fit the space, or
    the function's result holds no number for the objective metric."""


def env_name(position: int) -> str:
    return f"{ENV_PREFIX}{position}"


def parameters(space: dict, environ) -> dict:
    """The keyword arguments of this trial, from Katib's text values."""
    found = {}
    for position, (name, spec) in enumerate(space.items()):
        text = environ.get(env_name(position))
        if text is None:
            raise TrialError(f"Katib gave no value for the parameter {name!r} ({env_name(position)} is not set)")
        found[name] = convert(name, spec, text)
    return found


def convert(name: str, spec: dict, text: str):
    kind = spec["kind"]
    try:
        if kind == "int":
            return int(text)
        if kind == "double":
            return float(text)
    except ValueError:
        raise TrialError(f"Katib's value {text!r} for the {kind} parameter {name!r} is not a number") from None
    if kind == "categorical":
        choices = spec["choices"]
        if text not in choices:
            raise TrialError(f"Katib's value {text!r} for {name!r} is not one of its values {sorted(choices)}")
        return choices[text]
    raise TrialError(f"unknown parameter kind {kind!r} for {name!r}; the submitting fairing is newer than this runtime")


def metric_lines(value, metric: str) -> list:
    """``fairing-metric:name=value`` lines for Katib: the objective ``metric`` (the value itself when it is a
    number, else the dict's entry) and every other number of a dict result."""
    if isinstance(value, dict):
        # only names Katib's filter reads whole (a key with '=', spaces or a newline would
        # print a line that parses as another name)
        numbers = {k: v for k, v in value.items()
                   if isinstance(k, str) and _METRIC_NAME.match(k) and _number(v) is not None}
        if metric not in numbers:
            raise TrialError(f"the function returned {sorted(map(str, value))} without a number for the "
                             f"objective metric {metric!r}; return it in the dict, or a number")
        lines = [f"{MARKER}{k}={_number(v)!r}" for k, v in numbers.items() if k != metric]
        return [*lines, f"{MARKER}{metric}={_number(numbers[metric])!r}"]  # the objective last: Katib reads the latest
    number = _number(value)
    if number is None:
        raise TrialError(f"the function returned {type(value).__name__}, not a number Katib can compare; "
                         f"return a number or a dict naming {metric!r}")
    return [f"{MARKER}{metric}={number!r}"]


def _number(value):
    if isinstance(value, bool):  # True is no score (float(True) would make it 1.0)
        return None
    if not isinstance(value, (int, float)):
        try:  # numpy scalars and the like
            value = float(value.__float__()) if hasattr(value, "__float__") and not isinstance(value, (str, bytes)) else None
        except Exception:
            return None
        if value is None:
            return None
    try:
        value = float(value)
    except OverflowError:  # an int past a float's range
        return None
    return value if math.isfinite(value) else None


def run(target, trial: dict, environ, *, proc: str = "/proc"):
    """Call ``target`` with this trial's parameters, print its metric lines, return its value
    (or raise what it raised), once Katib's collector has seen this process."""
    try:
        value = target(**parameters(trial["space"], environ))
        lines = metric_lines(value, trial["metric"])
        sys.stdout.flush()
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
        sys.stdout.flush()
        return value
    finally:
        wait_for_collector(proc)


def wait_for_collector(proc: str = "/proc", timeout: float = 30.0, settle: float = 2.0) -> bool:
    """Katib's collector sidecar (in the pod's shared process namespace) looks for the
    training process when it starts and gives up when it is gone: a trial quicker than the
    sidecar's start would lose its metrics. So the trial ends only once the collector (the
    process started with ``-s-db``, its database address) is up, and a moment after. False
    when none showed up within ``timeout`` seconds (no collector: not under Katib)."""
    own = {os.getpid(), os.getppid()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            entries = [e for e in os.listdir(proc) if e.isdigit() and int(e) not in own]
        except OSError:
            return False
        for entry in entries:
            try:
                with open(os.path.join(proc, entry, "cmdline"), "rb") as fh:
                    args = fh.read().split(b"\0")
            except OSError:
                continue
            if b"-s-db" in args:
                time.sleep(settle)
                return True
        time.sleep(0.2)
    return False
