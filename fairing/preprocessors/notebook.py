"""Notebook preprocessors: convert a notebook to a script, or run it whole with papermill.

Conversion is done here rather than with nbconvert's PythonExporter because that
exporter turns magics into ``get_ipython()`` calls, which fail in a plain job and
would run shell escapes. Instead:

- a cell whose first line is a cell magic (``%%bash``, ``%%writefile``...) becomes
  comments as a whole, so its body never runs as Python;
- line magics, shell escapes (``!pip``, ``x = !ls``) and help lines (``obj?``) become
  comments;
- fairing's own calls are neutralised so the job does not submit itself again:
  ``import fairing`` / ``from fairing import ...`` statements and statements calling
  anything reached through those names become ``pass``, and fairing decorators are
  dropped from definitions.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from ..context import BuildContext
from ..errors import EntryPointNotFoundError, MissingDependencyError, PackagingError
from .base import default_requirements, payload_context
from .files import collect_input_files, image_path

__all__ = ["NotebookPreprocessor", "FullNotebookPreprocessor", "notebook_to_script"]

_MAGIC_LINE = re.compile(r"^\s*(%|!|\w[\w.]*\s*=\s*[!%])")
_HELP_LINE = re.compile(r"^\s*\??[\w.]+\?{1,2}\s*$")


def _nbformat():
    try:
        import nbformat
    except ImportError as exc:
        raise MissingDependencyError("nbformat", "notebook", "Packaging a notebook") from exc
    return nbformat


def _comment(lines: list[str], why: str) -> list[str]:
    return [f"# [fairing: {why}] {line}" if line.strip() else line for line in lines]


def _strip_magics(source: str) -> str:
    lines = source.splitlines()
    first = next((l for l in lines if l.strip()), "")
    if first.lstrip().startswith("%%"):
        return "\n".join(_comment(lines, "cell magic, not run"))
    out = []
    for line in lines:
        if _MAGIC_LINE.match(line) or _HELP_LINE.match(line):
            out.extend(_comment([line], "magic or shell escape, not run"))
        else:
            out.append(line)
    return "\n".join(out)


def _fairing_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "fairing")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fairing":
            names.update(a.asname or a.name for a in node.names)
    return names


def _uses(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _neutralise_fairing(source: str, names: set[str]) -> str:
    """Replace statements that import or call fairing with ``pass``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source  # the job would fail on it anyway, with Python's own message
    lines = source.splitlines()
    edits: list[tuple[int, int, list[str]]] = []
    for stmt in tree.body:
        imports_fairing = (
            isinstance(stmt, ast.Import) and any(a.name.split(".")[0] == "fairing" for a in stmt.names)
        ) or (isinstance(stmt, ast.ImportFrom) and (stmt.module or "").split(".")[0] == "fairing")
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for dec in stmt.decorator_list:
                if _uses(dec, names):
                    edits.append((dec.lineno, dec.end_lineno, ["# [fairing: decorator removed in the job]"]))
            continue
        if imports_fairing or _uses(stmt, names):
            start, end = stmt.lineno, stmt.end_lineno
            indent = re.match(r"\s*", lines[start - 1]).group(0)
            replaced = _comment(lines[start - 1:end], "submit call neutralised in the job")
            edits.append((start, end, [*replaced, f"{indent}pass"]))
    for start, end, new in sorted(edits, reverse=True):
        lines[start - 1:end] = new
    return "\n".join(lines)


def notebook_to_script(notebook: Mapping[str, Any] | Any) -> str:
    """The notebook's code cells as one Python script, safe to run in a job."""
    cells = [_strip_magics("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
             for c in notebook["cells"] if c.get("cell_type") == "code"]
    whole = "\n\n".join(cells)
    try:
        names = _fairing_names(ast.parse(whole)) or {"fairing"}
    except SyntaxError:
        names = {"fairing"}
    return "\n\n".join(f"# %% cell {i}\n{_neutralise_fairing(c, names)}" for i, c in enumerate(cells)) + "\n"


def _resolve_notebook(notebook_file) -> Path:
    if notebook_file is None:
        from ..notebook.locate import current_notebook

        return current_notebook()
    path = Path(notebook_file)
    if not path.is_file():
        raise EntryPointNotFoundError(
            f"The notebook {str(notebook_file)!r} does not exist (current directory: {os.getcwd()!r}). "
            "Check the path, or leave notebook_file out inside Jupyter to use the current notebook."
        )
    if path.suffix != ".ipynb":
        raise PackagingError(f"{str(notebook_file)!r} is not a notebook (.ipynb). Use PythonPreprocessor for a script.")
    return path


class _NotebookBase:
    def __init__(
        self,
        notebook_file: Optional[os.PathLike | str] = None,
        *,
        input_files: Iterable[os.PathLike | str] = (),
        requirements: Any = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.notebook = _resolve_notebook(notebook_file)
        self.base_dir = Path(base_dir) if base_dir is not None else self.notebook.resolve().parent
        self.input_files = input_files  # a path, a list, or a dict (collect_input_files reads each form)
        self.requirements = default_requirements(requirements, self.base_dir)
        self.env = dict(env or {})

    def _read(self):
        nbformat = _nbformat()
        try:
            return nbformat.read(str(self.notebook), as_version=4)
        except Exception as exc:
            raise PackagingError(f"Could not read the notebook {str(self.notebook)!r}: {exc}. Is it a valid .ipynb file?") from exc


class NotebookPreprocessor(_NotebookBase):
    """Convert the notebook (default: the current one) to a script and run that."""

    def context(self) -> BuildContext:
        script = notebook_to_script(self._read()).encode()
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        script_path = image_path(self.notebook, self.base_dir)[: -len(".ipynb")] + ".py"
        files[script_path] = script
        payload = {"kind": "script", "path": script_path, "args": []}
        return payload_context(payload, files, requirements=self.requirements, env=self.env)


class FullNotebookPreprocessor(_NotebookBase):
    """Run the whole notebook with papermill in the job; ``parameters`` go to its parameters cell.

    The job's result is the executed notebook (a dict in nbformat's JSON shape).
    """

    def __init__(self, notebook_file=None, *, parameters: Optional[Mapping[str, Any]] = None,
                 kernel_name: Optional[str] = None, **kwargs) -> None:
        super().__init__(notebook_file, **kwargs)
        self.parameters = dict(parameters or {})
        self.kernel_name = kernel_name

    def context(self) -> BuildContext:
        self._read()  # fail here, not in the job, on a broken notebook
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        path = image_path(self.notebook, self.base_dir)
        files[path] = self.notebook
        payload = {"kind": "notebook", "path": path, "parameters": self.parameters,
                   "output": path[: -len(".ipynb")] + ".output.ipynb", "kernel": self.kernel_name}
        return payload_context(payload, files, requirements=[*self.requirements, "papermill", "ipykernel"], env=self.env)
