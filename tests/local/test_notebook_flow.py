"""The notebook flow in a real Jupyter kernel: config.run() submits the notebook itself,
the job gets every statement, and the saved file is checked against what the kernel ran."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import nbformat
import papermill
import pytest
from jupyter_client import KernelManager

from tests.browser.flows import (README_FLOW, README_RESULTS, RUN_CELL, display_text, result_lines, stream_text,
                                 write_notebook)

pytestmark = pytest.mark.usefixtures("no_leftovers")


def test_readme_flow_runs_through_config_run_with_the_kernels_results(tmp_path, monkeypatch):
    path = write_notebook(tmp_path / "flow.ipynb", README_FLOW)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # what jupyter_server sets for the notebook's kernel
    nb = papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(tmp_path),
                                    kernel_name="python3", progress_bar=False)
    in_kernel = result_lines("".join(stream_text(c) for c in nb.cells))
    in_job = result_lines(display_text(nb.cells[RUN_CELL]))  # the job's log, rendered in the run cell
    assert in_kernel == README_RESULTS
    assert in_job == in_kernel
    status = display_text(nb.cells[RUN_CELL])
    assert "package ✓" in status and "build ✓" in status and "deploy ✓" in status


@contextlib.contextmanager
def _kernel(cwd: Path, env: dict):
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd), env={**os.environ, **env})
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=180)

        def run(code: str) -> str:
            out: list[str] = []

            def hook(msg):
                content = msg["content"]
                if msg["msg_type"] == "stream":
                    out.append(content["text"])
                elif msg["msg_type"] == "error":
                    out.append(f"{content['ename']}: {content['evalue']}")
                elif msg["msg_type"] in ("display_data", "update_display_data"):
                    displays[content.get("transient", {}).get("display_id") or len(displays)] = content["data"]

            client.execute_interactive(code, timeout=120, output_hook=hook)
            return "".join(out)

        displays: dict = {}
        run.displays = displays

        yield run
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


CHECK = ("from fairing.preprocessors.notebook import NotebookPreprocessor\n"
         "try:\n    ctx = NotebookPreprocessor(cells=CELLS).context()\nexcept Exception as exc:\n"
         "    print(type(exc).__name__, exc)\nelse:\n    print('SCRIPT', ctx.files['nb.py'].decode())")


def test_cells_run_but_not_saved_are_never_submitted_silently(tmp_path):
    path = write_notebook(tmp_path / "nb.ipynb", ["x = 1", "CELLS = 'current'", CHECK])
    with _kernel(tmp_path, {"JPY_SESSION_NAME": str(path)}) as run:
        run("x = 41")  # the first cell, edited and run, not saved
        run("CELLS = 'current'")
        out = run(CHECK)
        assert out.startswith("NotebookStaleError"), out
        assert "1 executed cell(s) are not in the file ('x = 41')" in out
        assert "Save the notebook" in out and "cells='executed'" in out and "cells='saved'" in out
        run("CELLS = 'executed'")
        out = run(CHECK)
        assert out.startswith("SCRIPT") and "\nx = 41\n" in out and "\nx = 1\n" not in out, out
        run("CELLS = 'saved'")
        out = run(CHECK)
        assert out.startswith("SCRIPT") and "\nx = 1\n" in out, out
        write_notebook(path, ["x = 41", "CELLS = 'current'", CHECK])  # saved now
        run("CELLS = 'current'")
        out = run(CHECK)
        assert out.startswith("SCRIPT") and "\nx = 41\n" in out, out
        run("%load_ext sql_not_in_the_file")
        run("CELLS = 'executed'")
        out = run(CHECK)  # the kernel's inputs are named in the order the kernel ran them
        assert out.startswith("PackagingError Input ") and "extension 'sql_not_in_the_file'" in out, out


RENDER = """
from fairing.events import LogLine, Stage
from fairing.notebook.display import NotebookRenderer
r = NotebookRenderer()
r(Stage('package', 'started'))
r(Stage('deploy', 'started'))
for i in range(250):
    r(LogLine(f'line {i} <b>', 'worker-0' if i % 2 else 'worker-1'))
r(LogLine('10%\\r', 'worker-0'))
r(LogLine('60%\\r', 'worker-0'))
r(Stage('deploy', 'finished', '0.1s'))
r(Stage('logs', 'failed', 'JobFailedError: the job exited with code 3'))
"""


def test_the_log_display_keeps_replicas_apart_folds_long_logs_and_redraws_progress(tmp_path):
    with _kernel(tmp_path, {}) as run:
        run(RENDER)
        texts = [d.get("text/plain", "") for d in run.displays.values()]
        htmls = [d.get("text/html", "") for d in run.displays.values()]
    log = next(t for t in texts if "line 249" in t)
    rows = log.splitlines()
    assert rows[0] == "... 51 earlier lines ..." and len(rows) == 201  # 200 shown, the rest folded
    assert rows[-2] == "[worker-0] line 249 <b>" and rows[-1] == "[worker-0] 60%"  # the \r line redrawn
    assert not any("10%" in r for r in rows)
    rich = next(h for h in htmls if "line 249" in h)
    assert "<details><summary>51 earlier lines</summary>" in rich and "line 0 &lt;b&gt;" in rich
    colours = set(re.findall(r"color:(#[0-9a-f]{6})'>\[worker", rich))
    assert len(colours) == 2  # one colour per replica
    assert any("deploy ✓ 0.1s" in t and "logs ✗" in t for t in texts)
    box = next(h for h in htmls if "fairing-error" in h)
    assert "fairing: logs failed" in box and "the job exited with code 3" in box


def test_the_job_shell_runs_the_magics_a_job_can_run(workdir):
    """The converted script, run against the job's shell, does what the kernel would."""
    from fairing.preprocessors.notebook import SCRIPT_HEADER, convert_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%env FAIRING_SHELL_TEST=hello\nprint('env', os.environ['FAIRING_SHELL_TEST'])",
        "%%capture captured\nprint('captured text')",
        "files = !ls\nname = 'world'\n!echo hi {name} > greeting.txt",
        "%%writefile -a greeting.txt\nmore\n",
        "x = %time 20 + 22",
        "%cd sub\nhere = %pwd",
        "%%bash\nexit 3",
    ]]
    from fairing.runtime import shell

    (workdir / "sub").mkdir()
    script = convert_notebook(nb, allow_shell=True).script
    ns = {"os": os}
    code = script.replace(SCRIPT_HEADER, "from fairing.runtime.shell import display, get_ipython\n")
    shell.configure(allow_shell=True, job_dir=workdir)  # what the runtime does from the payload
    try:
        with pytest.raises(Exception) as failed:
            exec(compile(code, "converted.py", "exec"), ns)
    finally:
        os.chdir(workdir)
        shell.configure(allow_shell=False)
    assert type(failed.value).__name__ == "CalledProcessError" and failed.value.returncode == 3
    assert os.environ.pop("FAIRING_SHELL_TEST") == "hello"
    assert ns["captured"].stdout == "captured text\n"
    assert "sub" in ns["files"]
    assert (workdir / "greeting.txt").read_text() == "hi world\nmore\n"
    assert ns["x"] == 42 and ns["here"] == str(workdir / "sub")
