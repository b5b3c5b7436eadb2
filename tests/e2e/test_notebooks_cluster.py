"""The cluster notebooks in notebooks/, executed for real (papermill) against the cluster."""

from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _run(name, tmp_path, **parameters):
    return papermill.execute_notebook(str(ROOT / "notebooks" / name), str(tmp_path / name), cwd=str(tmp_path),
                                      parameters=parameters, kernel_name="python3", progress_bar=False)


def _text(nb) -> str:
    """What the cells show: printed text, and the text of displays (fairing's job log is one)."""
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name, expected", [
    ("train_cluster.ipynb", "trained on the cluster with C=0.5: accuracy"),
    ("train_deploy_predict.ipynb", "predictions [0, 2]"),
])
def test_cluster_notebook(name, expected, base_image, registry_address, kubeconfig, namespace, kube, tmp_path):
    nb = _run(name, tmp_path, registry=f"{registry_address}/fairing-e2e", base_image=base_image,
              namespace=namespace, kubeconfig=kubeconfig, insecure=True)
    assert expected in _text(nb)
    assert kube.batch.list_namespaced_job(namespace).items == []
    assert kube.apps.list_namespaced_deployment(namespace).items == []
