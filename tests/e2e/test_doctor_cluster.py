"""``fairing doctor`` against the real cluster, its registry and the Docker engine: every check
passes for the admin identity; a service account with no Role fails the permission check and
names what it may not do (and the other checks still run)."""

from __future__ import annotations

import json

import yaml

from tests.cli_terminal import Terminal


def _term(tmp_path, kubeconfig, registry_address, base_image, namespace) -> Terminal:
    home = tmp_path / "home"
    home.mkdir()
    return Terminal(tmp_path, tmp_path / "cache", env={
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "KUBECONFIG": kubeconfig,
        "FAIRING_BACKEND": "kubernetes", "FAIRING_REGISTRY": f"{registry_address}/fairing-e2e",
        "FAIRING_INSECURE_REGISTRIES": registry_address.split("/")[0], "FAIRING_BASE_IMAGE": base_image,
        "FAIRING_NAMESPACE": namespace})


def test_doctor_passes_against_the_real_cluster(tmp_path, kubeconfig, registry_address, base_image, namespace):
    term = _term(tmp_path, kubeconfig, registry_address, base_image, namespace)
    code, out = term.run("doctor", timeout=120)
    assert code == 0, out
    flat = out.replace("\n", "")
    for name in ("kubeconfig and context", "identity and permissions", "TFJob resource type",
                 "PyTorchJob resource type", "TrainJob resource type", "InferenceService resource type",
                 "registry", "base image Python", "Docker engine"):
        assert f"PASS         {name}: " in flat, out
    assert f"may run jobs in namespace {namespace}" in flat
    assert "trainjobs.trainer.kubeflow.org/v1alpha1 is served" in flat
    assert "no check failed" in out


def test_doctor_a_service_account_without_a_role_fails_the_permission_check(
        tmp_path, kubeconfig, registry_address, base_image, namespace, core_v1):
    from kubernetes import client

    core_v1.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="no-role")))
    token = core_v1.create_namespaced_service_account_token(
        "no-role", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    admin = yaml.safe_load(open(kubeconfig))
    cluster = admin["clusters"][0]
    restricted = tmp_path / "restricted-kubeconfig"
    restricted.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "no-role", "user": {"token": token}}],
        "contexts": [{"name": "no-role", "context": {"cluster": cluster["name"], "user": "no-role",
                                                      "namespace": namespace}}],
        "current-context": "no-role"}))
    term = _term(tmp_path, str(restricted), registry_address, base_image, namespace)
    proc = term.piped("doctor", "--output", "json", timeout=120)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["ok"] is False, proc.stderr
    checks = {c["name"]: c for c in doc["checks"]}
    perm = checks["identity and permissions"]
    assert perm["status"] == "FAIL", perm
    assert perm["detail"].startswith(f"system:serviceaccount:{namespace}:no-role may not create jobs"), perm
    assert "get pods/log" in perm["detail"] and f"-n {namespace}" in perm["fix"]
    assert token not in proc.stdout + proc.stderr  # the credential is never shown
    # discovery is open to every authenticated identity: the resource types are still found
    assert checks["TrainJob resource type"]["status"] == "PASS"
    assert checks["kubeconfig and context"]["status"] == "PASS"
    assert checks["registry"]["status"] == "PASS"
