"""Finding the path of the notebook this kernel runs.

Tried in order: VS Code's ``__vsc_ipynb_file__``; ``PAPERMILL_INPUT_PATH``, which papermill puts in the notebook's namespace with
``--inject-paths`` (or ``--inject-input-path``, or given as a parameter); the command line
of the process that started this kernel, when it is a notebook runner's (``jupyter
nbconvert --execute train.ipynb``, ``jupyter execute train.ipynb``, ``papermill train.ipynb
out.ipynb``: the one notebook it names, relative to that process's directory; read from
``/proc``, so on Linux; only a runner's, never ``jupyter lab other.ipynb`` or a driver script's arguments); the
``JPY_SESSION_NAME`` variable that jupyter_server (2.x, used by Notebook 7 and JupyterLab 4) sets for each
kernel (after the runner: a kernel a runner started inherits its caller's); the running servers' sessions API (jupyter_server, or the classic
notebook server), matched on this kernel's id.

nbclient and nbconvert give the kernel only a working directory, and papermill's Python
API the parameters: a notebook run by them from Python code cannot be found, and
:class:`NotebookNotFoundError` says what to write instead
(``config.set_preprocessor('notebook', notebook_file=...)``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

from ..errors import NotebookNotFoundError

__all__ = ["current_notebook"]

_HOW_TO_FIX = ("Name it before config.run(): config.set_preprocessor('notebook', notebook_file='train.ipynb') "
               "(with TrainJob: TrainJob('train.ipynb')). Under papermill, --inject-paths (or the parameter "
               "PAPERMILL_INPUT_PATH) lets fairing find it; a kernel started with JPY_SESSION_NAME=<path> "
               "in its environment is found too.")

#: The ancestors of the kernel process whose command lines are read (the runner is its parent,
#: or a launcher's parent).
_ANCESTORS = 3


def _proc_parent(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


#: papermill's options that take a value (two for -p/-r): their values are not the input notebook.
_PAPERMILL_VALUES = {"-p": 2, "--parameters": 2, "-r": 2, "--parameters_raw": 2, "-f": 1, "--parameters_file": 1,
                     "-y": 1, "--parameters_yaml": 1, "-b": 1, "--parameters_base64": 1, "--cwd": 1, "-k": 1,
                     "--kernel": 1, "-l": 1, "--language": 1, "--engine": 1, "--log-level": 1,
                     "--start-timeout": 1, "--start_timeout": 1, "--execution-timeout": 1, "--inject-paths": 0}


def _runner(argv: "list[str]") -> Optional[str]:
    """Which notebook runner ``argv`` is ("papermill", "jupyter"), or None: only a runner's command line
    says which notebook a kernel runs (``jupyter lab other.ipynb`` or ``python drive.py other.ipynb``
    starting a kernel does not)."""
    names = [os.path.basename(a) for a in argv[:4]]
    if any(n == "papermill" or n.startswith("papermill-") for n in names):
        return "papermill"
    if any(n in ("jupyter-nbconvert", "jupyter-execute") for n in names):
        return "jupyter"
    if any(n == "jupyter" or n.startswith("jupyter.") for n in names) and any(
            a in ("nbconvert", "execute") for a in argv[1:4]):
        return "jupyter"
    return None


def _papermill_input(args: "list[str]") -> "list[str]":
    """papermill INPUT [OUTPUT], its options' values skipped (``-p template t.ipynb in.ipynb``)."""
    positional, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and "=" not in arg:
            i += 1 + _PAPERMILL_VALUES.get(arg, 0)
            continue
        if not arg.startswith("-"):
            positional.append(arg)
        i += 1
    return [a for a in positional[:1] if a.endswith(".ipynb")]


