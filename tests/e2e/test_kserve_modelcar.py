"""A job's outputs served by KServe straight from the registry: the artifact becomes a
modelcar image (``Outputs.modelcar``), the InferenceService's storage URI is ``oci://`` that
image, KServe's webhook runs it beside fairing's serving image (storageInitializer's
``enableModelcar`` in the test cluster: tests/cluster/kubeflow2.sh), and the predictor reads
the model under /mnt/models. The modelcar is composed in the registry from the layer the job
pushed: a byte-counting proxy between the submitter and the registry sees a few KB for a
model of 16 MiB. Deleting the endpoint and the job leaves nothing in the namespace or the
registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

import fairing
from fairing import PredictionEndpoint
from fairing.artifacts import RegistryImage
from fairing.backends import Backend
from fairing.deployers.job import JobDeployer
from fairing.deployers.kserve import GROUP, PLURAL, VERSION, InferenceServiceDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.outputs import Outputs
from tests.services.proxy import Proxy

pytestmark = pytest.mark.e2e


class ScaleModel:
    """y = w * x, with w from the job's model file (under /mnt/models, linked into the working directory);
    a weights file beside it, when the job wrote one, must be whole (its sha256 is in model.json)."""

    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1]}]
    outputs = [{"name": "y", "datatype": "FP64", "shape": [-1]}]

    def load(self):
        import hashlib

        with open("model.json") as fh:
            model = json.load(fh)
        if "sha256" in model:
            with open("weights.bin", "rb") as fh:  # no assert: pytest rewrites those into its own calls
                if hashlib.sha256(fh.read()).hexdigest() != model["sha256"]:
                    raise ValueError("weights.bin is not whole")
        self.w = model["w"]

    def predict(self, x):
        return [self.w * v for v in x]


def _tags(registry_address: str, repository: str) -> list:
    try:
        with urllib.request.urlopen(f"http://{registry_address}/v2/{repository}/tags/list", timeout=30) as resp:
            return json.load(resp).get("tags") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _has_blob(registry_address: str, repository: str, digest: str) -> bool:
    request = urllib.request.Request(f"http://{registry_address}/v2/{repository}/blobs/{digest}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=30):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def _left_in(kube) -> list:
    ns = kube.namespace
    isvcs = kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    left = [f"inferenceservice/{o['metadata']['name']}" for o in isvcs]
    left += [f"job/{j.metadata.name}" for j in kube.batch.list_namespaced_job(ns).items]
    left += [f"pod/{p.metadata.name}" for p in kube.core.list_namespaced_pod(ns).items]
    left += [f"deployment/{d.metadata.name}" for d in kube.apps.list_namespaced_deployment(ns).items]
    return left


def test_a_jobs_artifact_is_served_by_an_inference_service_from_an_oci_storage_uri(builder, kube, kubeconfig,
                                                                                  base_image, registry_address):
    config = kube.core.read_namespaced_config_map("inferenceservice-config", "kserve").data["storageInitializer"]
    assert json.loads(config)["enableModelcar"] is True, config

    backend = Backend("e2e", builder, JobDeployer(kube=kube, insecure_registry=True), ServingDeployer(kube=kube))

    @fairing.train(backend=backend, timeout=600, outputs=["model.json", "weights.bin"])
    def train(scale):
        import hashlib
        import os

        weights = os.urandom(16 << 20)  # incompressible
        with open("weights.bin", "wb") as fh:
            fh.write(weights)
        with open("model.json", "w") as fh:
            json.dump({"w": scale * 2, "sha256": hashlib.sha256(weights).hexdigest()}, fh)
        return "trained"

    handle = train.submit(1.25)
    repo = handle.outputs_target.split("/", 1)[1].rsplit(":", 1)[0]
    try:
        assert handle.result(600) == "trained"
        outputs = handle.outputs_artifact()
        layers = [d["digest"] for d in outputs.manifest()["layers"]]
        with Proxy(registry_address) as proxy:  # the submitter reaches the registry through it
            via = Outputs(proxy.address + outputs.ref[outputs.ref.index("/"):], insecure=True)
            made = via.modelcar(proxy.address + base_image[base_image.index("/"):])
            moved = proxy.bytes_up + proxy.bytes_down
        assert moved < 64 << 10, moved  # a 16 MiB model: configs, manifests and HEADs only
        image = RegistryImage(registry_address, made.repository, made.tag, made.digest, plain_http=True)
        outputs._modelcars.append(image)  # deleted with the artifact
        assert image.tag in _tags(registry_address, repo)
        deployer = InferenceServiceDeployer(kube=kube, storage_uri=f"oci://{image}")
        endpoint = PredictionEndpoint(ScaleModel, backend="kubernetes", builder=builder, kubeconfig=kubeconfig,
                                      namespace=kube.namespace, deployer=deployer, model_name="scale")
        endpoint.create(timeout=600)
        try:
            isvc = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, endpoint.name)
            assert isvc["spec"]["predictor"]["containers"][0]["env"][-1] == {"name": "STORAGE_URI",
                                                                           "value": f"oci://{image}"}
            pod = next(p for p in kube.core.list_namespaced_pod(kube.namespace).items
                       if p.metadata.name.startswith(endpoint.name))
            # KServe's webhook ran the model image itself: no storage initializer, nothing downloaded here
            assert [c.name for c in pod.spec.init_containers] == ["modelcar-init"]
            assert [c.image for c in pod.spec.containers if c.name == "modelcar"] == [str(image)]
            assert endpoint.predict([1.0, 4.0]) == [2.5, 10.0]
            status, body = endpoint.handle.request("POST", "/v2/models/scale/infer", {"inputs": [
                {"name": "x", "shape": [2], "datatype": "FP64", "data": [2.0, -1.0]}]})
            assert status == 200 and body["outputs"] == [{"name": "y", "datatype": "FP64", "shape": [2],
                                                          "data": [5.0, -2.5]}], body
        finally:
            endpoint.delete()
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []  # the modelcar and the artifact
    assert [d for d in layers if _has_blob(registry_address, repo, d)] == []  # the model layer too
    assert _left_in(kube) == []


def test_an_endpoint_serves_a_jobs_model_through_kserves_oci_storage(builder, kube, kubeconfig, registry_address):
    backend = Backend("e2e", builder, JobDeployer(kube=kube, insecure_registry=True), ServingDeployer(kube=kube))

    @fairing.train(backend=backend, timeout=600, outputs=["model.json"])
    def train():
        with open("model.json", "w") as fh:
            json.dump({"w": -3.0}, fh)

    handle = train.submit()
    repo = handle.outputs_target.split("/", 1)[1].rsplit(":", 1)[0]
    try:
        handle.result(600)
        with pytest.raises(fairing.ConfigurationError, match="Did you mean 'modelcar'"):
            PredictionEndpoint(ScaleModel, model=handle, model_storage="modelcars", backend="kubernetes",
                               builder=builder, kubeconfig=kubeconfig, namespace=kube.namespace, deployer="kserve")
        with pytest.raises(fairing.ConfigurationError, match="use deployer='kserve'"):
            PredictionEndpoint(ScaleModel, model=handle, model_storage="modelcar", backend="kubernetes",
                               builder=builder, kubeconfig=kubeconfig, namespace=kube.namespace)
        endpoint = PredictionEndpoint(ScaleModel, model=handle, model_storage="modelcar", backend="kubernetes",
                                      builder=builder, kubeconfig=kubeconfig, namespace=kube.namespace,
                                      deployer="kserve", model_name="scale")
        endpoint.create(timeout=600)
        try:
            isvc = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, endpoint.name)
            uri = isvc["spec"]["predictor"]["containers"][0]["env"][-1]["value"]
            assert uri.startswith(f"oci://{registry_address}/{repo}:modelcar-") and "@sha256:" in uri
            assert endpoint.predict([2.0]) == [-6.0]
        finally:
            endpoint.delete()
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []  # the modelcar and the artifact
    assert _left_in(kube) == []


def test_a_jobs_artifact_gone_is_a_registry_error_and_leaves_nothing(builder, kube, kubeconfig, registry_address):
    """The job's model layer deleted from the registry (the manifest kept) before the endpoint is made."""
    backend = Backend("e2e", builder, JobDeployer(kube=kube, insecure_registry=True), ServingDeployer(kube=kube))

    @fairing.train(backend=backend, timeout=600, outputs=["model.json"])
    def train():
        with open("model.json", "w") as fh:
            json.dump({"w": 1.0}, fh)

    handle = train.submit()
    repo = handle.outputs_target.split("/", 1)[1].rsplit(":", 1)[0]
    try:
        handle.result(600)
        layer = next(d for d in handle.outputs_artifact().manifest()["layers"]
                     if d["mediaType"] == "application/vnd.oci.image.layer.v1.tar")
        urllib.request.urlopen(urllib.request.Request(
            f"http://{registry_address}/v2/{repo}/blobs/{layer['digest']}", method="DELETE"), timeout=30).close()
        endpoint = PredictionEndpoint(ScaleModel, model=handle, model_storage="modelcar", backend="kubernetes",
                                      builder=builder, kubeconfig=kubeconfig, namespace=kube.namespace,
                                      deployer="kserve", model_name="scale")
        with pytest.raises(fairing.RegistryError, match="not in the repository") as info:
            endpoint.create(timeout=600)
        assert info.value.code == "BLOB_UNKNOWN"
        assert endpoint.handle is None
        assert [t for t in _tags(registry_address, repo) if t.startswith("modelcar-")] == []
        assert [x for x in _left_in(kube) if not x.startswith(("job/", "pod/"))] == []  # no endpoint was made
    finally:
        handle.delete()
    assert _tags(registry_address, repo) == []
    assert _left_in(kube) == []
