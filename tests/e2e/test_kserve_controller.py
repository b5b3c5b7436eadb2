"""KServe for real: tests/cluster runs KServe's controller (built from its Go module) in
RawDeployment mode, and an InferenceService fairing makes, with fairing's serving image as
its custom predictor, becomes Ready and answers over the v1 and Open Inference v2 protocols
through the API server's service proxy."""

from __future__ import annotations

import json

import pytest

from fairing import ConfigurationError, DeployError, JobFailedError, PredictionEndpoint
from fairing.deployers.kserve import GROUP, PLURAL, VERSION, InferenceServiceDeployer

pytestmark = pytest.mark.e2e


class LinearModel:
    """y = w . x + b with weights from a file packaged with the endpoint."""

    def load(self):
        with open("weights.json") as fh:
            self.weights = json.load(fh)

    def predict(self, X):
        w, b = self.weights["w"], self.weights["b"]
        return [sum(wi * xi for wi, xi in zip(w, row)) + b for row in X]


class BrokenModel:
    def load(self):
        raise FileNotFoundError("weights.bin is missing: train the model first")

    def predict(self, X):
        return X


def _left_in(kube) -> list[str]:
    isvcs = [o["metadata"]["name"] for o in
             kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL)["items"]]
    deployments = [d.metadata.name for d in kube.apps.list_namespaced_deployment(kube.namespace).items]
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    return isvcs + deployments + pods


def _endpoint(model, builder, kube, kubeconfig, **kwargs):
    return PredictionEndpoint(model, backend="kubernetes", builder=builder, kubeconfig=kubeconfig,
                              namespace=kube.namespace, deployer="kserve", **kwargs)


def test_inference_service_is_ready_and_predicts_over_v1_and_v2(builder, kube, kubeconfig, tmp_path):
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"w": [0.5, -2.0, 1.25], "b": 3.0}))
    local = LinearModel()
    local.weights = json.loads(weights.read_text())
    rows = [[1.0, 2.0, 3.0], [0.0, 0.5, -4.0]]
    endpoint = _endpoint(LinearModel, builder, kube, kubeconfig, model_name="linear",
                         input_files={str(weights): "weights.json"})
    assert isinstance(endpoint.deployer, InferenceServiceDeployer)
    endpoint.create(timeout=600)
    try:
        isvc = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, endpoint.name)
        conditions = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
        assert conditions["Ready"] == "True" and conditions["PredictorReady"] == "True"
        predictor = isvc["spec"]["predictor"]["containers"][0]
        assert predictor["name"] == "kserve-container" and "fairing-e2e" in predictor["image"]
        # KServe made the predictor's Deployment and Service (RawDeployment: no Knative)
        assert kube.apps.read_namespaced_deployment(f"{endpoint.name}-predictor", kube.namespace).status.ready_replicas == 1
        assert endpoint.url.startswith(f"http://{endpoint.name}")

        # v1, through the API server's proxy to the predictor Service
        assert endpoint.predict(rows) == local.predict(rows)
        # Open Inference Protocol v2
        status, body = endpoint.handle.request("POST", "/v2/models/linear/infer", {"inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [v for row in rows for v in row]}]})
        assert status == 200, body
        assert body["model_name"] == "linear" and body["outputs"][0]["data"] == local.predict(rows)
        status, body = endpoint.handle.request("GET", "/v2/models/linear/ready")
        assert status == 200 and body["ready"] is True
    finally:
        endpoint.delete()
    assert _left_in(kube) == []


def test_a_failing_predictor_is_named_by_the_inference_service_status(builder, kube, kubeconfig):
    endpoint = _endpoint(BrokenModel, builder, kube, kubeconfig)
    with pytest.raises(JobFailedError) as err:
        endpoint.create(timeout=600)
    message = str(err.value)
    assert f"The InferenceService {err.value.job} failed" in message
    assert "condition PredictorReady=False" in message, message  # the InferenceService's own account
    assert "load()" in err.value.logs_tail and "weights.bin is missing" in err.value.logs_tail
    assert _left_in(kube) == []


def test_a_storage_uri_kserve_does_not_support_is_named(kube):
    # The webhook lets a custom predictor's STORAGE_URI through; the controller refuses it
    # with a Warning event on the InferenceService, which the handle raises.
    deployer = InferenceServiceDeployer(kube=kube, pull_credentials=False, storage_uri="ftp://models/iris")
    handle = deployer.deploy("registry.invalid/fairing/model:1", name="bad-uri")
    try:
        with pytest.raises(DeployError) as err:
            handle.wait_ready(120)
    finally:
        handle.delete()
    assert "InferenceService bad-uri" in str(err.value) and "StorageURI not supported" in str(err.value)
    assert "ftp://models/iris" in str(err.value)
    assert _left_in(kube) == []


def test_the_deployer_is_chosen_by_name(builder, kube, kubeconfig):
    with pytest.raises(ConfigurationError, match="Did you mean 'kserve'"):
        PredictionEndpoint(LinearModel, backend="kubernetes", builder=builder, kubeconfig=kubeconfig,
                           namespace=kube.namespace, deployer="kservo")
    with pytest.raises(ConfigurationError, match="runs on a cluster"):
        PredictionEndpoint(LinearModel, backend="local", deployer="kserve")
    with pytest.raises(ConfigurationError, match="storage_uri"):
        InferenceServiceDeployer(kube=kube, storage_uri="")
