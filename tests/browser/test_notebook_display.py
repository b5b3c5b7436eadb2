"""The notebook flow as a user sees it in JupyterLab (headless Chromium)."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser.flows import (FAILING, INTERRUPTED, README_FLOW, README_RESULTS, RUN_CELL, STREAMING, cluster_setup,
                                 readme_flow, result_lines, write_notebook)
from tests.e2e.conftest import wait_until

# One JupyterLab and one Chromium for the module, on one xdist worker: a server and a
# browser per worker would take the 2 cores from the tests waiting beside them.
pytestmark = pytest.mark.xdist_group("browser-display")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purposes
        return fh.read().split(")")[-1].split()[0] != "Z"


def _readme_flow(lab, notebook, name: str, cells: list[str]) -> None:
    """Run the README flow cell by cell; the job's log in the run cell shows what the kernel showed.
    (Each test has its own notebook name: JupyterLab keeps one kernel per notebook path.)"""
    write_notebook(lab.root / name, cells)
    notebook.open(name, len(cells))
    shown = [notebook.run(i, timeout=900) for i in range(len(cells))]
    log = notebook.output(RUN_CELL).locator(".fairing-log").inner_text()
    in_kernel = result_lines("\n".join(text for i, text in enumerate(shown) if i != RUN_CELL))
    assert result_lines(log) == README_RESULTS
    assert in_kernel == [r for r in README_RESULTS if r != "RESULT run None"]
    status = notebook.output(RUN_CELL).locator(".fairing-status").inner_text()
    assert "package ✓" in status and "deploy ✓" in status


def test_readme_flow_in_jupyterlab(lab, notebook):
    _readme_flow(lab, notebook, "flow.ipynb", README_FLOW)
    assert lab.job_dirs() == []


@pytest.mark.e2e
def test_readme_flow_in_jupyterlab_on_the_cluster(lab, notebook, base_image, registry_address, kubeconfig,
                                                   namespace, kube):
    _readme_flow(lab, notebook, "flow_cluster.ipynb", readme_flow(cluster_setup(
        base_image=base_image, registry=f"{registry_address}/fairing-e2e", namespace=namespace, kubeconfig=kubeconfig)))
    assert kube.batch.list_namespaced_job(namespace).items == []


def _log(notebook, i: int) -> str:
    return notebook.output(i).locator(".fairing-log").inner_text()


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_logs_stream_into_the_cell_while_the_job_runs(lab, notebook, app):
    """In JupyterLab and in Notebook 7."""
    write_notebook(lab.root / f"stream_{app}.ipynb", STREAMING)
    notebook.open(f"stream_{app}.ipynb", len(STREAMING), app=app)
    notebook.run(0)
    notebook.start(1)
    notebook.output(1).locator(".fairing-log", has_text="step 1 of 6").wait_for(timeout=120_000)
    assert notebook.running(1), "the first log lines must show while the job still runs"
    notebook.shot("first-lines-while-running")
    notebook.page.wait_for_function(
        "() => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];"
        " return /progress (25|50|75)%/.test(c.querySelector('.jp-OutputArea').textContent)"
        " && c.querySelector('.jp-InputArea-prompt').textContent.includes('*'); }", timeout=60_000)
    notebook.shot("progress-bar-redrawn-live")
    notebook.wait(1)
    notebook.shot("finished")
    log = _log(notebook, 1)
    assert [line for line in log.splitlines() if "progress" in line] == ["progress 100%"]  # redrawn, not appended
    assert "step 5 of 6" in log and "RESULT value 6" in notebook.output(1).inner_text()
    assert lab.job_dirs() == []


def test_a_failing_job_shows_an_error_box_naming_the_cause(lab, notebook):
    write_notebook(lab.root / "failing.ipynb", FAILING)
    notebook.open("failing.ipynb", len(FAILING))
    notebook.run(0)
    notebook.run(1)
    box = notebook.output(1).locator(".fairing-error").inner_text()
    assert "the job raised ValueError" in box and 'the column "price" is missing from the data' in box
    assert "loading the data" in _log(notebook, 1)
    assert "ValueError" in notebook.output(1).locator("[data-mime-type='application/vnd.jupyter.stderr']").inner_text()
    # the job's traceback once, in the log's monospace box, naming the cell; no frame of fairing's
    shown = notebook.output(1).inner_text()
    assert shown.count("raise ValueError('the column") == 1, shown
    assert re.search(r"Cell In\[\d+\], line 6, in broken", _log(notebook, 1))
    assert "<dynamic-code>" not in shown and "fairing/api.py" not in shown and "RemoteTraceback" not in shown
    font = notebook.output(1).locator(".fairing-log pre").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "mono" in font.lower(), font
    assert lab.job_dirs() == []


def test_interrupting_the_kernel_deletes_the_job(lab, notebook):
    pid_file = lab.tmp / "forever.pid"
    write_notebook(lab.root / "interrupt.ipynb", [f"PID_FILE = {str(pid_file)!r}", *INTERRUPTED])
    notebook.open("interrupt.ipynb", 3)
    notebook.run(0)
    notebook.run(1)
    notebook.start(2)
    notebook.output(2).locator(".fairing-log", has_text="started").wait_for(timeout=120_000)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    notebook.shot("job-running")
    notebook.interrupt()
    notebook.wait(2, timeout=60)
    notebook.shot("interrupted")
    assert "KeyboardInterrupt" in notebook.output(2).inner_text()
    assert not _alive(pid), "the job's process survived the interrupt"
    assert lab.job_dirs() == []


@pytest.mark.e2e
def test_interrupting_the_kernel_deletes_the_cluster_job(lab, notebook, base_image, registry_address, kubeconfig,
                                                         namespace, kube):
    cells = [
        "import fairing\nfrom fairing.backends.kubernetes import kubernetes_backend\n"
        "from fairing.builders.append import AppendBuilder\n\n"
        f"builder = AppendBuilder({base_image!r}, {registry_address + '/fairing-e2e'!r}, insecure=True)\n"
        f"backend = kubernetes_backend(builder=builder, namespace={namespace!r}, kubeconfig={kubeconfig!r})",
        "@fairing.train(backend=backend, timeout=900)\ndef forever():\n    import time\n"
        "    print('started', flush=True)\n    while True:\n        time.sleep(0.5)",
        "forever()",
    ]
    write_notebook(lab.root / "interrupt_cluster.ipynb", cells)
    notebook.open("interrupt_cluster.ipynb", len(cells))
    notebook.run(0)
    notebook.run(1)
    notebook.start(2)
    notebook.output(2).locator(".fairing-log", has_text="started").wait_for(timeout=600_000)
    assert len(kube.batch.list_namespaced_job(namespace).items) == 1
    notebook.shot("job-running")
    notebook.interrupt()
    notebook.wait(2, timeout=120)
    notebook.shot("interrupted")
    assert "KeyboardInterrupt" in notebook.output(2).inner_text()
    wait_until(lambda: not kube.batch.list_namespaced_job(namespace).items
               and not kube.core.list_namespaced_pod(namespace).items, 120, "the job and its pods to be deleted")


UPLOAD = [
    "import os\nimport fairing\nfrom fairing.builders.append import AppendBuilder\n"
    "from fairing.notebook.display import NotebookRenderer\n\n"
    "context = fairing.BuildContext(files={'data.bin': os.urandom(4_000_000), 'main.py': b'print(1)\\n'},\n"
    "                               entrypoint=['python3', 'main.py'])",
    "with AppendBuilder(BASE_IMAGE, REGISTRY, insecure=True, cache_dir=CACHE) as builder:\n"
    "    image = builder.build(context, on_event=NotebookRenderer())\nprint('RESULT image', image)",
]


def test_upload_progress_appears_and_completes(lab, notebook, registry, loopback_base_image):
    cells = [f"BASE_IMAGE, REGISTRY, CACHE = {str(loopback_base_image)!r}, {registry.address + '/browser'!r}, "
             f"{str(lab.tmp / 'cache')!r}", *UPLOAD]
    write_notebook(lab.root / "upload.ipynb", cells)
    notebook.open("upload.ipynb", len(cells))
    notebook.run(0)
    notebook.run(1)
    out = notebook.run(2)
    bars = notebook.output(2).locator(".fairing-progress")
    assert bars.count() >= 2  # the base image's layers and the new code layer
    code = notebook.output(2).locator(".fairing-progress", has_text="code")
    assert code.get_attribute("data-done") == "1" and "100%" in code.inner_text()
    progress = code.locator("progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")
    assert "RESULT image" in out and "@sha256:" in out
    assert "push ✓" in notebook.output(2).locator(".fairing-status").inner_text()


def test_a_cell_run_but_not_saved_is_caught_then_saving_fixes_it(lab, notebook):
    cells = ["from fairing import config\n\nconfig.set_backend('local')",
             "x = 1\nprint('RESULT x', x)",
             "result = config.run()"]
    path = write_notebook(lab.root / "stale.ipynb", cells)
    notebook.open("stale.ipynb", len(cells))
    notebook.run(0)
    notebook.cell(1).locator(".jp-InputArea-editor").click()
    notebook.page.keyboard.press("Control+A")
    notebook.page.keyboard.insert_text("x = 2\nprint('RESULT x', x)")  # edited, run, not saved
    notebook.run(1)
    notebook.run(2)
    boxes = notebook.output(2).locator(".fairing-error")
    assert boxes.count() == 1
    box = boxes.inner_text()
    assert "older than what this kernel ran" in box and "'x = 2'" in box and "Save the notebook" in box
    notebook.page.keyboard.press("Control+S")
    wait_until(lambda: "x = 2" in path.read_text(), 30, "JupyterLab to save the notebook")
    notebook.shot("saved")
    notebook.run(2)
    assert "RESULT x 2" in notebook.output(2).locator(".fairing-log").inner_text()
    assert lab.job_dirs() == []


def test_after_submit_the_log_keeps_streaming_into_the_submitting_cell(lab, notebook):
    cells = [STREAMING[0], "handle = stream.submit(4)", "print('RESULT another cell ran')",
             "value = handle.result()\nhandle.delete()\nprint('RESULT value', value)"]
    write_notebook(lab.root / "submit.ipynb", cells)
    notebook.open("submit.ipynb", len(cells))
    notebook.run(0)
    notebook.run(1)
    assert "RESULT another cell ran" in notebook.run(2)
    notebook.output(1).locator(".fairing-log", has_text="step 3 of 4").wait_for(timeout=120_000)
    notebook.output(1).locator(".fairing-log", has_text="progress 100%").wait_for(timeout=60_000)
    notebook.shot("log-in-the-submitting-cell")
    assert "step" not in notebook.output(2).inner_text()
    assert "RESULT value 4" in notebook.run(3)
    assert lab.job_dirs() == []
