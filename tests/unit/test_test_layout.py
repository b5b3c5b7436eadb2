"""The suite's own layout: pytest imports test modules of folders without __init__.py by
their basename, so two such files with one name break the whole run's collection (while
either folder alone collects fine)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique_across_the_suite():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
