"""The Docker backend: build with the local Docker engine, run the image as a local container.

``docker_backend(base_image="python:3.11-slim")`` builds and runs locally without a
registry; give ``registry=`` to push too (the image that runs is then the pushed one,
pinned by digest, exactly what a cluster would pull). Podman: ``base_url=`` its socket.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from .._options import checks_options, forwards_to, job_options
from . import Backend


@job_options("registry", "base_image", "cpu", "memory", "gpus", "env")
@checks_options
@forwards_to("fairing.builders.docker:DockerBuilder")
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
    builder: Any = None,
    deployer: Any = None,
    **builder_options: Any,
) -> Backend:
    """A :class:`Backend` of a :class:`DockerBuilder` and a :class:`DockerDeployer` on one engine.

    ``base_image`` defaults to ``python:X.Y-slim`` for this interpreter's X.Y (a function's
    pickle needs the same Python minor version in the job), unless ``dockerfile`` is given.

    ``base_image``, ``registry``, ``dockerfile`` and ``builder_options`` (``repository``,
    ``pull``, ``build_args``...) go to the builder; ``cpu``, ``memory``, ``gpus`` and ``env``
    to the deployer; ``base_url`` and the registry credentials (``username``/``password``,
    or ``credentials``, a provider from :mod:`fairing.images.auth`) to both. ``builder`` /
    ``deployer`` replace the Docker ones.
    """
    from ..builders.docker import DockerBuilder
    from ..deployers.docker import DockerDeployer
    from ..images.auth import resolve_credentials

    if base_image is None and dockerfile is None:
        base_image = "python:%d.%d-slim" % sys.version_info[:2]
    credentials = resolve_credentials(username=builder_options.pop("username", None),
                                      password=builder_options.pop("password", None), credentials=credentials)
    if builder is None:
        builder = DockerBuilder(base_image, registry, dockerfile=dockerfile, base_url=base_url,
                                credentials=credentials, **builder_options)
    if deployer is None:
        deployer = DockerDeployer(cpu=cpu, memory=memory, gpus=gpus, env=env, base_url=base_url,
                                  credentials=credentials)
    return Backend("docker", builder, deployer)
