"""fairing's public API as a type checker sees it: ``py.typed`` is shipped, ``@train`` and
``config.fn`` keep the function's parameters and return type, and a typed user's file
(tests/unit/typed/usage.py) passes ``mypy --strict``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USAGE = Path(__file__).parent / "typed" / "usage.py"


def test_py_typed_is_shipped_with_the_package():
    assert (ROOT / "fairing" / "py.typed").is_file()
    # the package's data: setuptools puts it in the wheel only when pyproject says so
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()


def _mypy(*files: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MYPYPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
                           "--cache-dir", str(cache), *map(str, files)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_typed_users_file_passes_strict_and_a_wrong_call_is_caught(tmp_path):
    wrong = tmp_path / "wrong.py"
    wrong.write_text(textwrap.dedent("""\
        import fairing
        from fairing import config

        @fairing.train(backend="local")
        def fit(alpha: float) -> int:
            return int(alpha)

        def g(x: int) -> str:
            return str(x)

        fit("a lot")
        n: str = fit(0.5)
        config.fn(g)(x="1")
        """))
    proc = _mypy(USAGE, wrong, cache=tmp_path / "cache")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    # usage.py is clean (its wrong calls carry the ignores they need); each wrong call in wrong.py is found
    assert not [line for line in lines if "usage.py" in line], proc.stdout + proc.stderr
    assert any(":11: error:" in line and "arg-type" in line for line in lines), proc.stdout + proc.stderr
    assert any(":12: error:" in line and "assignment" in line for line in lines), proc.stdout + proc.stderr
    assert any(":13: error:" in line and "arg-type" in line for line in lines), proc.stdout + proc.stderr
    assert len(lines) == 3, proc.stdout
