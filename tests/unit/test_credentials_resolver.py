"""One rule turns a stage's credential options into a provider; the shapes credentials leave in."""

import base64
import json

import pytest

from fairing import ConfigurationError, ImagePullError, RegistryAuthError
from fairing.builders.append import AppendBuilder
from fairing.builders.cluster import ClusterBuilder
from fairing.builders.docker import DockerBuilder
from fairing.deployers.docker import DockerDeployer
from fairing.images.auth import (Credential, DockerConfigCredentials, StaticCredentials, docker_auth_config,
                                 docker_config_json, lookup, resolve_credentials)


def test_username_and_password_else_credentials_else_docker_config():
    static = resolve_credentials(username="robot", password="pw")
    assert static("any.registry") == Credential("robot", "pw")
    given = StaticCredentials("u", "p", host="a.io")
    assert resolve_credentials(credentials=given) is given
    assert isinstance(resolve_credentials(), DockerConfigCredentials)


@pytest.mark.parametrize("options, message", [
    ({"username": "robot"}, "Give both username= and password=, or neither"),
    ({"password": "pw"}, "Give both username= and password=, or neither"),
    ({"username": "u", "password": "p", "credentials": StaticCredentials("x", "y")},
     "Give username=/password= or credentials=, not both"),
    ({"credentials": "robot:pw"}, "credentials must be a provider, a callable host -> Credential | None"),
])
def test_contradictory_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve_credentials(**options)


@pytest.mark.parametrize("make", [
    lambda: AppendBuilder("python:3.11", "localhost:5000", username="robot"),
    lambda: DockerBuilder("python:3.11", username="robot"),
    lambda: ClusterBuilder("python:3.11", "localhost:5000", username="robot"),
    lambda: DockerDeployer(credentials="robot:pw"),
])
def test_every_stage_uses_the_same_rule(make):
    with pytest.raises(ConfigurationError, match="username=|credentials must be a provider"):
        make()


def test_lookup_explains_a_failing_provider_without_its_secret():
    def broken(host):
        raise OSError("keychain locked, secret=hunter2")

    with pytest.raises(RegistryAuthError) as err:
        lookup(broken, "reg.example")
    assert "Looking up credentials for reg.example failed: OSError" in str(err.value)
    assert "hunter2" not in str(err.value)
    with pytest.raises(ImagePullError):
        lookup(broken, "reg.example", error=ImagePullError)


def test_the_two_shapes_credentials_leave_in():
    assert docker_auth_config(None) is None
    assert docker_auth_config(Credential("u", "p")) == {"username": "u", "password": "p"}
    assert docker_auth_config(Credential("<token>", "refresh", identity_token=True)) == {"identitytoken": "refresh"}
    provider = StaticCredentials("robot", "pw", host="reg.example")
    config = json.loads(docker_config_json(provider, ["other.example", "reg.example", "reg.example"]))
    assert config == {"auths": {"reg.example": {"auth": base64.b64encode(b"robot:pw").decode()}}}
    assert docker_config_json(provider, ["other.example"]) is None  # nothing known: no Secret at all
