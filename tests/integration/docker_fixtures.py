"""Fixtures of the Docker tests: a real engine, a real registry, the Debian base image in it,
and checks that every test removes the containers and images it made.

Imported by ``test_docker_*.py`` (``from .docker_fixtures import *``).
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from tests.services.base_image import IMAGE_ENV, base_layer
from tests.services.dockerd import ensure_dockerd
from tests.services.registry import start_registry

__all__ = ["docker_client", "no_docker_temp_files", "registry", "auth_registry", "base_image", "images", "job_label",
           "AUTH_USER", "AUTH_PASSWORD", "fairing_containers", "registry_digest"]

AUTH_USER = "alice"
AUTH_PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so a leak is easy to grep for
LABEL_JOB = "dev.fairing.job"


@pytest.fixture(scope="session")
def docker_client():
    """A client of the real Docker engine (started by the harness when it is not running)."""
    import docker

    ensure_dockerd()
    client = docker.from_env(timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry():
    """Debian's docker-registry on a free loopback port (plain HTTP, anonymous)."""
    with start_registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry():
    """A TLS registry with htpasswd basic auth (user AUTH_USER, password AUTH_PASSWORD)."""
    with start_registry(tls=True, users={AUTH_USER: AUTH_PASSWORD}) as reg:
        yield reg


@pytest.fixture(scope="session")
def base_image(registry, docker_client):
    """``<registry>/fairing-tests/python:3.11-bookworm``: the harness's Debian bookworm + python3
    root filesystem (:func:`tests.services.base_image.base_layer`), imported into the engine with
    the harness's image env, pushed to the test registry through the engine, and untagged
    locally so that the first build pulls it from the registry. Removed at the end."""
    name = f"{registry.address}/fairing-tests/python:3.11-bookworm"
    layer = base_layer()
    changes = [f"ENV {item}" for item in IMAGE_ENV] + ['CMD ["python3"]']
    docker_client.api.import_image_from_file(str(layer.path), repository=name.rsplit(":", 1)[0],
                                             tag="3.11-bookworm", changes=changes)
    for chunk in docker_client.api.push(name, stream=True, decode=True):
        assert "error" not in chunk, chunk
    image_id = docker_client.images.get(name).id
    docker_client.images.remove(name, force=True)
    yield name
    for ref in (name, image_id):
        try:
            docker_client.images.remove(ref, force=True)
        except Exception:
            pass


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
    found = client.containers.list(all=True, filters={"label": LABEL_JOB})
    return [c for c in found if name_part in c.labels.get(LABEL_JOB, "")]


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
    """Images a test made: the ones it names with ``add`` and any other image that appeared
    during the test without a tag (the cache of a failed build, pulled parents); removed when
    the test ends."""

    def __init__(self, client, keep: set) -> None:
        self.client = client
        self.refs: list[str] = []
        self.keep = keep
        self.before = {image.id for image in client.images.list(all=True)}

    def add(self, ref) -> None:
        self.refs.append(str(getattr(ref, "id", None) or ref))

    def _remove(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
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
        for _ in range(3):  # children first: a parent goes once its children are gone
            for image in self.client.images.list(all=True):
                if image.id not in self.before and image.id not in self.keep and not image.tags:
                    self._remove(image.id)


@pytest.fixture
def images(docker_client, base_image):
    tracker = _Images(docker_client, keep={docker_client.images.get(base_image).id}
                      if _has(docker_client, base_image) else set())
    yield tracker
    tracker.cleanup()


def _has(client, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except Exception:
        return False


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

