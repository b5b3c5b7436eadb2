"""Notebook preprocessors: convert a notebook to a script, or run it whole with papermill.

Conversion keeps every statement the user wrote. Each code cell goes through IPython's
own input transformer (``IPython.core.inputtransformer2.TransformerManager``, the one
the kernel uses), which turns ``%magic``, ``%%cell_magic``, ``!cmd`` and ``obj?`` into
``get_ipython()`` calls and leaves everything else alone (so a triple-quoted string
whose lines start with ``!`` or ``%`` stays a string). Then, before anything is
submitted:

- a cell that does not compile is a :class:`PackagingError` naming the cell and line;
- every ``get_ipython()`` call is checked against what the job's shell
  (``fairing/runtime/shell.py``) runs; anything else is a :class:`PackagingError`
  naming the cell and line and saying what to do instead. Shell commands (``!cmd``,
  ``%%bash``) pass only with ``allow_shell=True``;
- ``%pip install ...`` becomes requirements of the image (and a no-op in the job).

fairing's own calls stay: in the job ``FAIRING_RUNTIME`` makes ``config.run()``,
``config.fn(f)`` and ``@fairing.train`` no-ops (``fn`` and the decorator return the
plain function), and fairing's pure-Python package is shipped under ``.fairing/`` so
``import fairing`` works in any image.

Which content is converted (``cells=``): ``"current"`` (default) reads the saved file
and, inside the notebook's own kernel, refuses with :class:`NotebookStaleError` when the
kernel ran code the file does not have; ``"saved"`` reads the file without that check;
``"executed"`` takes the cells the kernel ran, in the order it ran them.

It stays one module past 450 lines because the conversion and its checks walk the same
cells and must agree, line for line, on what the job's shell will run.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..context import BuildContext
from ..errors import (ConfigurationError, EntryPointNotFoundError, MissingDependencyError, NotebookStaleError,
                      PackagingError)
from ..runtime import fairing_package_files
from ..runtime.shell import CELL_MAGICS, LINE_MAGICS, PYTHON_CELL_MAGICS, SHELL_MAGICS
from ..requirements import Requirements, read_requirements_file
from .base import Described, add_generated, default_requirements, payload_context
from .files import collect_input_files, image_path

__all__ = ["NotebookPreprocessor", "FullNotebookPreprocessor", "ConvertedNotebook", "convert_notebook", "CELL_CHOICES"]

#: What ``cells=`` accepts.
CELL_CHOICES = ("current", "saved", "executed")

#: The first line of every converted script: the job's answers to IPython's calls.
SCRIPT_HEADER = "from fairing_runtime.shell import display, get_ipython  # [fairing] IPython's calls, run by the job\n"

_SHELL_FIX = ("Shell commands run in the job only when you allow it: NotebookPreprocessor(allow_shell=True), "
              "or config.set_preprocessor('notebook', allow_shell=True).")
_PIP_FLAGS_IGNORED = {"-q", "-qq", "-qqq", "--quiet", "-U", "--upgrade", "--no-cache-dir", "--user",
                      "--no-warn-script-location", "--disable-pip-version-check"}


def _nbformat():
    try:
        import nbformat
    except ImportError as exc:
        raise MissingDependencyError("nbformat", "notebook", "Packaging a notebook") from exc
    return nbformat


def _transformer():
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError as exc:
        raise MissingDependencyError("IPython", "notebook", "Converting a notebook's magics") from exc
    return TransformerManager()


@dataclass(frozen=True)
class ConvertedNotebook:
    """A notebook as a script for the job, with what the conversion found."""

    script: str
    requirements: tuple[str, ...] = ()
    imports_fairing: bool = False
    #: Where each cell's code starts in ``script``: ``(line, cell number, blank lines the
    #: conversion dropped before it, "Cell" or "Input")``, for messages about a line of it.
    cells: tuple[tuple[int, int, int, str], ...] = ()
    #: The requirement files ``%pip install -r`` read (what the content scan reads).
    requirement_files: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def where(self, line: int) -> str:
        """"cell 3, line 2" for a line of ``script``."""
        for start, number, offset, kind in reversed(self.cells):
            if line >= start:
                return f"{kind.lower()} {number}, line {line - start + 1 + offset}"
        return f"line {line} of the converted script"


@dataclass(frozen=True)
class _Cell:
    number: int  # 1-based position in the notebook, as the user counts cells
    source: str
    kind: str = "Cell"  # "Input" for the kernel's executed inputs, counted in the order they ran

    def where(self, line: int) -> str:
        lines = self.source.splitlines()
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return f"{self.kind} {self.number}, line {line} ({text!r})"


def _syntax_error(cell: _Cell, line: int, exc: SyntaxError) -> PackagingError:
    return PackagingError(f"{cell.where(line)} has a syntax error: {exc.msg}. Fix the cell (it would fail in the "
                          "job the same way), or clear it.")


def _source(cell: Mapping[str, Any]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def _leading_blank_lines(source: str) -> int:
    count = 0
    for line in source.splitlines():
        if line.strip():
            break
        count += 1
    return count


_SHELL_METHODS = ("run_line_magic", "run_cell_magic", "system", "getoutput")


def _shell_names(tree: ast.Module) -> tuple[frozenset, frozenset]:
    """Names bound to the shell object (``ip = get_ipython()``) and to the function itself
    (``g = get_ipython``), followed through plain assignments until nothing changes."""
    functions, shells = {"get_ipython"}, set()
    changed = True
    while changed:
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):  # from IPython import get_ipython as gi
                for alias in node.names:
                    if alias.name == "get_ipython" and (alias.asname or alias.name) not in functions:
                        functions.add(alias.asname or alias.name)
                        changed = True
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
                value = node.value
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                value, targets = node.context_expr, [node.optional_vars]
            else:
                continue
            into = shells if _is_shell(value, functions, shells) else functions if (
                isinstance(value, ast.Name) and value.id in functions) else None
            if into is None:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id not in into:
                    into.add(target.id)
                    changed = True
    return frozenset(functions), frozenset(shells)


def _is_shell(node: Optional[ast.AST], functions, shells) -> bool:
    """``get_ipython()`` (or an alias of it called), ``IPython.get_ipython()``, or a name bound to the shell."""
    if isinstance(node, ast.Name):
        return node.id in shells
    if isinstance(node, ast.Call):
        func = node.func
        return (isinstance(func, ast.Name) and func.id in functions) or (
            isinstance(func, ast.Attribute) and func.attr == "get_ipython")
    return False


def _ipython_call(node: ast.AST, functions=frozenset({"get_ipython"}), shells=frozenset()) -> Optional[tuple[str, list]]:
    """``('run_line_magic', [args])`` for ``get_ipython().run_line_magic(...)`` (or the same
    on a name bound to the shell), ``(attr, None)`` for any other use of ``<shell>.attr``,
    and ``('getattr', None)`` for ``getattr(<shell>, ...)``; else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SHELL_METHODS \
            and _is_shell(node.func.value, functions, shells):
        return node.func.attr, node.args
    if isinstance(node, ast.Attribute) and node.attr not in _SHELL_METHODS and _is_shell(node.value, functions, shells):
        return node.attr, None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr") \
            and node.args and _is_shell(node.args[0], functions, shells):
        return node.func.id, None
    return None


