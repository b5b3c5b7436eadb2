"""Artifacts between builders and deployers, and the check that refuses a pair that share none."""

import dataclasses

import pytest

import fairing
from fairing import ConfigurationError
from fairing.api import preprocessor_for
from fairing.artifacts import DockerImage, LocalDir, RegistryImage, check_pair
from fairing.backends import Backend, get_backend
from fairing.builders.append import AppendBuilder
from fairing.builders.docker import DockerBuilder
from fairing.builders.local import LocalBuilder
from fairing.deployers.docker import DockerDeployer
from fairing.deployers.job import JobDeployer
from fairing.deployers.local import LocalDeployer
from fairing.images import ImageRef

DIGEST = "sha256:" + "b" * 64


def test_registry_image_is_always_pinned():
    image = RegistryImage.pin(ImageRef.parse("localhost:5000/team/app:fairing-1"), DIGEST)
    assert str(image) == f"localhost:5000/team/app:fairing-1@{DIGEST}" and image.pinned
    assert isinstance(image, ImageRef)  # usable wherever a reference is
    assert type(image.with_tag("v2")) is ImageRef and image.with_tag("v2").digest is None
    assert type(image.ref) is ImageRef and image.ref.digest == DIGEST
    with pytest.raises(ConfigurationError, match="must be pinned by digest"):
        RegistryImage("localhost:5000", "team/app", "v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.digest = None  # type: ignore[misc]


def test_builders_and_deployers_declare_their_artifacts():
    assert LocalBuilder.produces is LocalDir and LocalDeployer.accepts == (LocalDir,)
    assert AppendBuilder.produces is RegistryImage and JobDeployer.accepts == (RegistryImage,)
    assert DockerDeployer.accepts == (RegistryImage, DockerImage)
    # the Docker builder makes a RegistryImage only when it pushes
    assert DockerBuilder("python:3.11").produces is DockerImage
    assert DockerBuilder("python:3.11", "localhost:5000/team").produces is RegistryImage
    assert DockerBuilder("python:3.11", "localhost:5000/team", push=False).produces is DockerImage


def test_a_mismatched_pair_is_refused_with_the_pairs_that_work():
    with pytest.raises(ConfigurationError) as info:
        Backend("mine", LocalBuilder(), JobDeployer(namespace="ns"))
    text = str(info.value)
    assert "LocalBuilder makes a LocalDir, which JobDeployer (the deployer) cannot run: it runs a RegistryImage" in text
    assert "LocalDir: builders local -> deployers local" in text
    assert "DockerImage: builders docker -> deployers docker" in text
    assert "RegistryImage: builders append, docker, cluster -> deployers docker, job, tfjob, pytorchjob, trainjob, serving, kserve" in text


def test_docker_builder_without_registry_and_a_cluster_deployer_says_to_push():
    with pytest.raises(ConfigurationError, match="Give the Docker builder registry= so that it pushes"):
        Backend("mine", DockerBuilder("python:3.11"), JobDeployer(namespace="ns"))
    Backend("mine", DockerBuilder("python:3.11", "localhost:5000/t"), JobDeployer(namespace="ns"))  # fine


def test_pairs_that_work_are_accepted_and_undeclared_stages_are_trusted():
    check_pair(LocalBuilder(), LocalDeployer())
    check_pair(DockerBuilder("python:3.11"), DockerDeployer())
    check_pair(AppendBuilder("python:3.11", "localhost:5000"), DockerDeployer())

    class MyBuilder:
        def build(self, context, *, on_event=None):
            return "anything"

    check_pair(MyBuilder(), JobDeployer(namespace="ns"))


def test_get_backend_puts_the_given_builder_and_deployer_together():
    appended = AppendBuilder("python:3.11", "localhost:5000")
    with pytest.raises(ConfigurationError, match="AppendBuilder makes a RegistryImage, which LocalDeployer"):
        get_backend("local", builder=appended)
    backend = get_backend("local", builder=appended, deployer=DockerDeployer())
    assert backend.builder is appended and isinstance(backend.deployer, DockerDeployer)
    local = get_backend("local")
    with pytest.raises(ConfigurationError, match="LocalBuilder makes a LocalDir, which DockerDeployer"):
        get_backend(local, deployer=DockerDeployer())
    with pytest.raises(ConfigurationError, match=r"Options \['python'\] were given with a Backend object"):
        get_backend(local, python="python3")


def test_submit_refuses_a_mismatched_pair_before_packaging(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("print(1)\n")
    events = []
    with pytest.raises(ConfigurationError, match="cannot run"):
        fairing.submit(preprocessor_for(str(script)), backend="local",
                       deployer=JobDeployer(namespace="ns"), on_event=events.append)
    assert events == []  # refused when put together: nothing was packaged or built
