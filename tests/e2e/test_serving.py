"""Train -> deploy -> predict on the real cluster: the model file a training Job writes to a
PersistentVolumeClaim is served by a PredictionEndpoint that mounts the same claim."""

from __future__ import annotations

import pickle
import time
import uuid

import pytest

import fairing
from fairing import JobFailedError, PredictionEndpoint
from fairing.backends import Backend
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.deployers.kserve import InferenceServiceDeployer
from fairing.deployers.serving import ServingDeployer

pytestmark = pytest.mark.e2e

def _sklearn_version() -> str:
    from importlib.metadata import version

    return version("scikit-learn")


SKLEARN = [f"scikit-learn=={_sklearn_version()}"]  # the submitter's, so the pickled model loads here too


class IrisModel:
    def load(self):
        with open("/models/iris.pkl", "rb") as fh:
            self.model = pickle.load(fh)

    def predict(self, X):
        return self.model.predict(X)


class BrokenModel:
    def load(self):
        raise FileNotFoundError("/models/missing.pkl: train the model first")

    def predict(self, X):
        return X


KSERVE_MODULE = "github.com/kserve/kserve@v0.15.0"
KSERVE_CRD = "config/crd/full/serving.kserve.io_inferenceservices.yaml"


@pytest.fixture(scope="session")
def kserve_crd(kubeconfig, tmp_path_factory):
    """The InferenceService CRD from KServe's Go module (no KServe controller runs here)."""
    import json
    import os
    import subprocess

    import yaml

    from fairing.kube import KubeClient

    work = tmp_path_factory.mktemp("kserve")
    out = subprocess.run(["go", "mod", "download", "-json", KSERVE_MODULE], cwd=work, capture_output=True, text=True,
                         env={**os.environ, "GOFLAGS": "-mod=mod"}, timeout=600)
    info = json.loads(out.stdout or "{}")
    assert "Dir" in info, f"could not download {KSERVE_MODULE} from the Go module proxy: {out.stdout} {out.stderr}"
    crd = yaml.safe_load(open(os.path.join(info["Dir"], KSERVE_CRD)))
    kube = KubeClient(kubeconfig=kubeconfig)
    ext = kube.k8s.client.ApiextensionsV1Api(kube.api_client)
    try:
        ext.create_custom_resource_definition(crd)
    except kube.k8s.client.ApiException as exc:
        assert exc.status == 409, exc  # already installed by an earlier run

    deadline = time.time() + 60
    while time.time() < deadline:
        got = kube.to_dict(ext.read_custom_resource_definition(crd["metadata"]["name"]))
        if any(c["type"] == "Established" and c["status"] == "True" for c in got.get("status", {}).get("conditions", [])):
            return crd["metadata"]["name"]
        time.sleep(0.5)
    raise AssertionError("the InferenceService CRD did not become Established")


@pytest.fixture
def models_claim(kube):
    """A PersistentVolume (hostPath on the single node) and a claim bound to it."""
    pv_name = f"fairing-models-{uuid.uuid4().hex[:8]}"
    kube.core.create_persistent_volume({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                 "hostPath": {"path": f"/var/lib/fairing-cluster/volumes/{pv_name}", "type": "DirectoryOrCreate"},
                 "claimRef": {"namespace": kube.namespace, "name": "models"}},
    })
    kube.core.create_namespaced_persistent_volume_claim(kube.namespace, {
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })
    deadline = time.monotonic() + 120  # the PV controller binds it; a loaded control plane takes a while
    while kube.core.read_namespaced_persistent_volume_claim("models", kube.namespace).status.phase != "Bound":
        assert time.monotonic() < deadline, "the claim 'models' was not bound to its PersistentVolume in 120 s"
        time.sleep(0.5)
    yield "models"
    kube.core.delete_namespaced_persistent_volume_claim("models", kube.namespace)
    kube.core.delete_persistent_volume(pv_name)


def test_train_deploy_predict_scale_delete(builder, kube, models_claim):
    volume = m.pvc(models_claim, "/models")

    @fairing.train(backend=Backend("e2e", builder, JobDeployer(kube=kube, mutators=[volume])), timeout=900,
                   requirements=SKLEARN)
    def train():
        import pickle

        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        X, y = load_iris(return_X_y=True)
        model = LogisticRegression(max_iter=500).fit(X, y)
        with open("/models/iris.pkl", "wb") as fh:
            pickle.dump(model, fh)
        return pickle.dumps(model)

    local_model = pickle.loads(train())
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    serving = ServingDeployer(kube=kube, mutators=[volume])
    endpoint = PredictionEndpoint(IrisModel, requirements=SKLEARN, model_name="iris",
                                  backend=Backend("e2e", builder, None, serving))
    endpoint.create(timeout=600)
    try:
        assert endpoint.url == f"http://{endpoint.name}.{kube.namespace}.svc:8080"
        assert endpoint.predict(rows) == local_model.predict(rows).tolist()
        endpoint.handle.scale(2)
        endpoint.handle.wait_ready(300)
        assert kube.apps.read_namespaced_deployment(endpoint.name, kube.namespace).status.ready_replicas == 2
        assert endpoint.predict(rows) == local_model.predict(rows).tolist()
    finally:
        endpoint.delete()
    assert kube.apps.list_namespaced_deployment(kube.namespace).items == []
    assert kube.core.list_namespaced_service(kube.namespace).items == []
    assert [p for p in kube.core.list_namespaced_pod(kube.namespace).items
            if p.metadata.labels.get("fairing.dev/job") == endpoint.name] == []


def test_failing_load_names_the_cause(builder, kube):
    endpoint = PredictionEndpoint(BrokenModel, backend=Backend("e2e", builder, None, ServingDeployer(kube=kube)))
    with pytest.raises(JobFailedError) as err:
        endpoint.create(timeout=600)
    assert "load()" in str(err.value) and "train the model first" in str(err.value)
    assert kube.apps.list_namespaced_deployment(kube.namespace).items == []


def test_inference_service_is_accepted_by_the_kserve_crd(builder, kube, kserve_crd):
    deployer = InferenceServiceDeployer(kube=kube, dry_run=True, replicas=2, mutators=[m.resources(cpu="100m")])
    handle = deployer.deploy("registry.local/fairing/model@sha256:" + "b" * 64, name="iris")
    spec = handle._obj["spec"]["predictor"]
    assert spec["containers"][0]["image"].endswith("b" * 64) and spec["minReplicas"] == 2
    from fairing import DeployError

    bad = InferenceServiceDeployer(kube=kube, dry_run=True)
    bad.manifest = lambda image, name: {**deployer.manifest(image, name), "spec": {"predictor": {"minReplicas": "two"}}}
    with pytest.raises(DeployError, match="minReplicas"):
        bad.deploy("img", name="bad")
