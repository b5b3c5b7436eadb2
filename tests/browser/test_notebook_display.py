"""The notebook flow as a user sees it in JupyterLab (headless Chromium)."""

from __future__ import annotations

from tests.browser.flows import README_FLOW, RUN_CELL, result_lines, write_notebook


def test_readme_flow_in_jupyterlab(lab, notebook):
    write_notebook(lab.root / "flow.ipynb", README_FLOW)
    notebook.open("flow.ipynb", len(README_FLOW))
    shown = {i: notebook.run(i) for i in range(len(README_FLOW))}
    log = notebook.output(RUN_CELL).locator(".fairing-log").inner_text()
    in_kernel = result_lines("\n".join(text for i, text in shown.items() if i != RUN_CELL))
    in_kernel.insert(5, "RESULT run None")
    assert result_lines(log) == in_kernel
    status = notebook.output(RUN_CELL).locator(".fairing-status").inner_text()
    assert "package ✓" in status and "deploy ✓" in status
    assert lab.job_dirs() == []
