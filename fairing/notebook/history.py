"""What this kernel ran, compared with the saved notebook, so stale code never runs silently.

IPython keeps the raw text of every cell the kernel executed in this session
(``history_manager.input_hist_raw``, the running cell last). The saved ``.ipynb`` is
*stale* when one of those inputs is in none of its code cells: the cell was run and
then not saved, or edited and run without saving. An input the user later ran again
in an edited form (a later input at least half similar, by :mod:`difflib`) does not
count: the later one is what the kernel holds now, and it is checked in its turn.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["kernel_inputs", "is_kernel_notebook", "unsaved_inputs"]

_EDITED = 0.5


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython else None


def kernel_inputs() -> Optional[list[str]]:
    """The cells this kernel ran, oldest first (the running one last); None outside IPython."""
    shell = _shell()
    if shell is None:
        return None
    return [text for text in shell.history_manager.input_hist_raw if text.strip()]


def is_kernel_notebook(path: Path, *, detected: bool) -> bool:
    """Whether ``path`` is the notebook of the kernel running this code."""
    from ..errors import NotebookNotFoundError
    from .display import in_notebook
    from .locate import current_notebook

    if not in_notebook():
        return False
    if detected:
        return True
    try:
        return current_notebook().resolve() == Path(path).resolve()
    except NotebookNotFoundError:
        return False


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip()


def unsaved_inputs(executed: Iterable[str], saved: Iterable[str]) -> list[str]:
    """The executed inputs that the saved cells lack (see the module's docstring)."""
    runs = [_normal(text) for text in executed]
    cells = {_normal(text) for text in saved}
    missing = []
    for i, text in enumerate(runs):
        if not text or text in cells:
            continue
        later = (difflib.SequenceMatcher(None, text, other) for other in runs[i + 1:])
        if any(m.real_quick_ratio() >= _EDITED and m.quick_ratio() >= _EDITED and m.ratio() >= _EDITED for m in later):
            continue
        missing.append(text)
    return missing
