"""Where a pickled function's code came from, so that the job's traceback can say so.

cloudpickle names every code object it pickles by value ``<dynamic-code>`` (to keep the
payload deterministic), so a job's traceback reads ``File "<dynamic-code>", line 5, in fit``
with no source line. :func:`code_origins` records, for each function that travels by
value (the target, its nested functions, the functions of its own module it uses), the
name to show (``Cell In[3]`` as IPython shows a cell, else the file's path) and its source
lines; the runtime (:func:`fairing.runtime.__main__._format_exception`) puts them back.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any, Optional

__all__ = ["code_origins", "shown_name"]

#: At most this many functions, and this many source lines each, are recorded.
MAX_FUNCTIONS, MAX_LINES = 200, 2000


def shown_name(filename: str) -> str:
    """``Cell In[3]`` for an IPython cell's file, else the path (relative to the current directory
    when it is under it)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None) if ipython is not None else None
    shell = get() if get is not None else None
    compiler = getattr(shell, "compile", None)
    format_name = getattr(compiler, "format_code_name", None)
    if format_name is not None:
        try:
            found = format_name(filename)
        except Exception:  # another IPython's API: the path is shown
            found = None
        if found:
            return " ".join(found)  # ("Cell", "In[3]")
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return relative if not relative.startswith("..") else filename


def _codes(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _functions(target: Any) -> list:
    """The target's functions (a class's methods) and the functions of its own module they
    call, and those call, by name."""
    found: list = []
    if isinstance(target, type):
        found += [v for v in vars(target).values() if isinstance(v, types.FunctionType)]
    elif isinstance(target, types.FunctionType):
        found.append(target)
    module = getattr(target, "__module__", None)
    i = 0
    while i < len(found) and len(found) < MAX_FUNCTIONS:  # what they call, as cloudpickle ships it
        function = found[i]
        names = {name for code in _codes(function.__code__) for name in code.co_names}
        for name in sorted(names):
            value = function.__globals__.get(name)
            if isinstance(value, types.FunctionType) and value.__module__ == module and value not in found:
                found.append(value)
        i += 1
    return found[:MAX_FUNCTIONS]


def code_origins(target: Any) -> dict:
    """``{code name: {"file": shown name, "first": first line, "lines": [source lines]}}``;
    a name two different places use is left out (the traceback cannot tell them apart)."""
    import linecache

    out: dict = {}
    clashes: set = set()
    functions = _functions(target)
    own = {id(f) for f in functions if f is target or getattr(target, "__dict__", {}).get(f.__name__) is f}
    for function in functions:
        # the target's nested functions travel with it; another function's do not (only itself)
        codes = _codes(function.__code__) if id(function) in own else [function.__code__]
        for code in codes:
            filename = code.co_filename
            if not filename or filename.startswith("<") and not filename.startswith("<ipython-input"):
                continue
            lines = linecache.getlines(filename)
            first = code.co_firstlineno
            if hasattr(code, "co_lines"):  # 3.10+
                lasts = [line for _start, _end, line in code.co_lines() if line is not None]
            else:  # 3.9: the line table as (offset, line) pairs
                import dis

                lasts = [line for _offset, line in dis.findlinestarts(code)]
            last = min(max(lasts, default=first), first + MAX_LINES)
            entry = {"file": shown_name(filename), "first": first,
                     "lines": [line.rstrip("\n") for line in lines[first - 1:last]]}
            known: Optional[dict] = out.get(code.co_name)
            if known is not None and (known["file"], known["first"]) != (entry["file"], entry["first"]):
                clashes.add(code.co_name)
            out[code.co_name] = entry
    for name in clashes:
        out.pop(name, None)
    return out
