"""The README notebook flow on the cluster: config.run() in a real kernel submits the notebook
itself as a Kubernetes Job (append builder), which prints what the kernel printed."""

import papermill
import pytest

from tests.browser.flows import (README_RESULTS, cluster_setup, display_text, readme_flow, result_lines, stream_text,
                                 write_notebook)

pytestmark = pytest.mark.e2e


def test_readme_flow_on_the_cluster(base_image, registry_address, kubeconfig, namespace, kube, tmp_path, monkeypatch):
    cells = readme_flow(cluster_setup(base_image=base_image, registry=f"{registry_address}/fairing-e2e",
                                      namespace=namespace, kubeconfig=kubeconfig))
    path = write_notebook(tmp_path / "flow.ipynb", cells)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # what jupyter_server sets for the notebook's kernel
    nb = papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(tmp_path),
                                    kernel_name="python3", progress_bar=False)
    run_cell = next(i for i, c in enumerate(cells) if c.startswith("result = config.run()"))
    assert result_lines("".join(stream_text(c) for c in nb.cells)) == README_RESULTS
    assert result_lines(display_text(nb.cells[run_cell])) == README_RESULTS
    assert kube.batch.list_namespaced_job(namespace).items == []
