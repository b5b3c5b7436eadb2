"""One parser for a builder's registry string: every builder reads 'myuser' as Docker Hub's
namespace, and 'host:port/path' the same way."""

import pytest

from fairing import ConfigurationError
from fairing.builders.append import AppendBuilder
from fairing.builders.docker import DockerBuilder
from fairing.context import BuildContext
from fairing.images.reference import RegistryPrefix, parse_registry


@pytest.mark.parametrize("text, expected", [
    ("myuser", RegistryPrefix("docker.io", "myuser")),
    ("docker.io/myuser", RegistryPrefix("docker.io", "myuser")),
    ("localhost:5000", RegistryPrefix("localhost:5000", "")),
    (" ghcr.io/my-org/ ", RegistryPrefix("ghcr.io", "my-org")),
    ("registry.example.com:5000/team/ml", RegistryPrefix("registry.example.com:5000", "team/ml")),
])
def test_parse_registry(text, expected):
    assert parse_registry(text) == expected


@pytest.mark.parametrize("bad", ["", "   ", None, "Upper/Case"])
def test_a_registry_that_names_nothing_is_refused(bad):
    with pytest.raises(ConfigurationError):
        parse_registry(bad)


def test_every_builder_reads_a_docker_hub_namespace_alike():
    context = BuildContext(files={}, entrypoint=("python3", "x.py"))
    append = AppendBuilder("python:3.11-slim", "myuser", repository="job")
    docker = DockerBuilder("python:3.11-slim", registry="myuser", repository="job")
    assert f"{append._host}/{append.target_repository(context)}" == "docker.io/myuser/job"
    assert docker.target_repository(context) == "docker.io/myuser/job"
