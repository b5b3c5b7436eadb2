"""The library logs to ``fairing.<module>`` loggers and never configures logging: no
handlers but the NullHandler on ``fairing``, no ``basicConfig``, no ``print`` (outside the
runtime, which is the job's own process). Only the CLI's ``-v`` adds a handler."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fairing"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            # print(...) the builtin; x.basicConfig(...), x.addHandler(...) by attribute (rich's console.print is fine)
            yield func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) and func.attr != "print" else "")


def test_no_print_no_basic_config_no_handlers_in_the_library():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        calls = set(_calls(ast.parse(path.read_text(), rel)))
        if "basicConfig" in calls:
            offenders.append(f"{rel}: logging.basicConfig")
        if "print" in calls and not rel.startswith("fairing/runtime/"):
            offenders.append(f"{rel}: print")
        if "addHandler" in calls and rel not in ("fairing/__init__.py", "fairing/cli.py"):
            offenders.append(f"{rel}: addHandler")
    assert not offenders, offenders


def test_importing_fairing_configures_nothing_and_records_reach_no_stream():
    code = (
        "import logging, fairing, fairing.images.registry.client, fairing.kube.watch, fairing._cache, fairing.doctor\n"
        "root = logging.getLogger()\n"
        "assert root.handlers == [], root.handlers\n"
        "lg = logging.getLogger('fairing')\n"
        "assert [type(h).__name__ for h in lg.handlers] == ['NullHandler'], lg.handlers\n"
        "assert lg.level == logging.NOTSET\n"
        "logging.getLogger('fairing.images.registry.client').warning('should go nowhere')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""


def test_the_loggers_are_named_after_their_modules():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for line in text.splitlines():
            if "logging.getLogger(" in line and "getLogger(__name__)" not in line and "getLogger(\"fairing\")" not in line:
                names.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert not names, names
