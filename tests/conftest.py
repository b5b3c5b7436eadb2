"""Shared fixtures: a clean working directory, and a check that nothing is left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# fairing-level e2e fixtures (base image, builder, backend...) on top of tests/e2e/conftest.py
pytest_plugins = ["tests.e2e.fairing_fixtures"]


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
