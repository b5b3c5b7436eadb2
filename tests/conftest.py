"""Shared fixtures: a clean working directory, and a check that nothing is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

# fairing-level e2e fixtures (base image, builder, backend...) on top of tests/e2e/conftest.py
pytest_plugins = ["tests.e2e.fairing_fixtures", "tests.e2e.kubeflow_profile", "tests.timing"]


def pytest_configure(config):
    """Each xdist worker gets a temporary directory (``TMPDIR``) and a fairing cache
    (``XDG_CACHE_HOME``, see ``_worker_cache``) of its own, inherited by every process it
    starts, so checks for what a test left behind see that test's worker only, never
    another test running beside it.

    A suite started as a background job (`cmd &` in a script, as some CI runners do) inherits
    SIGINT ignored, and so would every process it starts: the Ctrl-C tests could not interrupt
    anything. A handler here is reset to the default in each child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(config, "workerinput"):
        own = Path(tempfile.gettempdir()) / f"fairing-tests-{config.workerinput['testrunuid'][:8]}-{config.workerinput['workerid']}"
        own.mkdir(parents=True)
        config._fairing_tmpdir = own
        os.environ["XDG_CACHE_HOME"] = str(_worker_cache(own / "xdg-cache"))
        os.environ["TMPDIR"] = str(own)
        tempfile.tempdir = None  # computed again from TMPDIR


#: Caches the workers share: what is slow to fill and safe to share between processes.
SHARED_CACHES = ("pip", "uv", "go-build", "matplotlib", "fairing/local-requirements")


def _worker_cache(own: Path) -> Path:
    """A cache directory for one xdist worker: fairing's job records, kept logs and registry
    knowledge are its own (a test listing or deleting "every finished job" sees its worker's
    only), while pip's, uv's and Go's caches and the local requirement installs (locked per
    key) are links to the machine's."""
    real = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for name in SHARED_CACHES:
        (real / name).mkdir(parents=True, exist_ok=True)
        (own / name).parent.mkdir(parents=True, exist_ok=True)
        (own / name).symlink_to(real / name)
    return own


def pytest_unconfigure(config):
    own = getattr(config, "_fairing_tmpdir", None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


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
