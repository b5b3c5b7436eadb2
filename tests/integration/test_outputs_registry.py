"""The outputs channel against real registries: the job's standard-library client
(fairing/runtime/outputs.py) pushes an ORAS-style artifact with bearer-token or basic
auth from a Docker config file, the submitter (fairing/outputs.py) lists, downloads and
deletes it, and a result too large for the termination message travels with it."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request

import pytest

from fairing.errors import RegistryError
from fairing.images.auth import StaticCredentials
from fairing.outputs import Outputs, delete_repository
from fairing.runtime import outputs as job_outputs
from tests.integration.conftest import TLS_USERS, TOKEN_USERS


def _auth_file(tmp_path, host, user, password):
    path = tmp_path / "config.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return str(path)


def _job_env(tmp_path, target, auth_file=None, insecure=True, **extra):
    outputs = tmp_path / "outputs"
    (outputs / "metrics").mkdir(parents=True)
    (outputs / "model.joblib").write_bytes(os.urandom(300_000))
    (outputs / "metrics" / "acc.json").write_text('{"acc": 0.9}')
    env = {"FAIRING_OUTPUTS": str(outputs), "FAIRING_OUTPUTS_TARGET": target, "HOSTNAME": "pod-a", **extra}
    if insecure:
        env["FAIRING_OUTPUTS_INSECURE"] = "1"
    if auth_file:
        env["FAIRING_OUTPUTS_AUTH_FILE"] = auth_file
    return env, outputs


def test_a_job_pushes_its_outputs_with_a_token_and_the_submitter_pulls_and_deletes_them(token_registry, tmp_path):
    user, password = next(iter(TOKEN_USERS.items()))
    host = token_registry.address
    repo = f"{host}/team/job-image-outputs/job-1"
    env, written = _job_env(tmp_path, f"oci://{repo}:outputs", _auth_file(tmp_path, host, user, password))
    where, files, large = job_outputs.send("fairing-result:v1:short", limit=1000, environ=env)
    assert not large and files == ["metrics/acc.json", "model.joblib"]
    assert where.startswith(f"{repo}@sha256:")

    creds = StaticCredentials(user, password)
    artifact = Outputs(where, insecure=True, credentials=creds)
    manifest = artifact.manifest()
    assert manifest["artifactType"] == job_outputs.ARTIFACT_TYPE  # ORAS's conventions
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]
            if layer["mediaType"] != job_outputs.MODELCAR_TYPE] == files
    # the same files once more, as the image layer a modelcar is composed from (no title: ORAS skips it)
    assert [layer["annotations"] for layer in manifest["layers"]
            if layer["mediaType"] == job_outputs.MODELCAR_TYPE] == [{job_outputs.MODELCAR_ANNOTATION: "models"}]
    got = artifact.download(tmp_path / "back")
    assert got["model.joblib"].read_bytes() == (written / "model.joblib").read_bytes()
    assert got["metrics/acc.json"].read_text() == '{"acc": 0.9}'
    # what an endpoint's init container runs, with the same standard-library client
    assert job_outputs.pull(where, str(tmp_path / "init"), environ=env) == files

    assert delete_repository(repo, insecure=True, credentials=creds) == 1  # tagged outputs-pod-a
    with pytest.raises(RegistryError) as info:
        artifact.manifest()
    assert info.value.status == 404
    for layer in manifest["layers"]:
        with pytest.raises(job_outputs.OutputsError, match="HTTP 404"):
            job_outputs.Registry(host, insecure=True, auth_file=env["FAIRING_OUTPUTS_AUTH_FILE"]).get_blob(
                "team/job-image-outputs/job-1", layer["digest"])
    assert delete_repository(repo, insecure=True, credentials=creds) == 0


def test_refused_credentials_fail_the_push_without_showing_them(token_registry, tmp_path):
    user, _password = next(iter(TOKEN_USERS.items()))
    host = token_registry.address
    env, _ = _job_env(tmp_path, f"oci://{host}/team/x-outputs/job-2:outputs",
                      _auth_file(tmp_path, host, user, "wrong-password-xyz"))
    with pytest.raises(job_outputs.OutputsError, match=f"cannot get a token for {host}") as info:
        job_outputs.send("line", limit=1000, environ=env)
    assert "wrong-password-xyz" not in str(info.value)
    assert base64.b64encode(f"{user}:wrong-password-xyz".encode()).decode() not in str(info.value)


def test_a_large_result_travels_with_the_outputs_and_alone_falls_back_to_the_log(registry, tmp_path):
    repo = f"{registry.address}/r-outputs/job-3"
    env, _ = _job_env(tmp_path, f"oci://{repo}:outputs")
    line = "fairing-result:v1:" + "A" * 5000
    where, _files, large = job_outputs.send(line, limit=4000, environ=env)
    assert large
    assert Outputs(where, insecure=True).result_line() == line
    assert Outputs(where, insecure=True).files() == ["metrics/acc.json", "model.joblib"]  # the result is no file
    delete_repository(repo, insecure=True)
    # no files, and a registry it cannot reach: the caller keeps the line (for the log)
    unreachable = {"FAIRING_OUTPUTS_TARGET": "oci://127.0.0.1:9/r/job:outputs", "FAIRING_OUTPUTS_INSECURE": "1",
                   "FAIRING_OUTPUTS": str(tmp_path / "empty")}
    assert job_outputs.send(line, limit=4000, environ=unreachable) == (None, [], False)
    # with files, the same failure fails the job, saying why
    env["FAIRING_OUTPUTS_TARGET"] = unreachable["FAIRING_OUTPUTS_TARGET"]
    with pytest.raises(job_outputs.OutputsError, match="cannot reach the registry 127.0.0.1:9"):
        job_outputs.send(line, limit=4000, environ=env)


def test_basic_auth_over_tls(tls_registry, tmp_path, monkeypatch):
    user, password = next(iter(TLS_USERS.items()))
    host = tls_registry.address
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_path))  # how a job trusts a private CA
    env, written = _job_env(tmp_path, f"oci://{host}/t-outputs/job-4:outputs",
                            _auth_file(tmp_path, host, user, password), insecure=False)
    where, files, _ = job_outputs.send("x", limit=1000, environ=env)
    assert job_outputs.pull(where, str(tmp_path / "back"), environ=env) == files
    assert (tmp_path / "back" / "model.joblib").read_bytes() == (written / "model.joblib").read_bytes()
    anonymous = {k: v for k, v in env.items() if k != "FAIRING_OUTPUTS_AUTH_FILE"}
    with pytest.raises(job_outputs.OutputsError, match="HTTP 401"):
        job_outputs.pull(where, str(tmp_path / "again"), environ=anonymous)


def test_a_listed_output_that_is_missing_or_escapes_is_refused(tmp_path):
    env = {"FAIRING_OUTPUTS_TARGET": str(tmp_path / "to"), "FAIRING_OUTPUT_PATHS": json.dumps(["nope.bin"])}
    with pytest.raises(job_outputs.OutputsError, match="the output 'nope.bin' was not written by the job"):
        job_outputs.send("x", limit=10, environ=env, cwd=str(tmp_path))
    with pytest.raises(job_outputs.OutputsError, match="leaves the outputs directory"):
        job_outputs.copy_to(str(tmp_path / "to"), {"../evil": __file__})
