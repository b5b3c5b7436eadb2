"""Two endpoint bugs, on the real cluster: an endpoint's env= and secret_env= (pod mutators)
reach the server's container, for a Deployment and for a KServe InferenceService; and a
KServe endpoint started in one process is listed, attached to and deleted from another
(its record says InferenceService, not a Deployment named like it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fairing import PredictionEndpoint
from fairing.backends import Backend
from fairing.deployers import mutators as m
from fairing.deployers.kserve import GROUP, PLURAL, VERSION
from fairing.deployers.serving import ServingDeployer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


class EnvEcho:
    """Answers with what the server's environment holds (the token's length only)."""

    def predict(self, X):
        import os

        return [os.environ.get("MODEL_FLAVOUR", "<unset>"), len(os.environ.get("TOKEN", ""))]


class Doubler:
    def predict(self, X):
        return [2 * x for x in X]


@pytest.fixture
def token_secret(kube):
    from kubernetes import client

    name = f"e2e-token-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespaced_secret(kube.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name), string_data={"token": "s3cret-value"}))
    yield name
    kube.core.delete_namespaced_secret(name, kube.namespace)


def _mutators(secret: str) -> list:
    return [m.env({"MODEL_FLAVOUR": "small"}), m.secret_env(secret, {"TOKEN": "token"})]


def _left_in(kube) -> list[str]:
    isvcs = [o["metadata"]["name"] for o in
             kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL)["items"]]
    deployments = [d.metadata.name for d in kube.apps.list_namespaced_deployment(kube.namespace).items]
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    return isvcs + deployments + pods


def _server_env(kube, deployment: str) -> dict:
    container = kube.apps.read_namespaced_deployment(deployment, kube.namespace).spec.template.spec.containers[0]
    return {e.name: e for e in container.env or []}


def test_a_serving_endpoints_env_and_secret_env_reach_the_server(builder, kube, token_secret):
    serving = ServingDeployer(kube=kube, mutators=_mutators(token_secret))
    endpoint = PredictionEndpoint(EnvEcho, model_name="echo", backend=Backend("e2e", builder, None, serving))
    endpoint.create(timeout=600)
    try:
        env = _server_env(kube, endpoint.name)
        labels = kube.apps.read_namespaced_deployment(endpoint.name, kube.namespace).metadata.labels
        assert labels["fairing.dev/version"] and labels["fairing.dev/user"]  # stamped by the one submit pipeline
        assert env["MODEL_FLAVOUR"].value == "small" and env["PORT"].value == "8080"
        assert env["TOKEN"].value is None and env["TOKEN"].value_from.secret_key_ref.name == token_secret
        assert endpoint.predict([[1]]) == ["small", len("s3cret-value")]
    finally:
        endpoint.delete()
    assert _left_in(kube) == []


def test_a_kserve_endpoints_env_and_secret_env_reach_the_predictor(builder, kube, kubeconfig, token_secret):
    endpoint = PredictionEndpoint(EnvEcho, model_name="echo", backend="kubernetes", builder=builder,
                                  kubeconfig=kubeconfig, namespace=kube.namespace, deployer="kserve",
                                  mutators=_mutators(token_secret))
    endpoint.create(timeout=600)
    try:
        isvc = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, endpoint.name)
        env = {e["name"]: e for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
        assert env["MODEL_FLAVOUR"]["value"] == "small"
        assert env["TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == token_secret
        assert endpoint.predict([[1]]) == ["small", len("s3cret-value")]
    finally:
        endpoint.delete()
    assert _left_in(kube) == []


def _other_process(args: list, cache: Path, kubeconfig: str, *, code: str = "") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "fairing", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=str(cache),
                          env={**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache),
                               "KUBECONFIG": kubeconfig, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})


def test_a_kserve_endpoint_is_listed_attached_and_deleted_from_another_process(builder, kube, kubeconfig,
                                                                              tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # this process and the other share the job records
    endpoint = PredictionEndpoint(Doubler, model_name="doubler", backend="kubernetes", builder=builder,
                                  kubeconfig=kubeconfig, namespace=kube.namespace, deployer="kserve")
    endpoint.create(timeout=600)
    endpoint.detach()
    name = endpoint.name
    try:
        record = json.loads((cache / "fairing" / "jobs" / name / "record.json").read_text())
        assert record["kubernetes"]["kind"] == "InferenceService" and record["endpoint"] is True

        listed = _other_process(["list", "--output", "json"], cache, kubeconfig)
        assert listed.returncode == 0, listed.stderr
        rows = [r for r in json.loads(listed.stdout) if r["name"].startswith(name)]
        assert [(r["name"], r["kind"], r["phase"]) for r in rows] == [(name, "InferenceService", "Running")]
        assert rows[0]["url"] == f"http://{name}-predictor.{kube.namespace}.svc:80"
        shown = _other_process(["endpoints", "--output", "json"], cache, kubeconfig)
        assert shown.returncode == 0 and name in [r["name"] for r in json.loads(shown.stdout)], shown.stderr

        attached = _other_process([], cache, kubeconfig, code=(
            "import fairing\n"
            f"handle = fairing.attach({name!r}, on_event=lambda e: None)\n"
            "status, body = handle.request('POST', '/v1/models/doubler:predict', {'instances': [1, 2]})\n"
            "print(type(handle).__name__, status, body['predictions'])\n"))
        assert attached.returncode == 0, attached.stderr
        assert "InferenceServiceHandle 200 [2, 4]" in attached.stdout

        status = _other_process(["status", name, "--output", "json"], cache, kubeconfig)
        assert status.returncode == 0, status.stderr

        deleted = _other_process(["delete", name], cache, kubeconfig)
        assert deleted.returncode == 0 and f"deleted {name}" in deleted.stderr + deleted.stdout, deleted.stderr
        assert not (cache / "fairing" / "jobs" / name).exists()
    finally:
        if kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL)["items"]:
            endpoint.delete()
    assert _left_in(kube) == []
