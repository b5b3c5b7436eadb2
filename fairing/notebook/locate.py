"""Finding the path of the notebook this kernel runs.

Tried in order: VS Code's ``__vsc_ipynb_file__``; the ``JPY_SESSION_NAME`` variable that
jupyter_server (2.x, used by Notebook 7 and JupyterLab 4) sets for each kernel; the
running servers' sessions API (jupyter_server, or the classic notebook server), matched
on this kernel's id. When none answers, :class:`NotebookNotFoundError` asks for the path.
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

_HOW_TO_FIX = "Pass the notebook's path explicitly, e.g. NotebookPreprocessor(notebook_file='train.ipynb')."


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
    session_name = os.environ.get("JPY_SESSION_NAME")
    if session_name and Path(session_name).is_file():
        return Path(session_name)
    kernel_id = _kernel_id()
    if kernel_id:
        found = _from_sessions_api(kernel_id, _running_servers())
        if found and found.is_file():
            return found
    raise NotebookNotFoundError(
        "Could not detect the current notebook: no VS Code notebook variable, no JPY_SESSION_NAME, and no "
        f"Jupyter server listed this kernel ({kernel_id or 'unknown id'}). {_HOW_TO_FIX}"
    )
