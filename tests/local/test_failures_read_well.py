"""A job that raises: its traceback appears once, without fairing's frames, naming the real
file or the IPython cell (``Cell In[2], line 3``), in a terminal, a script, IPython and a
notebook run by nbclient (its error box is monospace: ``<pre>``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli_terminal import Terminal

REPO = Path(__file__).resolve().parents[2]
FAIRING_FRAMES = ("fairing/cli.py", "fairing/api.py", "deployers/local.py", "fairing/results.py", "fairing_runtime",
                  "runpy", "<dynamic-code>", "RemoteTraceback")


def _env(tmp: Path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "TMPDIR": str(tmp),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def test_cli_a_failing_script_shows_its_traceback_once(workdir, tmp_path_factory):
    (workdir / "bad.py").write_text("def f(x):\n    return 1 / x\n\nprint('reading', flush=True)\nf(0)\n")
    term = Terminal(workdir, tmp_path_factory.mktemp("cache"))
    code, out = term.run("run", "bad.py")
    assert code == 1, out
    for frame in FAIRING_FRAMES:
        assert frame not in out, out
    assert out.count("Traceback (most recent call last)") == 1
    assert 'File "bad.py", line 5, in <module>' in out and 'File "bad.py", line 2, in f' in out
    assert out.count("ZeroDivisionError: division by zero") == 2  # the traceback's last line, and the error line
    assert out.rstrip().splitlines()[-1].startswith("fairing: error: the job ")
    assert "raised ZeroDivisionError: division by zero (its traceback is above)" in out.replace("\n", "")
    tail = out[out.index("reading"):].splitlines()
    assert len(tail) <= 10, out  # was some 45 lines for this two-frame error


def test_a_script_calling_a_train_function_shows_the_remote_traceback_once(tmp_path):
    (tmp_path / "fit.py").write_text(textwrap.dedent("""
        import fairing

        @fairing.train(backend="local", timeout=120)
        def fit(rate):
            steps = 10
            return steps / rate

        fit(0)
    """))
    proc = subprocess.run([sys.executable, "fit.py"], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 1, both
    assert both.count("return steps / rate") == 1, both  # the job's frame, with its source line, once
    assert 'File "fit.py", line 7, in fit' in both
    assert "<dynamic-code>" not in both and "RemoteTraceback" not in both and "fairing_runtime" not in both
    for frame in ("fairing/results.py", "deployers/local.py", "run_handle"):
        assert frame not in both, both
    assert "(raised in the job job-" in both


def test_ipython_names_the_cell(tmp_path):
    script = textwrap.dedent("""
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_cell("import fairing")
        ip.run_cell("@fairing.train(backend='local', timeout=120)\\ndef g(x):\\n    return 1 / x")
        result = ip.run_cell("g(0)")
        assert isinstance(result.error_in_exec, ZeroDivisionError)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 0, both
    assert re.search(r"Cell In\[\d+\], line 3, in g\n    return 1 / x\n", both), both
    assert both.count("return 1 / x") == 1, both
    # a terminal IPython shows the one frame that re-raised it (the notebook's error box hides it too)
    assert "<dynamic-code>" not in both and "fairing/results.py" not in both and "run_handle" not in both


def test_a_notebook_shows_the_traceback_once_in_a_monospace_box(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import fairing"),
                nbformat.v4.new_code_cell("@fairing.train(backend='local', timeout=120)\ndef g(x):\n    return 1 / x"),
                nbformat.v4.new_code_cell("g(0)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = _env(tmp_path)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=180, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = nb.cells[2].outputs
    error = [o for o in outputs if o.output_type == "error"]
    assert len(error) == 1 and error[0].ename == "ZeroDivisionError"
    # what a plain-text front end (or nbconvert) shows: each display's text/plain, then the error
    shown = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs
                      if o.output_type != "error") + "\n".join(error[0].traceback)
    assert shown.count("return 1 / x") == 1, shown  # once: in the job's log box, not again in the error
    assert re.search(r"Cell In\[\d+\], line 3, in g", shown)
    assert "fairing/api.py" not in "\n".join(error[0].traceback)  # only the cell's frames
    assert "<dynamic-code>" not in shown and "RemoteTraceback" not in shown and "fairing_runtime" not in shown
    boxes = [o for o in outputs if o.output_type == "display_data" and
             "fairing-error" in o.get("data", {}).get("text/html", "")]
    assert len(boxes) == 1 and "<pre" in boxes[0].data["text/html"]
    assert "the job raised ZeroDivisionError" in boxes[0].data["text/html"]
    logs = [o for o in outputs if "fairing-log" in o.get("data", {}).get("text/html", "")]
    assert logs and "<pre" in logs[-1].data["text/html"]


def _run_script(tmp_path: Path, source: str) -> tuple[int, str]:
    (tmp_path / "job.py").write_text(source)
    proc = subprocess.run([sys.executable, "-m", "fairing", "run", "job.py"], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_an_exception_whose_str_raises_is_still_reported_once_and_typed(tmp_path):
    """Its __str__ raising crashed the job's runtime while reporting: the traceback twice, with
    fairing's frames, and "exited with code 1 before reporting a result"."""
    code, out = _run_script(tmp_path, textwrap.dedent("""
        class Evil(Exception):
            def __str__(self):
                raise RuntimeError("str exploded")

        raise Evil("x")
    """))
    assert code == 1, out
    assert out.count("Traceback (most recent call last)") == 1, out
    assert "During handling" not in out and "fairing_runtime" not in out and "before reporting a result" not in out
    assert out.rstrip().splitlines()[-1].startswith("fairing: error: the job ")
    assert "raised Evil: <Evil.__str__ raised RuntimeError> (its traceback is above)" in out, out


def test_the_error_line_carries_no_terminal_escapes_and_no_megabytes(tmp_path):
    """The job's message is the job's text: the one ``fairing: error:`` line about it sets no
    terminal title, clears no screen and is not 200,000 characters long."""
    code, out = _run_script(tmp_path, 'raise ValueError("\\x1b[2J\\x1b]0;pwned\\x07clear" + "A" * 200000)\n')
    assert code == 1
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("fairing: error: the job ") and "raised ValueError: clearAAA" in last
    assert "\x1b" not in last and "\x07" not in last and len(last) < 600