def _writefile_path(line: str, where: str) -> None:
    """Refuse a literal ``%%writefile`` path that leaves the job's directory."""
    args = line.split()
    path = " ".join(args[1:] if args and args[0] in ("-a", "--append") else args).strip("'\"")
    if "$" in path or "{" in path or not path:
        return  # known in the job only: its shell checks it there
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "~")) or os.path.isabs(path) or ".." in parts:
        raise PackagingError(
            f"{where}: %%writefile {path} would write outside the job's directory. Write below it (a relative path "
            "such as 'out/file.txt'); keep what must come back under $FAIRING_OUTPUTS.")


def _pip_requirements(line: str, where: str, base_dir: Path, files: Optional[list] = None) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    args = shlex.split(line)
    if not args or args[0] != "install":
        raise PackagingError(
            f"{where}: %pip {args[0] if args else ''} cannot run in the job; only %pip install can, and it becomes "
            "a requirement of the image. Remove the line, or run it in a terminal.")
    requirements: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in _PIP_FLAGS_IGNORED:
            continue
        if arg in ("-r", "--requirement"):
            path = next(rest, None)
            if path is None:
                raise PackagingError(f"{where}: %pip install -r needs a file name.")
            read = read_requirements_file(base_dir / path)
            requirements += read.lines
            if files is not None:
                files.extend(read.files)
            continue
        if arg.startswith("-"):
            raise PackagingError(
                f"{where}: the pip option {arg} cannot become a requirement of the image. Give the packages in "
                "requirements=[...] (or a requirements.txt next to the notebook) instead.")
        if "$" in arg or "{" in arg:
            raise PackagingError(
                f"{where}: {arg!r} uses a variable, which cannot be known before submit. Write the requirement "
                "out, e.g. %pip install scikit-learn==1.5.2.")
        try:
            Requirement(arg)
        except InvalidRequirement as exc:
            raise PackagingError(f"{where}: {arg!r} is not a valid requirement ({exc}).") from None
        requirements.append(arg)
    return requirements