def _from_runner_command_line(pid: Optional[int] = None) -> Optional[Path]:
    """The one .ipynb named by the command line of the notebook runner that started this kernel
    (nbconvert --execute, jupyter execute, papermill's input), or None. Two notebooks
    (nbconvert given several) cannot be told apart: None. The path is the runner's, made
    absolute against its directory (a symlinked notebook keeps its own directory)."""
    current = os.getpid() if pid is None else pid
    for _ in range(_ANCESTORS):
        parent = _proc_parent(current)
        if not parent or parent <= 1:
            return None
        try:
            with open(f"/proc/{parent}/cmdline", "rb") as fh:
                argv = [a.decode("utf-8", "surrogateescape") for a in fh.read().split(b"\0") if a]
            cwd = os.readlink(f"/proc/{parent}/cwd")
        except OSError:
            return None
        kind = _runner(argv)
        if kind is not None:
            start = next(i for i, a in enumerate(argv) if os.path.basename(a).startswith(("papermill", "jupyter")))
            args = argv[start + 1:]
            if kind == "papermill":
                named = _papermill_input(args)
            else:
                named = [a for a in args if a.endswith(".ipynb") and not a.startswith("-")]
            found = {Path(os.path.normpath(os.path.join(cwd, a))) for a in named}
            found = {p for p in found if p.is_file()}
            return found.pop() if len(found) == 1 else None
        current = parent
    return None


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _kernel_id() -> Optional[str]:
    try:
        import ipykernel
    except ImportError:
        return None
    try:
        connection_file = ipykernel.get_connection_file()
    except Exception:  # not running inside a kernel
        return None
    match = re.search(r"kernel-([\w-]+)\.json", os.path.basename(connection_file))
    return match.group(1) if match else None


def _running_servers() -> Iterable[dict]:
    try:
        from jupyter_server import serverapp

        yield from serverapp.list_running_servers()
    except ImportError:
        pass
    try:
        from notebook import notebookapp  # classic Notebook < 7

        yield from notebookapp.list_running_servers()
    except ImportError:
        pass


def _from_sessions_api(kernel_id: str, servers: Iterable[dict]) -> Optional[Path]:
    for server in servers:
        url = server["url"].rstrip("/") + "/api/sessions"
        request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token', '')}"})
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                sessions = json.load(response)
        except (OSError, ValueError):
            continue
        for session in sessions:
            if session.get("kernel", {}).get("id") == kernel_id:
                root = server.get("root_dir") or server.get("notebook_dir") or ""
                rel = session.get("path") or session.get("notebook", {}).get("path", "")
                return Path(root) / rel
    return None


def current_notebook() -> Path:
    """The path of the notebook whose kernel runs this code."""
    shell = _ipython()
    if shell is None:
        raise NotebookNotFoundError(f"This code is not running in a notebook, so there is no notebook to find. {_HOW_TO_FIX}")
    vscode = shell.user_ns.get("__vsc_ipynb_file__")
    if vscode and Path(vscode).is_file():
        return Path(vscode)
    # A runner's before JPY_SESSION_NAME: a notebook that runs `!papermill other.ipynb ...` hands
    # its own JPY_SESSION_NAME down to the kernel papermill starts, which would take the parent for itself.
    papermill = shell.user_ns.get("PAPERMILL_INPUT_PATH")
    if isinstance(papermill, str) and papermill.endswith(".ipynb") and Path(papermill).is_file():
        return Path(papermill)
    runner = _from_runner_command_line()
    if runner is not None:
        return runner
    session_name = os.environ.get("JPY_SESSION_NAME")
    if session_name and Path(session_name).is_file():
        return Path(session_name)
    kernel_id = _kernel_id()
    if kernel_id:
        found = _from_sessions_api(kernel_id, _running_servers())
        if found and found.is_file():
            return found
    raise NotebookNotFoundError(
        "Could not detect the current notebook: no VS Code notebook variable, no JPY_SESSION_NAME, no "
        "PAPERMILL_INPUT_PATH, no notebook runner's command line naming one notebook, and no Jupyter server "
        f"listed this kernel ({kernel_id or 'unknown id'}). {_HOW_TO_FIX}"
    )
