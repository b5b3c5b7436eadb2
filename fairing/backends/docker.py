"""The Docker backend: build with the local Docker engine, run the image as a local container.

``docker_backend(base_image="python:3.11-slim")`` builds and runs locally without a
registry; give ``registry=`` to push too (the image that runs is then the pushed one,
pinned by digest, exactly what a cluster would pull). Podman: ``base_url=`` its socket.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from ..builders.docker import DockerBuilder
from ..deployers.docker import DockerDeployer
from . import Backend


def docker_backend(
    *,
    base_image: Any = None,
    registry: Optional[str] = None,
    dockerfile: Optional[str] = None,
    base_url: Optional[str] = None,
    cpu: Any = None,
    memory: Any = None,
    gpus: Any = None,
    env: Optional[dict] = None,
    credentials: Any = None,
    **builder_options: Any,
) -> Backend:
    """A :class:`Backend` of a :class:`DockerBuilder` and a :class:`DockerDeployer` on one engine.

    ``base_image`` defaults to ``python:X.Y-slim`` for this interpreter's X.Y (a function's
    pickle needs the same Python minor version in the job), unless ``dockerfile`` is given.

    ``base_image``, ``registry``, ``dockerfile`` and ``builder_options`` (``repository``,
    ``pull``, ``build_args``...) go to the builder; ``cpu``, ``memory``, ``gpus`` and ``env``
    to the deployer; ``base_url`` and the registry credentials (``username``/``password``,
    or ``credentials``, a provider from :mod:`fairing.images.auth`) to both.
    """
    if base_image is None and dockerfile is None:
        base_image = "python:%d.%d-slim" % sys.version_info[:2]
    username, password = builder_options.pop("username", None), builder_options.pop("password", None)
    if username is not None and password is not None and credentials is None:
        from ..images.auth import StaticCredentials

        credentials = StaticCredentials(username, password)
    elif (username is None) != (password is None):
        from ..errors import ConfigurationError

        raise ConfigurationError("Give both username= and password=, or neither (to use ~/.docker/config.json).")
    builder = DockerBuilder(base_image, registry, dockerfile=dockerfile, base_url=base_url,
                            credentials=credentials, **builder_options)
    deployer = DockerDeployer(cpu=cpu, memory=memory, gpus=gpus, env=env, base_url=base_url, credentials=credentials)
    return Backend("docker", builder, deployer)
