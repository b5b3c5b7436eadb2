"""Podman's Docker-compatible API through the same code: DockerBuilder and DockerDeployer with base_url."""

from __future__ import annotations

import pytest

from fairing import BuildError, JobFailedError
from fairing.builders.docker import DockerBuilder
from fairing.deployers.docker import DockerDeployer
from fairing.events import LogLine, Progress
from fairing.preprocessors.function import FunctionPreprocessor

from tests.integration.docker_fixtures import no_docker_temp_files, registry_digest  # noqa: F401
from tests.services.podman import start_podman

pytestmark = pytest.mark.usefixtures("no_docker_temp_files")


@pytest.fixture(scope="module")
def podman():
    """A private rootful Podman service; stopping it removes all its containers and images."""
    with start_podman() as service:
        yield service


def _containers(podman) -> list:
    import docker

    client = docker.DockerClient(base_url=podman.base_url)
    try:
        return client.api.containers(all=True)
    finally:
        client.close()


def test_build_push_and_run_through_podman(podman, registry, base_image):
    events: list = []

    def triple(x):
        print("tripling in podman", x, flush=True)
        return 3 * x

    builder = DockerBuilder(base_image, registry.address, base_url=podman.base_url, repository="podman/triple")
    ref = builder.build(FunctionPreprocessor(triple, (14,), {}).context(), on_event=events.append)
    assert ref.digest and registry_digest(registry, "podman/triple", ref.tag) == ref.digest
    steps = [e for e in events if isinstance(e, Progress) and e.task == "docker build" and e.note != "cached"]
    assert steps[0].done == 1 and steps[-1].note.startswith("COPY code/")  # Podman's "STEP n/m:" lines parsed

    # a one-line change: Podman's build cache keeps the requirements step
    events.clear()

    def triple2(x):
        print("tripling again in podman", x, flush=True)
        return 3 * x

    builder.build(FunctionPreprocessor(triple2, (1,), {}).context(), on_event=events.append)
    notes = [e.note for e in events if isinstance(e, Progress) and e.task == "docker build"]
    pip = next(i for i, n in enumerate(notes) if "pip install" in n)
    assert notes[pip + 1] == "cached", notes

    handle = DockerDeployer(base_url=podman.base_url, memory="256Mi").deploy(ref, name="podman-triple",
                                                                            on_event=events.append)
    try:
        assert handle.result(120) == 42
    finally:
        handle.delete()
    assert "tripling in podman 14" in [e.line for e in events if isinstance(e, LogLine) and not e.source]
    assert not _containers(podman)


def test_failures_through_podman(podman, base_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo podman-step-output && exit 4\n")
    with pytest.raises(BuildError) as err:
        DockerBuilder(dockerfile=tmp_path / "Dockerfile", base_url=podman.base_url).build(
            FunctionPreprocessor(print, (), {}).context())
    assert "step 2/2" in str(err.value) and "podman-step-output" in str(err.value)

    def exits():
        import os
        os._exit(5)

    image = DockerBuilder(base_image, base_url=podman.base_url).build(FunctionPreprocessor(exits, (), {}).context())
    handle = DockerDeployer(base_url=podman.base_url).deploy(image, name="podman-exits")
    try:
        with pytest.raises(JobFailedError) as failed:
            handle.result(60)
        assert failed.value.exit_code == 5
    finally:
        handle.delete()
    assert not _containers(podman)
