"""The public surface is pinned, and the stages import only in the allowed directions.

No import cycle anywhere in fairing/ (imports inside functions and under TYPE_CHECKING
count), and no stage module imports the facade above it.

``public_surface.json`` holds ``__all__`` of ``fairing`` and of every module the README and
docs/ name (:func:`documented_modules`): moving an internal module does not change it. A change of the surface is deliberate: regenerate the snapshot with
``python3 -m tests.unit.test_surface_and_layers`` and review the diff.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

import fairing

ROOT = Path(fairing.__file__).resolve().parent
SNAPSHOT = Path(__file__).with_name("public_surface.json")

#: (importer prefix, imported prefix, why): a module under the first may not import one under the second,
#: not even inside a function.
FORBIDDEN = [
    ("fairing.builders", "fairing.deployers", "a builder knows nothing of how its artifact is run"),
    ("fairing.deployers", "fairing.builders", "a deployer takes an artifact, never a builder"),
    ("fairing.images", "fairing.builders", "images are values and a registry client, below the stages"),
    ("fairing.images", "fairing.deployers", "images are values and a registry client, below the stages"),
    ("fairing.images", "fairing.kube", "images are values and a registry client, below the stages"),
    ("fairing.kube", "fairing.builders", "kube/ is shared mechanics, below the stages"),
    ("fairing.kube", "fairing.deployers", "kube/ is shared mechanics, below the stages"),
    ("fairing.kube", "fairing.backends", "kube/ is shared mechanics, below the stages"),
    ("fairing.artifacts", "fairing.builders", "the contract sits below the stages it connects"),
    ("fairing.artifacts", "fairing.deployers", "the contract sits below the stages it connects"),
    ("fairing.artifacts", "fairing.backends", "the contract sits below the stages it connects"),
    ("fairing.environment", "fairing.", "the environment is the edge: it imports nothing of fairing"),
    ("fairing.runtime", "fairing.", "the runtime is copied into images and uses the standard library only"),
]
STAGES = ("fairing.builders", "fairing.deployers", "fairing.backends", "fairing.images", "fairing.kube")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, with relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports_in(package, path.read_text(), str(path))


def _imports_in(package: str, text: str, filename: str = "<probe>") -> set[str]:
    """Every module ``text`` (a module of ``package``) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(text, filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def _violations(files) -> list[str]:
    out = []
    for path in files:
        importer = _module_name(path)
        for imported in sorted(_imports(path)):
            for src, dst, why in FORBIDDEN:
                if _under(importer, src) and _under(imported, dst) and not _under(imported, src):
                    out.append(f"{importer} imports {imported}: {why}")
    return out


def test_no_module_imports_in_a_forbidden_direction():
    assert _violations(sorted(ROOT.rglob("*.py"))) == []


def test_the_import_walker_sees_lazy_and_relative_imports(tmp_path):
    # a builder that reaches into a deployer inside a function, as the Kaniko builder once did
    fake = ROOT / "builders" / "_probe_for_test.py"
    fake.write_text("def f():\n    from ..deployers.kubernetes import JOB_LABEL\n    return JOB_LABEL\n")
    try:
        found = _violations([fake])
    finally:
        fake.unlink()
    assert found == ["fairing.builders._probe_for_test imports fairing.deployers.kubernetes: "
                     "a builder knows nothing of how its artifact is run",
                     "fairing.builders._probe_for_test imports fairing.deployers.kubernetes.JOB_LABEL: "
                     "a builder knows nothing of how its artifact is run"]


#: The stages: they import nothing of the facade.
STAGE_MODULES = ("fairing.preprocessors", "fairing.builders", "fairing.deployers", "fairing.images", "fairing.kube",
                 "fairing.runtime", "fairing.outputs", "fairing.context", "fairing.artifacts", "fairing.handle",
                 "fairing.results")
#: The glue above the stages (it may import them; they may not import it).
FACADE_MODULES = ("fairing.api", "fairing.config", "fairing.jobs", "fairing.settings", "fairing.cli",
                  "fairing.endpoint", "fairing.compat", "fairing._registry", "fairing.backends")


def _edges(importer: str, imported_names, modules) -> set[str]:
    """The fairing modules among ``imported_names`` (a name imported from a module counts as
    that module; a package importing its own submodules and a module importing ``fairing``
    itself for ``__version__`` are not edges)."""
    edges = set()
    for imported in imported_names:
        while imported and imported not in modules:
            imported = imported.rpartition(".")[0]
        if imported and imported != importer and imported != "fairing" and not imported.startswith(importer + "."):
            edges.add(imported)
    return edges


def _graph(files) -> dict[str, set[str]]:
    """module -> the fairing modules it imports anywhere in it."""
    modules = {_module_name(path) for path in files}
    return {_module_name(path): _edges(_module_name(path), _imports(path), modules) for path in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{importer} imports {imported}" for importer, edges in graph.items() for imported in edges
                  if any(_under(importer, s) for s in STAGE_MODULES)
                  and any(_under(imported, f) for f in FACADE_MODULES))


def test_no_import_cycle_and_no_stage_imports_the_facade():
    graph = _graph(sorted(ROOT.rglob("*.py")))
    assert _cycles(graph) == []
    assert _upward(graph) == []


def test_a_module_over_450_lines_says_why_it_stays_whole():
    long = {}
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 450:
            doc = ast.get_docstring(ast.parse(text)) or ""
            long[_module_name(path)] = "past 450 lines because" in doc
    assert [name for name, says in long.items() if not says] == []


def test_the_option_checks_and_the_name_tables_sit_at_the_bottom():
    graph = _graph(sorted(ROOT.rglob("*.py")))
    assert graph["fairing._options"] == {"fairing.errors"}
    assert graph["fairing._names"] == set()


def test_the_cycle_check_sees_type_checking_and_function_imports():
    # a stage that reaches up to the job records under TYPE_CHECKING, and a module that imports
    # it back inside a function (written beside the tests, read as if they were in fairing/)
    probes = {
        "fairing.kube._probe": ("fairing.kube", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                "    from ..jobs import JobInfo\n    from .. import _probe2\n"),
        "fairing._probe2": ("fairing", "def f():\n    from .kube import _probe\n    return _probe\n"),
    }
    graph = _graph(sorted(ROOT.rglob("*.py")))
    for name, (package, text) in probes.items():
        graph[name] = _edges(name, _imports_in(package, text), set(graph) | set(probes))
    assert ["fairing._probe2", "fairing.kube._probe"] in _cycles(graph)
    assert "fairing.kube._probe imports fairing.jobs" in _upward(graph)


DOCS = [ROOT.parent / "README.md", *sorted((ROOT.parent / "docs").glob("*.md"))]


def documented_modules() -> list[str]:
    """The modules the README and docs/ name (``fairing.x.y``, ``from fairing.x import``,
    ``fairing/x/y.py``): the public surface beyond ``fairing`` itself. Private modules
    (a part starting with ``_``) are never pinned."""
    import re

    names = set()
    for doc in DOCS:
        if not doc.is_file():
            continue
        text = doc.read_text()
        names.update(re.findall(r"\bfairing(?:\.[a-z_]+)+", text))
        names.update(p[:-3].replace("/", ".") for p in re.findall(r"\bfairing/[a-z_/]+\.py", text))
    found = set()
    for name in names:
        parts = name.split(".")
        while len(parts) > 1:
            path = ROOT.parent.joinpath(*parts)
            if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
                break
            parts.pop()
        if len(parts) > 1 and not any(part.startswith("_") for part in parts):
            found.add(".".join(parts).removesuffix(".__init__"))
    return sorted(found)


def current_surface() -> dict[str, list[str]]:
    """``__all__`` of ``fairing`` and of every documented module that declares one."""
    surface = {"fairing": sorted(fairing.__all__)}
    for name in documented_modules():
        names = getattr(importlib.import_module(name), "__all__", None)
        if names is not None:
            surface[name] = sorted(names)
    return dict(sorted(surface.items()))


def _dump(surface: dict[str, list[str]]) -> str:
    # one line per module, so that concurrent changes to different modules merge cleanly
    lines = [f"  {json.dumps(name)}: {json.dumps(names)}" for name, names in surface.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def test_public_surface_matches_the_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    got = current_surface()
    changed = {m: {"added": sorted(set(got.get(m, [])) - set(expected.get(m, []))),
                   "removed": sorted(set(expected.get(m, [])) - set(got.get(m, [])))}
               for m in set(got) | set(expected) if got.get(m) != expected.get(m)}
    assert not changed, (f"The public surface changed: {changed}. If that is meant, run "
                         "`python3 -m tests.unit.test_surface_and_layers` and commit public_surface.json.")


def test_every_public_name_resolves():
    for module, names in current_surface().items():
        mod = importlib.import_module(module)
        for name in names:
            assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which it does not define"


if __name__ == "__main__":
    SNAPSHOT.write_text(_dump(current_surface()))
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
