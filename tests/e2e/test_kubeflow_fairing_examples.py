"""Kubeflow Fairing 1.0.2 code, written as its docs and examples write it, on the real cluster.

Each script is what a Kubeflow Fairing user has (``from kubeflow import fairing``...),
with the registry and base image names changed, nothing else. What their environment would give them comes from fairing's settings:
``FAIRING_NAMESPACE`` (the test's namespace) and ``FAIRING_INSECURE_REGISTRIES`` (the
cluster's plain-HTTP registry). The base image is the test Debian image with its
``PYTHON_VERSION`` removed, so the base image's Python is found from its files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bare_base_image(registry_address) -> str:
    """The test base image without PYTHON_VERSION in its config, in the cluster's registry."""
    import hashlib

    from fairing.images import ImageRef
    from fairing.images.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, build_manifest, canonical_json
    from fairing.images.registry import RegistryClient
    from tests.services.base_image import IMAGE_ENV, base_config, base_layer

    layer = base_layer()
    config = base_config(layer)
    config["config"]["Env"] = [e for e in IMAGE_ENV if not e.startswith("PYTHON_VERSION=")]
    config_bytes = canonical_json(config)
    ref = ImageRef.parse(f"{registry_address}/fairing-tests/python-nometa:3.11-bookworm")
    with RegistryClient(insecure=True) as client:
        config_desc = Descriptor(DOCKER_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
        client.upload_blob(ref, config_desc.digest, config_bytes)
        client.upload_blob(ref, layer.digest, layer.path, size=layer.size)
        manifest = build_manifest(config_desc, [Descriptor(DOCKER_LAYER_GZIP, layer.digest, layer.size)],
                                  media_type=DOCKER_MANIFEST)
        client.put_manifest(ref, manifest, DOCKER_MANIFEST)
    return str(ref)


@pytest.fixture
def run_script(tmp_path, kubeconfig, namespace, registry_address, bare_base_image, kube):
    """Write a Kubeflow Fairing script into a project directory and run it with python."""

    def run(body: str, files: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        project = tmp_path / f"project-{uuid.uuid4().hex[:6]}"
        project.mkdir()
        for name, text in (files or {}).items():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(textwrap.dedent(text))
        script = textwrap.dedent(body).replace("<REGISTRY>", f"{registry_address}/kf-examples") \
                                      .replace("<BASE_IMAGE>", bare_base_image)
        (project / "main.py").write_text(script)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
        env.update(KUBECONFIG=kubeconfig, FAIRING_NAMESPACE=namespace,
                   FAIRING_INSECURE_REGISTRIES=registry_address.split("/")[0],
                   XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]),
                   # no Docker engine on this "laptop": the kubernetes backend builds with the append builder
                   DOCKER_HOST="unix:///nonexistent/docker.sock")
        proc = subprocess.run([sys.executable, "-W", "always::FutureWarning", "main.py"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert _left_in(kube) == [], "the job left objects behind"
        return proc

    return run


def _left_in(kube) -> list[str]:
    jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    deployments = [d.metadata.name for d in kube.apps.list_namespaced_deployment(kube.namespace).items]
    crs = [o["metadata"]["name"] for plural in ("tfjobs",)
           for o in kube.custom.list_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, plural)["items"]]
    return jobs + pods + deployments + crs


def test_one_liner_with_the_append_builder_and_the_job_deployer(run_script):
    # from the Kubeflow Fairing docs: "Train a model with a remote function"
    proc = run_script("""
        from kubeflow import fairing

        def train():
            print("Training a model ...", flush=True)
            import platform
            print("on Python", platform.python_version(), flush=True)

        DOCKER_REGISTRY = "<REGISTRY>"
        fairing.config.set_builder("append", base_image="<BASE_IMAGE>", registry=DOCKER_REGISTRY, push=True)
        fairing.config.set_deployer("job")
        remote_train = fairing.config.fn(train)
        remote_train()
    """)
    lines = proc.stdout.splitlines()
    assert "Training a model ..." in lines and "on Python 3.11" in " ".join(lines), proc.stdout
    assert "push= is Kubeflow Fairing's option and has no effect here" in proc.stderr


def test_trainjob_of_a_class_with_train(run_script):
    # the housing-prices example: a class with train(), its data and requirements as input files
    proc = run_script("""
        from kubeflow import fairing
        from kubeflow.fairing import TrainJob
        from kubeflow.fairing.backends import KubernetesBackend

        DOCKER_REGISTRY = "<REGISTRY>"
        BASE_IMAGE = "<BASE_IMAGE>"

        class HousingServe(object):
            def __init__(self):
                self.model_file = "trained_ames_model.dat"
                self.model = None

            def train(self):
                import six
                rows = [line.split(",") for line in open("ames_dataset/train.csv").read().splitlines()[1:]]
                prices = [float(r[1]) for r in rows]
                print("six", six.__version__, flush=True)
                print("Training on", len(prices), "houses; mean price", sum(prices) / len(prices), flush=True)

        train_job = TrainJob(HousingServe, input_files=["ames_dataset/train.csv", "requirements.txt"],
                             docker_registry=DOCKER_REGISTRY, base_docker_image=BASE_IMAGE,
                             backend=KubernetesBackend())
        train_job.submit()
        print("submitted and finished")
    """, files={"ames_dataset/train.csv": "Id,SalePrice\n1,200000\n2,100000\n", "requirements.txt": "six==1.16.0\n"})
    lines = proc.stdout.splitlines()
    assert lines[-3:] == ["six 1.16.0", "Training on 2 houses; mean price 150000.0", "submitted and finished"], \
        proc.stdout
    assert "base_docker_image= is Kubeflow Fairing's spelling; use base_image=" in proc.stderr
    assert "KubernetesBackend() is Kubeflow Fairing's; use backend='kubernetes'" in proc.stderr


def test_prediction_endpoint(run_script):
    proc = run_script("""
        import json
        import numpy as np
        from kubeflow import fairing
        from kubeflow.fairing import PredictionEndpoint
        from kubeflow.fairing.backends import KubernetesBackend

        DOCKER_REGISTRY = "<REGISTRY>"
        BASE_IMAGE = "<BASE_IMAGE>"

        class HousingServe(object):
            def __init__(self):
                self.model_file = "trained_ames_model.dat"
                self.model = None

            def train(self):
                json.dump({"coef": 2.0}, open(self.model_file, "w"))

            def predict(self, X, feature_names=None):
                if not self.model:
                    self.model = json.load(open(self.model_file))
                return [[self.model["coef"] * v for v in row] for row in X]

        HousingServe().train()
        endpoint = PredictionEndpoint(HousingServe, input_files=["trained_ames_model.dat"],
                                      docker_registry=DOCKER_REGISTRY, base_docker_image=BASE_IMAGE,
                                      backend=KubernetesBackend())
        endpoint.create()
        print(json.dumps(endpoint.predict_nparray(np.array([[1.0, 2.0], [3.0, 4.0]]))))
        endpoint.delete()
    """)
    assert proc.stdout.splitlines()[-1] == json_line({"data": {"names": [], "tensor": {"shape": [2, 2],
                                                                                         "values": [2.0, 4.0, 6.0, 8.0]}}})
    assert "predict_nparray() is Kubeflow Fairing's; use predict(X)" in proc.stderr


def json_line(value) -> str:
    import json

    return json.dumps(value)


def test_tfjob_with_chief_ps_and_workers(run_script):
    proc = run_script("""
        from kubeflow import fairing

        DOCKER_REGISTRY = "<REGISTRY>"
        fairing.config.set_preprocessor("python", input_files=["tf_dist.py"])
        fairing.config.set_builder("append", base_image="<BASE_IMAGE>", registry=DOCKER_REGISTRY, push=True)
        fairing.config.set_deployer("tfjob", worker_count=2, chief_count=1, ps_count=1)
        fairing.config.run()
    """, files={"tf_dist.py": """
        import json, os
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        print("I am", task["type"], task["index"], flush=True)
    """})
    lines = set(proc.stdout.splitlines())
    assert {"[chief-0] I am chief 0", "[ps-0] I am ps 0", "[worker-0] I am worker 0",
            "[worker-1] I am worker 1"} <= lines, proc.stdout
    assert "use replicas={'Chief': 1, 'PS': 1, 'Worker': 2}" in proc.stderr


def test_remote_exceptions_that_cannot_be_recreated_are_remote_errors(backend, kube):
    import fairing
    from fairing import RemoteError

    class PairError(Exception):
        def __init__(self, left, right):
            super().__init__(f"{left} does not match {right}")

    @fairing.train(backend=backend, timeout=600, quiet=True)
    def fails():
        raise PairError("labels", "predictions")

    with pytest.raises(RemoteError, match="PairError: labels does not match predictions") as info:
        fails()
    assert ", in fails\n" in info.value.remote_traceback
    assert _left_in(kube) == []


def test_a_project_with_only_a_tool_fairing_section_runs_from_the_cli_and_the_api(
        tmp_path, kubeconfig, namespace, registry_address, base_image, kube):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""
        [project]
        name = "housing"

        [tool.fairing]
        backend = "kubernetes"
        registry = "{registry_address}/settings-e2e"
        base_image = "{base_image}"
        namespace = "{namespace}"
        insecure_registries = ["{registry_address.split('/')[0]}"]
    """))
    (project / "train.py").write_text("import os\nprint('trained in', os.environ['HOSTNAME'].rsplit('-', 1)[0][:7])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    env.update(KUBECONFIG=kubeconfig, XDG_CONFIG_HOME=str(tmp_path / "xdg"), DOCKER_HOST="unix:///nonexistent/docker.sock",
               PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    for argv in (["-m", "fairing", "run", "train.py"], ["-c", "import fairing; fairing.TrainJob('train.py').run()"]):
        proc = subprocess.run([sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{argv}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert "trained in fairing" in proc.stdout.splitlines(), proc.stdout
        assert _left_in(kube) == []
