"""The suite's own layout: pytest imports test modules of folders without __init__.py by
their basename, so two such files with one name break the whole run's collection (while
either folder alone collects fine)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique_across_the_suite():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


# What a test may only do with the cluster to itself (tests/run runs those alone, after the
# parallel phase): stop it, delete a CRD every other test's workloads depend on, build Go.
_EXCLUSIVE_CALLS = ("delete_custom_resource_definition", '"down"', "--build-only")


def _marks(decorators) -> str:
    import ast

    return " ".join(ast.unparse(d) for d in decorators)


def test_tests_that_need_the_cluster_to_themselves_are_marked_exclusive():
    import ast

    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        module_marks = " ".join(ast.unparse(n.value) for n in tree.body if isinstance(n, ast.Assign)
                                and any(getattr(t, "id", "") == "pytestmark" for t in n.targets))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                body = ast.get_source_segment(source, node) or ""
                if any(call in body for call in _EXCLUSIVE_CALLS) and "exclusive" not in module_marks + _marks(node.decorator_list):
                    unmarked.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert unmarked == []
