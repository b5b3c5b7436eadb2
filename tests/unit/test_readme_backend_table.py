"""The README's backend table, checked against the code: every backend fairing registers has a row
and every backend a row names exists; each class, function and call written in it resolves (the
calls with literal arguments are made); each quoted deployer name and ``model_storage`` value is one
fairing takes; each workload kind is one fairing starts. (Running each backend is the local,
integration and e2e tiers' work; this keeps the table from drifting away from them.)"""

import importlib
import re
from pathlib import Path

import pytest

import fairing
from fairing._names import BACKENDS, BUILDERS, DEPLOYERS, SERVING_DEPLOYERS, WORKLOAD_HANDLES
from fairing.endpoint import MODEL_STORAGE

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- backends: checked against the code by tests/unit/test_readme_backend_table.py -->"


def _rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README's backend table lost its marker"
    lines = text.split(MARKER, 1)[1].strip().splitlines()
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    assert table[0] == ["backend", "builder", "runs jobs as", "endpoints as"], table[0]
    assert set(table[1][0]) <= {"-", "|"}
    rows = table[2:]
    assert rows and all(len(row) == 4 for row in rows), rows
    return rows


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _classes() -> dict:
    found = {"PredictionEndpoint": fairing.PredictionEndpoint}
    for table in (BUILDERS, DEPLOYERS):
        for target in table.values():
            module, _, name = target.partition(":")
            found[name] = getattr(importlib.import_module(module), name)
    return found


def _kinds_started() -> set:
    """The kinds fairing starts: its workload handles', and each ``"kind": "..."`` its deployers write."""
    kinds = set(WORKLOAD_HANDLES)
    for source in (ROOT / "fairing" / "deployers").glob("*.py"):
        kinds |= set(re.findall(r'"kind": "(\w+)"', source.read_text()))
    return kinds


def test_every_backend_has_a_row_and_every_row_names_real_backends():
    named = set()
    for row in _rows():
        named |= {code for code in _code(row[0]) if re.fullmatch(r"[a-z]+", code)}
        named |= set(re.findall(r"`([a-z]+)`(?: \(default\))?(?= /|$| \(| with)", row[0]))
    assert named == set(BACKENDS), named ^ set(BACKENDS)


@pytest.mark.parametrize("row", _rows(), ids=lambda row: re.sub(r"\W+", "-", row[0])[:40])
def test_each_name_and_call_in_a_row_is_real(row):
    classes = _classes()
    checked = 0
    for code in (code for cell in row for code in _code(cell)):
        call = re.fullmatch(r"([A-Za-z_][\w.]*)\((.*)\)", code)
        if call and call.group(1)[0].islower() and "." not in call.group(1):
            continue  # a method (create()): its class is named elsewhere in the row
        if call:
            target, args = call.groups()
            if "." in target:  # a dotted function: fairing.pipelines.component, kfp.local.DockerRunner
                module, _, attr = target.rpartition(".")
                assert callable(getattr(importlib.import_module(module), attr)), code
            else:
                assert target in classes, f"{code}: no such class in fairing"
                if re.fullmatch(r"(\w+=[\w\"'.]+(, )?)*", args):  # literal arguments: make it
                    made = eval(code, {}, classes)  # noqa: S307 (the README's own text)
                    assert isinstance(made, classes[target])
            for key, value in re.findall(r"(\w+)=\"(\w+)\"", args):
                assert value in {"deployer": SERVING_DEPLOYERS}.get(key, DEPLOYERS), code
            checked += 1
        elif re.fullmatch(r"\"\w+\"", code):
            assert code.strip('"') in DEPLOYERS, code
            checked += 1
        elif re.fullmatch(r"model_storage=\"\w+\"", code):
            assert code.split('"')[1] in MODEL_STORAGE, code
            checked += 1
        elif re.fullmatch(r"[A-Z]\w+", code) and code in classes:
            checked += 1
        elif re.fullmatch(r"[A-Z][A-Za-z]+", code) and code not in ("ClusterTrainingRuntime", "Ready"):
            assert code in _kinds_started(), f"{code}: fairing starts no such workload"
            checked += 1
    assert checked or "`local`" in row[0] or "`aws`" in row[0], row  # those rows name no class nor kind


def test_the_kserve_row_claims_what_the_test_cluster_sets():
    row = next(row for row in _rows() if "deployer=\"kserve\"" in row[0])
    assert "storageInitializer.enableModelcar" in row[3]
    script = (ROOT / "tests" / "cluster" / "kubeflow2.sh").read_text()
    assert '"enableModelcar": true' in script
