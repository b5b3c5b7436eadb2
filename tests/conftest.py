"""Shared fixtures: a clean working directory, and a check that nothing is left behind."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

# fairing-level e2e fixtures (base image, builder, backend...) on top of tests/e2e/conftest.py
pytest_plugins = ["tests.e2e.fairing_fixtures"]


def pytest_configure(config):
    """A suite started as a background job (`cmd &` in a script, as some CI runners do) inherits
    SIGINT ignored, and so would every process it starts: the Ctrl-C tests could not interrupt
    anything. A handler here is reset to the default in each child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    """The cluster's down/up test runs after every other test of the session (it stops
    the cluster that the e2e tests share), whatever the order of the tiers. Tests of
    tests/cluster/up's own cluster (marker ``local_cluster``) are deselected, not
    skipped, when KUBECONFIG points at another cluster: there is nothing of ours there."""
    from tests.e2e.conftest import local_cluster_in_use

    if not local_cluster_in_use():
        other = [item for item in items if item.get_closest_marker("local_cluster")]
        if other:
            config.hook.pytest_deselected(items=other)
            items[:] = [item for item in items if item not in other]
    items.sort(key=lambda item: item.path.name == "test_zz_cluster_down.py")


def _fairing_temp_entries() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("fairing-local-")}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A temporary current directory for code that packages files relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_leftovers():
    """Fails the test if it leaves a local job directory behind."""
    before = _fairing_temp_entries()
    yield
    left = _fairing_temp_entries() - before
    assert not left, f"left behind in {tempfile.gettempdir()}: {sorted(left)}"
