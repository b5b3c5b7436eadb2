"""Where the suite's time goes, printed at the end of every run, and the run's phase.

``tests/run`` runs pytest twice: the ``parallel`` phase on several xdist workers (every
test not marked ``exclusive``), then the ``exclusive`` phase alone (the tests that need
the whole cluster, or both cores, to themselves). ``--phase`` picks one; without it every
test runs, as before.

At the end of a run this prints the slowest 30 tests (setup + call + teardown, as one
number: what a test costs the run) and each tier's wall time (first start to last stop,
over every worker) beside the sum of its tests' times, so a slow test is seen the day it
lands. With ``FAIRING_TESTS_REPORT`` set, the outcome counts and tier times are also
written there as JSON, which ``tests/run`` adds up into the run's closing line.

pytest's own ``--durations`` lists setup, call and teardown apart and says nothing about
tiers or workers, hence this plugin.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

SLOWEST = 30
PHASES = ("parallel", "exclusive")


def pytest_addoption(parser):
    parser.addoption("--phase", choices=PHASES, default=None,
                     help="parallel: every test not marked exclusive; exclusive: only those (tests/run runs both)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "exclusive: needs the whole cluster or machine to itself (stops the cluster, deletes a CRD, "
                   "checks the host's network, builds Go); run alone after the parallel phase")
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) reports
        config.pluginmanager.register(_Timings(config), "fairing-timings")


def pytest_collection_modifyitems(config, items):
    phase = config.getoption("--phase")
    if phase is None:
        return
    keep = (lambda item: item.get_closest_marker("exclusive") is not None) if phase == "exclusive" \
        else (lambda item: item.get_closest_marker("exclusive") is None)
    dropped = [item for item in items if not keep(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if keep(item)]


def _tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


class _Timings:
    def __init__(self, config):
        self.config = config
        self.cost = defaultdict(float)        # nodeid -> setup + call + teardown seconds
        self.span = {}                        # nodeid -> (first start, last stop)
        self.outcomes = defaultdict(int)

    def pytest_runtest_logreport(self, report):
        self.cost[report.nodeid] += report.duration
        start, stop = self.span.get(report.nodeid, (report.start, report.stop))
        self.span[report.nodeid] = (min(start, report.start), max(stop, report.stop))
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed") \
                or (report.when == "teardown" and report.outcome == "failed"):
            key = "error" if report.when != "call" and report.outcome == "failed" else report.outcome
            if hasattr(report, "wasxfail"):  # pytest reports an xfail as skipped, an xpass as passed
                key = "xfailed" if report.outcome == "skipped" else "xpassed"
            self.outcomes[key] += 1

    def _tiers(self) -> dict:
        tiers = defaultdict(lambda: {"tests": 0, "sum_s": 0.0, "first": None, "last": None})
        for nodeid, (start, stop) in self.span.items():
            t = tiers[_tier(nodeid)]
            t["tests"] += 1
            t["sum_s"] += self.cost[nodeid]
            t["first"] = start if t["first"] is None else min(t["first"], start)
            t["last"] = stop if t["last"] is None else max(t["last"], stop)
        return {name: {"tests": t["tests"], "sum_s": round(t["sum_s"], 1), "wall_s": round(t["last"] - t["first"], 1)}
                for name, t in sorted(tiers.items())}

    def pytest_terminal_summary(self, terminalreporter):
        if not self.cost:
            return
        tr = terminalreporter
        phase = self.config.getoption("--phase") or "all"
        tr.write_sep("=", f"slowest {SLOWEST} tests ({phase} phase; setup + call + teardown)")
        for nodeid, secs in sorted(self.cost.items(), key=lambda kv: -kv[1])[:SLOWEST]:
            tr.write_line(f"{secs:8.1f}s  {nodeid}")
        tr.write_sep("=", f"tier times ({phase} phase; wall: first start to last stop over all workers)")
        for name, t in self._tiers().items():
            tr.write_line(f"{name:12} {t['tests']:4d} tests  wall {t['wall_s']:7.1f}s  sum {t['sum_s']:8.1f}s")

    def pytest_sessionfinish(self, session, exitstatus):
        path = os.environ.get("FAIRING_TESTS_REPORT")
        if path:
            with open(path, "w") as f:
                json.dump({"phase": self.config.getoption("--phase") or "all", "exitstatus": int(exitstatus),
                           "outcomes": dict(self.outcomes), "tiers": self._tiers()}, f)
