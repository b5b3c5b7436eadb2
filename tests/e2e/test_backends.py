"""The kubernetes backend made by name through submit / TrainJob, as a user writes it: with the
builder it chooses (append, here: no Docker engine is visible), and with a builder given."""

from __future__ import annotations

import os

import pytest

import fairing
from fairing import TrainJob, environment
from fairing.api import preprocessor_for
from fairing.builders.append import AppendBuilder
from fairing.environment import Environment
from fairing.events import Stage

pytestmark = pytest.mark.e2e


@pytest.fixture
def no_docker():
    """This machine's environment, minus a Docker engine: the backend must choose the append builder."""
    with environment.use(Environment.from_os({**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})):
        yield


def _left(kube) -> list[str]:
    return ([j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
            + [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items])


def test_trainjob_on_the_kubernetes_backend_chooses_its_builder(no_docker, kubeconfig, namespace, kube,
                                                                 registry_address, base_image):
    def square(x):
        import os

        return {"square": x * x, "runtime": os.environ.get("FAIRING_RUNTIME")}

    events = []
    job = TrainJob(square, args=(7,), backend="kubernetes", registry=f"{registry_address}/fairing-e2e",
                   base_image=base_image, insecure=True, kubeconfig=kubeconfig, namespace=namespace,
                   on_event=events.append)
    assert job.run(timeout=600) == {"square": 49, "runtime": "1"}
    pushed = [e.detail for e in events if isinstance(e, Stage) and e.name == "push" and e.status == "finished"]
    assert pushed and pushed[0].startswith(f"{registry_address}/fairing-e2e/")  # the append builder pushed it
    stages = [(e.name, e.status) for e in events if isinstance(e, Stage) and e.name in ("package", "build", "deploy")]
    assert stages == [(s, status) for s in ("package", "build", "deploy") for status in ("started", "finished")]
    assert _left(kube) == []


def test_submit_to_the_kubernetes_backend_uses_the_given_builder(kubeconfig, namespace, kube, registry_address,
                                                                  base_image, tmp_path):
    (tmp_path / "job.py").write_text("print('built by my builder', flush=True)\n")
    builder = AppendBuilder(base_image, f"{registry_address}/fairing-mine", repository="given", insecure=True)
    # no registry= or base_image= for the backend: the builder is the user's
    handle = fairing.submit(preprocessor_for(str(tmp_path / "job.py")), backend="kubernetes", builder=builder,
                            kubeconfig=kubeconfig, namespace=namespace, on_event=lambda e: None)
    try:
        handle.result(timeout=600)
        assert "built by my builder" in list(handle.logs(follow=False))
        job = kube.batch.read_namespaced_job(handle.name, namespace)
        image = job.spec.template.spec.containers[0].image
        assert image.startswith(f"{registry_address}/fairing-mine/given:fairing-") and "@sha256:" in image
    finally:
        handle.delete()
    assert _left(kube) == []
