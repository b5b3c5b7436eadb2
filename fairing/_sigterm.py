"""What this process must not leave behind when it gets a SIGTERM, and the handler that sees to it.

A local job (:mod:`fairing.deployers.local`) stops with the process that started it; Ctrl-C
does that through ``KeyboardInterrupt``, and a SIGTERM, which Python would end the process
on at once, through the handler here: it stops every job this process owns (``_own``) and
finishes any cleanup under way or set up but not yet owned (``_Pending``: a job starting, a
map laying out its files, an output being downloaded), then ends the process by SIGTERM as
the default would. Apart from the deployer so that the outputs' download (a stage beside it)
and the facade can register cleanups without importing each other.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import weakref
from typing import Any, Optional

#: The cleanups of the jobs (and maps' shared files) this process must not leave behind,
#: with each job's process group (None for a directory), for the SIGTERM handler.
_OWNED: "dict[weakref.finalize, Optional[int]]" = {}
_SIGTERM_OWNER: Optional[int] = None  # the pid that installed the handler (a forked child is not it)
#: Cleanups under way, or set up but not yet owned (a job starting, a map laying out its
#: files): ``{token: (function, args, process group or None)}``. A SIGTERM that lands in the
#: middle of one (a ``delete()`` after Ctrl-C, a job's start-up) finishes it before the end.
_PENDING: "dict[object, tuple[Any, tuple, Optional[int]]]" = {}
_TERMINATING = False  # the handler runs: a second SIGTERM waits for it


class _Pending:
    """``with _Pending(fn, *args) as p:`` -- if a SIGTERM ends the process meanwhile,
    ``fn(*args)`` runs first; ``p.update(fn, *args, pgid=...)`` changes what runs."""

    def __init__(self, fn: Any, *args: Any, pgid: Optional[int] = None) -> None:
        self.update(fn, *args, pgid=pgid)

    def update(self, fn: Any, *args: Any, pgid: Optional[int] = None) -> None:
        _PENDING[self] = (fn, args, pgid)

    def __enter__(self) -> "_Pending":
        return self

    def __exit__(self, *_exc: Any) -> None:
        _PENDING.pop(self, None)


def _remove_dirs(*paths: str) -> None:
    """Remove each path (a directory, a file or a link); one already gone is fine."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _own(finalizer: weakref.finalize, pgid: Optional[int]) -> None:
    for dead in [f for f in _OWNED if not f.alive]:
        _OWNED.pop(dead, None)
    _OWNED[finalizer] = pgid
    _handle_sigterm()


def _handle_sigterm() -> None:
    """Install :func:`_on_sigterm`, once per process, from the main thread, over the default disposition only.

    Called when a local job or map starts, and when a :func:`fairing.train` function or a
    :class:`fairing.TrainJob` is made: those are made in the main thread even by a program
    that starts its jobs from worker threads, where no handler can be installed."""
    global _SIGTERM_OWNER
    if _SIGTERM_OWNER == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
            return  # the program handles SIGTERM itself
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter
        return
    _SIGTERM_OWNER = os.getpid()


def _on_sigterm(signum: int, _frame: Any) -> None:
    """Stop every owned job and remove its directories, then end by SIGTERM as the default would.

    A second SIGTERM meanwhile is ignored (it would end the process half-way through the
    cleanup); a cleanup the signal interrupted (a ``delete()``) or a job still starting is
    finished too."""
    global _TERMINATING
    if _TERMINATING:
        return  # the first one is cleaning up, and ends the process when it is done
    _TERMINATING = True
    if os.getpid() == _SIGTERM_OWNER:
        owned = [(f, pgid) for f, pgid in list(_OWNED.items()) if f.alive]
        pending = list(_PENDING.values())
        for pgid in [pgid for _f, pgid in owned] + [pgid for _fn, _args, pgid in pending]:
            if pgid is not None:  # all at once, then each waited for and removed
                try:
                    os.killpg(pgid, signal.SIGTERM)
                except OSError:
                    pass
        for fn, args, _pgid in pending:  # idempotent: stopping a stopped group, removing a removed directory
            fn(*args)
        for finalizer, _pgid in reversed(owned):  # a map's indexes before the files they share
            finalizer()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