def _check_ipython_calls(tree: ast.Module, cell: _Cell, offset: int, allow_shell: bool, base_dir: Path,
                         files: Optional[list] = None) -> list[str]:
    """Refuse what the job's shell cannot run; return the requirements of ``%pip install``."""
    requirements: list[str] = []
    functions, shells = _shell_names(tree)
    for node in ast.walk(tree):
        call = _ipython_call(node, functions, shells)
        if call is None:
            continue
        method, args = call
        where = cell.where(node.lineno + offset)
        if method in ("getattr", "setattr"):
            raise PackagingError(f"{where}: {method}() on IPython's shell cannot be checked before submit (it may run "
                                 "shell commands in the job). Call the magic by name, or write the step in Python.")
        if args is None:
            raise PackagingError(f"{where}: get_ipython().{method} is not available in a fairing job. Remove it, "
                                 "or move it into a module the notebook imports, guarded there with "
                                 "`if not in_job():` (from fairing.api import in_job).")
        if method in ("system", "getoutput"):
            command = args[0].value if args and isinstance(args[0], ast.Constant) else ""
            if isinstance(command, str) and command.split()[:2] in (["pip", "install"], ["pip3", "install"]):
                raise PackagingError(f"{where} installs packages with a shell command. Write it as %pip install "
                                     "..., which becomes a requirement of the image (and works in the kernel too).")
            if not allow_shell:
                raise PackagingError(f"{where} runs a shell command, which would run in the job too. {_SHELL_FIX}")
            continue
        literal = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(literal) != len(args) or not literal:
            raise PackagingError(f"{where}: this get_ipython() call has arguments that are not plain strings, so "
                                 "fairing cannot check before submit that it runs in the job. Write the magic out.")
        name, line = literal[0], (literal[1] if len(literal) > 1 else "")
        cell_magic = method == "run_cell_magic"
        shown = f"%%{name}" if cell_magic else f"%{name}"
        if name in SHELL_MAGICS and not allow_shell:
            raise PackagingError(f"{where}: {shown} runs shell commands, which would run in the job too. {_SHELL_FIX}")
        if cell_magic and name == "writefile":
            _writefile_path(line, where)
        if cell_magic and name in PYTHON_CELL_MAGICS and len(literal) > 2:
            try:
                body = ast.parse(literal[2])
            except SyntaxError as exc:  # the body starts on the cell's second line
                raise _syntax_error(cell, node.lineno + offset + (exc.lineno or 1), exc) from None
            # the body is Python the job runs: the same checks (its lines start on the cell's second line)
            requirements += _check_ipython_calls(body, cell, node.lineno + offset, allow_shell, base_dir, files)
        if not cell_magic and name in ("time", "timeit"):
            try:
                inner = ast.parse(line)
            except SyntaxError:
                inner = None  # the job reports it, as IPython would
            if inner is not None:
                requirements += _check_ipython_calls(inner, cell, node.lineno + offset - 1, allow_shell, base_dir,
                                                     files)
        if not cell_magic and name == "pip":
            requirements += _pip_requirements(line, where, base_dir, files)
        elif not cell_magic and name in ("load_ext", "reload_ext") and line.split() != ["autoreload"]:
            raise PackagingError(f"{where}: the IPython extension {line.strip()!r} cannot be loaded in a fairing job. "
                                 "Remove the line, or import what the extension provides as a module.")
        elif name not in (CELL_MAGICS if cell_magic else LINE_MAGICS):
            hint = " Use %pip install, which becomes a requirement of the image." if name == "conda" else ""
            raise PackagingError(
                f"{where}: {shown} cannot run in a fairing job.{hint} The job runs these: "
                f"{', '.join(sorted('%' + m for m in LINE_MAGICS))}, "
                f"{', '.join(sorted('%%' + m for m in CELL_MAGICS))}. Remove it or write it as Python.")
    return requirements


