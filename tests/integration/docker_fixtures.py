"""Fixtures of the Docker tests on top of the harness's (``tests/integration/conftest.py``:
``docker_engine``, ``registry``, ``tls_registry``, ``base_image``): a Docker SDK client, and
checks that every test removes the containers, images and temp files it made.

Imported by ``test_docker_*.py`` (``from .docker_fixtures import *``).
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from tests.integration.conftest import TLS_USERS

__all__ = ["docker_client", "no_docker_temp_files", "engine_base_image", "images", "job_label", "AUTH_USER", "AUTH_PASSWORD",
           "fairing_containers", "registry_digest"]

AUTH_USER, AUTH_PASSWORD = next(iter(TLS_USERS.items()))
LABEL_JOB = "dev.fairing.job"


@pytest.fixture(scope="session")
def docker_client(docker_engine):
    """A Docker SDK client of the harness's real engine."""
    import docker

    client = docker.from_env(timeout=600)
    yield client
    client.close()


@pytest.fixture
def no_docker_temp_files():
    """Fails the test if the Docker builder or deployer left a temp file or directory behind.
    (The suite-wide ``no_leftovers`` cannot be used here: the session's registry and other
    sessions sharing this machine make ``fairing-*`` entries of their own.)"""
    def entries() -> set:
        return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(("fairing-docker", "fairing-job"))}

    before = entries()
    yield
    left = entries() - before
    assert not left, f"left behind in {tempfile.gettempdir()}: {sorted(left)}"


def fairing_containers(client, name_part: str = "") -> list:
    """Containers (running or not) that fairing started, optionally whose job name contains ``name_part``."""
    # ignore_removed: one that fairing removes while this lists is gone, not an error; one being
    # removed ("removing") is not left behind either
    found = client.containers.list(all=True, filters={"label": LABEL_JOB}, ignore_removed=True)
    return [c for c in found if name_part in c.labels.get(LABEL_JOB, "") and c.status != "removing"]


@pytest.fixture
def job_label(docker_client, request):
    """A unique job-name prefix for this test; fails it if a container with that prefix is left."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    left = fairing_containers(docker_client, prefix)
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


class _Images:
    """Images a test made (``add``): removed with their untagged parents when the test ends.

    Only these and their own parent chains: a sweep of every new image would also hit the
    build cache that another session (sharing the engine) is building on."""

    def __init__(self, client) -> None:
        self.client = client
        self.refs: list[str] = []

    def add(self, ref) -> None:
        self.refs.append(str(getattr(ref, "id", None) or ref))

    def add_cache(self, error) -> None:
        """The build cache a failed build left (``BuildError.cache_image``), unless that is a
        pulled image (the base) rather than one the build made."""
        try:
            image = self.client.images.get(error.cache_image)
        except Exception:
            return
        if not image.tags and not image.attrs.get("RepoDigests"):
            self.refs.append(image.id)

    def _remove(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)  # also prunes its untagged parents
        except Exception:
            pass

    def cleanup(self) -> None:
        for ref in reversed(self.refs):
            try:
                image = self.client.images.get(ref)
            except Exception:
                continue
            for name in [*(image.tags or []), *(image.attrs.get("RepoDigests") or [])]:
                self._remove(name)
            self._remove(image.id)


@pytest.fixture(scope="session")
def engine_base_image(docker_client, base_image):
    """The harness's base image as the engine pulls it (by digest); removed from the engine
    at the end of the session."""
    name = f"{base_image.registry}/{base_image.repository}@{base_image.digest}"
    yield name
    try:
        docker_client.images.remove(name, force=True)
    except Exception:
        pass


@pytest.fixture
def images(docker_client, base_image, engine_base_image):
    tracker = _Images(docker_client)
    yield tracker
    tracker.cleanup()


def registry_digest(registry, repository: str, reference: str) -> str:
    """The manifest digest the registry holds for ``repository:reference`` (over plain HTTP)."""
    import urllib.request

    req = urllib.request.Request(
        f"http://{registry.address}/v2/{repository}/manifests/{reference}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]

