"""The cloud backends' registry login against a local server speaking the AWS protocol
(moto's server mode) and with google-auth credentials objects."""

import socket
import subprocess
import sys
import time

import pytest

from fairing.backends.cloud import aws_backend, ecr_credentials, gcp_credentials
from fairing.builders.append import AppendBuilder
from fairing import RegistryAuthError


@pytest.fixture(scope="module")
def moto_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "moto server did not start"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def session():
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")


def test_ecr_login_token_becomes_push_and_pull_credentials(moto_server, session, tmp_path, monkeypatch):
    host, creds = ecr_credentials(session, endpoint_url=moto_server)
    assert host.endswith(".dkr.ecr.eu-west-1.amazonaws.com")
    cred = creds(host)
    assert cred.username == "AWS" and cred.password
    assert creds("other.example.com") is None  # only for the ECR host
    assert cred.password not in repr(creds) and cred.password not in str(cred)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u, namespace: team}\ncurrent-context: c\n"
        "users:\n- name: u\n  user: {token: t}\n")
    backend = aws_backend(session=session, endpoint_url=moto_server, base_image=f"{host}/python:3.11",
                          service_account="trainer", kubeconfig=str(kubeconfig))
    assert isinstance(backend.builder, AppendBuilder) and backend.builder.registry == f"{host}/fairing"
    assert backend.deployer.pull_credentials(host).username == "AWS"
    assert backend.deployer.kube.namespace == "team"
    spec = backend.deployer.mutators[0]({"containers": [{"name": "c"}]})
    assert spec["serviceAccountName"] == "trainer"


def test_ecr_without_credentials_is_a_clear_error(moto_server):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    class Unsigned:
        def client(self, name, endpoint_url=None):
            return boto3.client(name, endpoint_url="http://127.0.0.1:1", region_name="eu-west-1",
                                config=Config(signature_version=UNSIGNED, connect_timeout=1, retries={"max_attempts": 1}))

    with pytest.raises(RegistryAuthError, match="ECR login token"):
        ecr_credentials(Unsigned())


def test_google_access_token_becomes_registry_credentials():
    from google.oauth2.credentials import Credentials

    creds = gcp_credentials(Credentials(token="ya29.token"), host="europe-docker.pkg.dev")
    cred = creds("europe-docker.pkg.dev")
    assert (cred.username, cred.password) == ("oauth2accesstoken", "ya29.token")
    with pytest.raises(RegistryAuthError, match="no access token"):
        gcp_credentials(Credentials(token=None), host="europe-docker.pkg.dev")
