"""Credential lookup from a temporary DOCKER_CONFIG, including a real credential helper."""

import base64
import json
import os
import stat
import sys

import pytest

from fairing.errors import ConfigurationError, RegistryAuthError
from fairing.images.auth import Credential, DockerConfigCredentials, StaticCredentials
from fairing.images.registry import parse_challenge, redact


def _config(tmp_path, value) -> DockerConfigCredentials:
    (tmp_path / "config.json").write_text(json.dumps(value))
    return DockerConfigCredentials(tmp_path / "config.json")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_inline_and_key_forms(tmp_path):
    creds = _config(tmp_path, {"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hubuser:hubpass")},
        "http://localhost:5000": {"auth": _b64("local:pa:ss")},
        "ghcr.io": {"username": "gh", "password": "tok"},
        "quay.io": {"identitytoken": "refresh-me"},
    }})
    assert creds("docker.io") == Credential("hubuser", "hubpass")
    assert creds("localhost:5000") == Credential("local", "pa:ss")
    assert creds("ghcr.io") == Credential("gh", "tok")
    assert creds("quay.io").identity_token
    assert creds("other.example.com") is None


def test_missing_or_empty_config_means_anonymous(tmp_path):
    assert DockerConfigCredentials(tmp_path / "nope.json")("ghcr.io") is None
    assert _config(tmp_path, {})("ghcr.io") is None


def test_docker_config_env(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"r.example": {"auth": _b64("u:p")}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert DockerConfigCredentials()("r.example") == Credential("u", "p")


def test_broken_config_clear_errors(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        DockerConfigCredentials(tmp_path / "config.json")("x.io")
    with pytest.raises(ConfigurationError, match="docker login"):
        _config(tmp_path, {"auths": {"x.io": {"auth": _b64("no-colon")}}})("x.io")


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """A real docker-credential-* program on PATH implementing the helper protocol."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fairingtest"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "assert sys.argv[1] == 'get'\n"
        "server = sys.stdin.read().strip()\n"
        "known = {'helper.example': ('hu', 'hs'), 'https://index.docker.io/v1/': ('dh', 'ds'), 'tok.example': ('<token>', 'rt')}\n"
        "if server not in known:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "u, s = known[server]\n"
        "print(json.dumps({'ServerURL': server, 'Username': u, 'Secret': s}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return "fairingtest"


def test_creds_store_and_cred_helpers(tmp_path, helper):
    creds = _config(tmp_path, {"credsStore": helper, "credHelpers": {"per.example": helper},
                               "auths": {"inline.example": {"auth": _b64("i:p")}}})
    assert creds("helper.example") == Credential("hu", "hs")
    assert creds("docker.io") == Credential("dh", "ds")  # asked with Docker Hub's legacy key
    assert creds("tok.example").identity_token
    assert creds("inline.example") == Credential("i", "p")
    assert creds("unknown.example") is None  # 'not found' means no credentials
    assert creds("per.example") is None


def test_missing_helper_clear_error(tmp_path):
    creds = _config(tmp_path, {"credsStore": "does-not-exist-anywhere"})
    with pytest.raises(RegistryAuthError, match="docker-credential-does-not-exist-anywhere.*not on PATH"):
        creds("x.io")


def test_secrets_never_in_repr():
    cred = Credential("user", "s3cr3t")
    assert "s3cr3t" not in repr(cred) and "s3cr3t" not in str(cred)
    assert "s3cr3t" not in repr(StaticCredentials("user", "s3cr3t"))
    assert StaticCredentials("u", "p", host="a.io")("b.io") is None


def test_parse_challenge_and_redact():
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                                     'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    assert redact("https://u:p@r.io/v2/a/blobs/uploads/1?_state=SECRET&digest=x") == "https://r.io/v2/a/blobs/uploads/1"