def _imports_fairing(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "fairing" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fairing" and not node.level:
            return True
    return False


def convert_notebook(notebook: Mapping[str, Any] | Any, *, allow_shell: bool = False,
                     base_dir: Optional[os.PathLike | str] = None, kind: str = "Cell") -> ConvertedNotebook:
    """The notebook's code cells as one script for the job; :class:`PackagingError` when
    a cell would not run there (see the module's docstring). Errors name ``"<kind> N, line L"``."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    transformer = _transformer()
    parts, requirements, imports_fairing = [SCRIPT_HEADER], [], False
    cells: list[tuple[int, int, int, str]] = []
    files: list = []
    line = SCRIPT_HEADER.count("\n") + 1
    for number, raw in enumerate(notebook["cells"], 1):
        if raw.get("cell_type") != "code":
            continue
        cell = _Cell(number, _source(raw), kind)
        if not cell.source.strip():
            continue
        code = transformer.transform_cell(cell.source)
        offset = _leading_blank_lines(cell.source)
        try:
            tree = ast.parse(code, f"<cell {number}>")
        except SyntaxError as exc:
            raise _syntax_error(cell, (exc.lineno or 1) + offset, exc) from None
        requirements += _check_ipython_calls(tree, cell, offset, allow_shell, base, files)
        imports_fairing = imports_fairing or _imports_fairing(tree)
        part = f"\n# %% cell {number}\n{code.rstrip()}\n"
        cells.append((line + 2, number, offset, kind))
        line += part.count("\n")
        parts.append(part)
    return ConvertedNotebook("".join(parts), tuple(dict.fromkeys(requirements)), imports_fairing, tuple(cells),
                             tuple(dict.fromkeys(files)))


#: How papermill's injected parameters cell starts (its Python translator's header).
_PAPERMILL_PARAMETERS = "# Parameters\n"


def _with_papermill_parameters(notebook: Mapping[str, Any], inputs: list) -> Mapping[str, Any]:
    """The saved notebook with the parameters papermill injected into this kernel (a cell it
    ran that the file lacks, as ``papermill train.ipynb out.ipynb -p lr 0.1`` runs it), put
    where papermill puts them: after the cell tagged ``parameters``, else first. The job then
    runs with the same values."""
    injected = [text for text in inputs if text.startswith(_PAPERMILL_PARAMETERS)]
    cells = list(notebook.get("cells") or [])
    if not injected or any(_source(c) == injected[-1] for c in cells):
        return notebook
    tagged = [i for i, c in enumerate(cells) if "parameters" in ((c.get("metadata") or {}).get("tags") or [])]
    at = tagged[0] + 1 if tagged else 0
    cells.insert(at, {"cell_type": "code", "source": injected[-1], "metadata": {"tags": ["injected-parameters"]},
                      "outputs": [], "execution_count": None})
    return {**notebook, "cells": cells}


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
        self.detected = notebook_file is None
        self.notebook = _resolve_notebook(notebook_file)
        # The notebook's own directory (a symlinked notebook is a file of the directory it sits in).
        self.base_dir = Path(base_dir) if base_dir is not None else Path(os.path.realpath(self.notebook.absolute().parent))
        self.input_files = input_files  # a path, a list, or a dict (collect_input_files reads each form)
        self.requirements = default_requirements(requirements, self.base_dir)
        self.env = dict(env or {})

    def _read(self) -> Mapping[str, Any]:
        """The notebook as nbformat 4 JSON. Read directly (importing nbformat takes seconds);
        nbformat only upgrades older formats."""
        try:
            with open(self.notebook, encoding="utf-8") as fh:
                notebook = json.load(fh)
            if isinstance(notebook, dict) and notebook.get("nbformat") == 4 and isinstance(notebook.get("cells"), list):
                return notebook
            return _nbformat().read(str(self.notebook), as_version=4)
        except MissingDependencyError:
            raise
        except Exception as exc:
            raise PackagingError(f"Could not read the notebook {str(self.notebook)!r}: {exc}. Is it a valid .ipynb file?") from exc


class NotebookPreprocessor(_NotebookBase):
    """Convert the notebook (default: the current one) to a script and run that.

    ``cells`` is ``"current"`` (default), ``"saved"`` or ``"executed"`` (see the module's
    docstring); ``allow_shell=True`` lets ``!cmd`` and ``%%bash`` run in the job [False].
    """

    def __init__(self, notebook_file: Optional[os.PathLike | str] = None, *, cells: str = "current",
                 allow_shell: bool = False, **kwargs: Any) -> None:
        if cells not in CELL_CHOICES:
            raise ConfigurationError(f"cells must be one of {', '.join(map(repr, CELL_CHOICES))}, got {cells!r}.")
        if not isinstance(allow_shell, bool):
            raise ConfigurationError(f"allow_shell must be True or False, got {allow_shell!r}.")
        super().__init__(notebook_file, **kwargs)
        self.cells = cells
        self.allow_shell = allow_shell

    def _notebook_content(self):
        from ..notebook import history

        if self.cells == "executed":
            inputs = history.kernel_inputs()
            if inputs is None:
                raise ConfigurationError("cells='executed' takes the cells this kernel ran, but this code is not "
                                         "running in an IPython kernel. Use cells='current' (the saved notebook).")
            return {"cells": [{"cell_type": "code", "source": text} for text in inputs]}
        notebook = self._read()
        if self.cells == "current" and history.is_kernel_notebook(self.notebook, detected=self.detected):
            notebook = _with_papermill_parameters(notebook, history.kernel_inputs() or [])
            missing = history.unsaved_inputs(history.kernel_inputs() or [],
                                             [_source(c) for c in notebook["cells"] if c.get("cell_type") == "code"])
            if missing:
                shown = "; ".join(repr(text.strip().splitlines()[0][:60]) for text in missing[:3])
                raise NotebookStaleError(
                    f"The saved notebook {str(self.notebook)!r} is older than what this kernel ran: "
                    f"{len(missing)} executed cell(s) are not in the file ({shown}). Save the notebook "
                    "(Ctrl+S) and run again, or choose: cells='executed' runs the cells this kernel ran, "
                    "cells='saved' runs the saved file as it is.")
        return notebook

    def context(self) -> BuildContext:
        converted = convert_notebook(self._notebook_content(), allow_shell=self.allow_shell, base_dir=self.base_dir,
                                     kind="Input" if self.cells == "executed" else "Cell")
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        script_path = image_path(self.notebook, self.base_dir)[: -len(".ipynb")] + ".py"
        add_generated(files, script_path, converted.script.encode(), f"The script converted from {self.notebook}")
        own = fairing_package_files() if converted.imports_fairing else {}
        for path, source in own.items():
            add_generated(files, path, source, "fairing's own package (the notebook imports fairing)")
        payload = {"kind": "script", "path": script_path, "args": [], "allow_shell": self.allow_shell}
        requirements = self.requirements.plus(Requirements(converted.requirements, (), converted.requirement_files))
        return payload_context(payload, files, requirements=requirements, env=self.env, own=own,
                               described={script_path: Described(f"{self.notebook} (converted to {script_path})",
                                                                 converted.where)})


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
        notebook = self._read()  # fail here, not in the job, on a broken notebook
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        path = image_path(self.notebook, self.base_dir)
        add_generated(files, path, self.notebook, f"The notebook {self.notebook}")
        kernel = self.kernel_name
        spec = (notebook.get("metadata") or {}).get("kernelspec")
        if kernel is None and not (isinstance(spec, Mapping) and spec.get("name")):
            # a notebook written by a tool (jupytext, a script, nbformat.v4.new_notebook()) may have no
            # kernelspec; papermill then refuses it. The image's kernel is ipykernel's, 'python3'.
            kernel = "python3"
        metadata = notebook.get("metadata") or {}
        known_language = (isinstance(spec, Mapping) and spec.get("language")) or \
            (isinstance(metadata.get("language_info"), Mapping) and metadata["language_info"].get("name"))
        payload = {"kind": "notebook", "path": path, "parameters": self.parameters,
                   "output": path[: -len(".ipynb")] + ".output.ipynb", "kernel": kernel,
                   "language": None if known_language else "python"}
        return payload_context(payload, files, requirements=self.requirements.plus(["papermill", "ipykernel"]),
                               env=self.env)
