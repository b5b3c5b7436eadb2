"""Driving ``fairing`` in a real pseudo-terminal (pexpect), as a person at a terminal would.

``Terminal(cwd, cache)`` runs ``python3 -m fairing`` with this checkout first on the path
and fairing's cache (job records, kept logs) in ``cache``, so each test sees only its jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pexpect
import pyte

REPO = Path(__file__).resolve().parents[1]
COLUMNS, LINES = 160, 50


def plain(text: str) -> str:
    """What a person would read on the terminal after ``text``: the output played through a
    terminal emulator (pyte), so a spinner line that rich redrew or erased is gone, not
    glued to the next line as it would be if the escape codes were only stripped."""
    screen = pyte.HistoryScreen(COLUMNS, LINES, history=1_000_000)
    stream = pyte.Stream(screen)
    stream.feed(text)
    rows = ["".join(row[x].data for x in range(COLUMNS)) for row in screen.history.top]
    rows += screen.display
    lines = [row.rstrip() for row in rows]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + ("\n" if lines else "")


class Terminal:
    def __init__(self, cwd: Path, cache: Path, env: Optional[dict] = None) -> None:
        self.cwd = cwd
        self.env = {**os.environ, "XDG_CACHE_HOME": str(cache), "TERM": "xterm-256color", "COLUMNS": str(COLUMNS),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    **(env or {})}

    def spawn(self, *args: str, env: Optional[dict] = None) -> pexpect.spawn:
        return pexpect.spawn(sys.executable, ["-m", "fairing", *args], cwd=str(self.cwd),
                             env={**self.env, **(env or {})}, encoding="utf-8", timeout=120,
                             dimensions=(LINES, COLUMNS))

    def run(self, *args: str, timeout: float = 180, env: Optional[dict] = None) -> tuple[int, str]:
        """Run to the end; (exit code, output without terminal codes)."""
        child = self.spawn(*args, env=env)
        child.expect(pexpect.EOF, timeout=timeout)
        child.close()
        code = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
        return code, plain(child.before or "")

    def piped(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run with stdout and stderr piped (as in a script), not in the terminal."""
        return subprocess.run([sys.executable, "-m", "fairing", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str, timeout: float = 180) -> tuple[int, object]:
        """Run piped with --output json; (exit code, the document on stdout)."""
        proc = self.piped(args[0], "--output", "json", *args[1:], timeout=timeout)  # before any --
        return proc.returncode, json.loads(proc.stdout)
