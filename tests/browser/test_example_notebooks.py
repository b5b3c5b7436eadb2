"""The notebooks in notebooks/, run cell by cell in JupyterLab: locally, and on the cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

# One JupyterLab and one Chromium for the module, on one xdist worker: a server and a
# browser per worker would take the 2 cores from the tests waiting beside them.
pytestmark = pytest.mark.xdist_group("browser-examples")

ROOT = Path(__file__).resolve().parents[2]


def _run_all(notebook, cells: int) -> list[str]:
    return [notebook.run(i, timeout=900) if notebook.is_code(i) else "" for i in range(cells)]


def test_train_local_notebook(lab, notebook):
    shutil.copy(ROOT / "notebooks/train_local.ipynb", lab.root / "train_local.ipynb")
    cells = len(nbformat.read(str(lab.root / "train_local.ipynb"), as_version=4).cells)
    notebook.open("train_local.ipynb", cells)
    shown = _run_all(notebook, cells)
    assert "trained with C=0.5: accuracy" in notebook.page.locator(".fairing-log").last.inner_text()
    assert "score from the job: 0." in shown[-1] or "score from the job: 1.0" in shown[-1]
    assert lab.job_dirs() == []


@pytest.mark.e2e
def test_train_cluster_notebook(lab, notebook, base_image, registry_address, kubeconfig, namespace, kube):
    nb = nbformat.read(str(ROOT / "notebooks/train_cluster.ipynb"), as_version=4)
    nb.cells[1].source = (f"registry = {registry_address + '/fairing-e2e'!r}\nbase_image = {base_image!r}\n"
                          f"namespace = {namespace!r}\nkubeconfig = {kubeconfig!r}\ninsecure = True")
    nbformat.write(nb, str(lab.root / "train_cluster.ipynb"))
    notebook.open("train_cluster.ipynb", len(nb.cells))
    shown = _run_all(notebook, len(nb.cells))
    assert "trained on the cluster with C=0.5: accuracy" in notebook.page.locator(".fairing-log").last.inner_text()
    assert "score from the cluster: " in shown[-1]
    assert kube.batch.list_namespaced_job(namespace).items == []
