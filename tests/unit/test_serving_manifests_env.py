"""An endpoint's env= and secret_env= reach the server's container, for a Deployment and for
a KServe InferenceService (the manifests are plain values: no cluster needed here; the
e2e tier checks the server sees them, tests/e2e/test_endpoint_env_and_kserve_records.py)."""

from fairing.deployers import mutators as m
from fairing.deployers.kserve import InferenceServiceDeployer
from fairing.deployers.serving import ServingDeployer

IMAGE = "localhost:5000/x@sha256:" + "a" * 64
MUTATORS = [m.env({"MODEL_FLAVOUR": "small", "PORT": "9999"}), m.secret_env("wandb", {"WANDB_API_KEY": "key"})]


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


def _check(container: dict) -> None:
    env = _env(container)
    assert env["MODEL_FLAVOUR"]["value"] == "small"
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb",
                                                                                          "key": "key"}}}
    assert env["PORT"]["value"] == "8080"  # the server listens where the probes and the Service look
    assert [e["name"] for e in container["env"]].count("PORT") == 1
    assert not {"FAIRING_RESULT_FILE", "FAIRING_RESULT_KEY_FILE", "FAIRING_OUTPUTS_TARGET"} & set(env)


def test_the_serving_deployment_keeps_the_mutators_env():
    deployment, _service = ServingDeployer(namespace="ns", mutators=MUTATORS, pull_credentials=False).manifests(
        IMAGE, "ep1")
    _check(deployment["spec"]["template"]["spec"]["containers"][0])


def test_the_inference_service_keeps_the_mutators_env_and_its_storage_uri():
    deployer = InferenceServiceDeployer(namespace="ns", mutators=MUTATORS, pull_credentials=False,
                                        storage_uri="oci://r.example/model:1")
    container = deployer.manifest(IMAGE, "isvc1")["spec"]["predictor"]["containers"][0]
    _check(container)
    assert _env(container)["STORAGE_URI"]["value"] == "oci://r.example/model:1"
