"""Real services for the integration tests: registries, a Docker engine, a base image.

All are session-scoped and started by the fixtures themselves (tests/services/); a
service that cannot be had fails the test with a message saying what to install,
never skips it. See tests/services/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.services.registry import start_registry  # noqa: E402

TLS_USERS = {"alice": "correct-horse-battery"}


@pytest.fixture(scope="session")
def registry():
    """A plain-HTTP, anonymous docker-registry on a free loopback port."""
    handle = start_registry()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def tls_registry():
    """A docker-registry over TLS (self-signed CA at ``.ca_path``) with htpasswd basic auth
    for the users in ``.users``."""
    handle = start_registry(tls=True, users=TLS_USERS)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def base_image(registry):
    """The Debian bookworm + python3 base image in ``registry``, pinned by digest."""
    from tests.services.base_image import push_base_image

    return push_base_image(registry.address)


@pytest.fixture(scope="session")
def tls_base_image(tls_registry):
    from tests.services.base_image import push_base_image

    user, password = next(iter(TLS_USERS.items()))
    return push_base_image(tls_registry.address, ca_bundle=str(tls_registry.ca_path), username=user, password=password)


@pytest.fixture(scope="session")
def docker_engine():
    """A running Docker engine (started here if none answers; stopped again if so)."""
    from tests.services.dockerd import ensure_docker

    engine = ensure_docker()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def fairing_cache(tmp_path_factory):
    """A fresh local cache for fairing (base manifests, requirement layers)."""
    return tmp_path_factory.mktemp("fairing-cache")


TOKEN_USERS = {"bob": "token-password-1"}


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """A plain-HTTP registry whose auth is bearer tokens from a real token service
    (``.token`` is the service, with ``.requests``)."""
    from tests.services.token_server import start_token_server

    server = start_token_server(TOKEN_USERS, tmp_path_factory.mktemp("token"))
    handle = start_registry(token=server)
    handle.token = server
    yield handle
    handle.stop()
    server.stop()
