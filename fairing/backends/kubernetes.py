"""The kubernetes and kubeflow backends: build to a registry, run as a Job (or given deployer).

The builder follows the environment unless one is given: the in-cluster (Kaniko)
builder when a Dockerfile is needed and fairing runs inside a cluster, the Docker
builder when a Docker engine answers, else the append builder (no daemon needed).
"""

from __future__ import annotations

from typing import Any, Optional

from ..environment import Environment, current
from ..errors import ConfigurationError
from ..kube import KubeClient
from . import Backend

__all__ = ["kubernetes_backend", "kubeflow_backend", "choose_builder"]


def choose_builder(*, base_image: Optional[str], registry: Optional[str], dockerfile: Optional[str] = None,
                   environment: Optional[Environment] = None, **builder_options: Any):
    """The builder for this environment (see the module docstring); ``environment``
    [:func:`fairing.environment.current`] says whether fairing runs in a cluster and
    whether a Docker engine answers."""
    if not registry or not base_image and not dockerfile:
        raise ConfigurationError(
            "A cluster backend needs an image registry and a base image to build on: e.g. "
            "kubernetes_backend(registry='registry.example.com/team', base_image='python:3.11-slim'), "
            "or give your own builder=."
        )
    from .._registry import load
    from ..builders import BUILDERS

    env = environment or current()
    docker_answers = env.docker_answers()
    if dockerfile and env.in_cluster and not docker_answers:
        name = "cluster"
    elif docker_answers:
        name = "docker"
    elif dockerfile:
        raise ConfigurationError(
            "A Dockerfile build needs a Docker engine here or a cluster to build in, and neither is available. "
            "Start Docker, run from inside the cluster, or drop the Dockerfile and use the append builder."
        )
    else:
        name = "append"
    options = {"base_image": base_image, "registry": registry, **builder_options}
    if dockerfile:
        options["dockerfile"] = dockerfile
    return load(BUILDERS, name, "builder")(**options)


def kubernetes_backend(*, registry: Optional[str] = None, base_image: Optional[str] = None,
                       namespace: Optional[str] = None, kubeconfig: Optional[str] = None,
                       context: Optional[str] = None, builder: Any = None, deployer: Any = None,
                       dockerfile: Optional[str] = None, insecure: Any = False, **deployer_options: Any) -> Backend:
    """Build to ``registry`` on ``base_image`` and run as a Job in ``namespace``.

    ``builder``: your own builder instead of the one chosen from ``registry``,
    ``base_image``, ``dockerfile`` and ``insecure`` (True, or registry hosts fairing may
    reach over plain HTTP [loopback only]). ``deployer_options`` go to
    :class:`~fairing.deployers.job.JobDeployer` (mutators, backoff_limit,
    ttl_seconds_after_finished...).
    """
    from ..deployers.job import JobDeployer
    from ..deployers.serving import ServingDeployer

    kube = KubeClient(kubeconfig=kubeconfig, context=context, namespace=namespace)
    if deployer is None:
        deployer = JobDeployer(kube=kube, **deployer_options)
    if builder is None:
        builder = choose_builder(base_image=base_image, registry=registry, dockerfile=dockerfile,
                                 **({"insecure": insecure} if insecure else {}))
    elif registry is not None or base_image is not None or dockerfile is not None or insecure:
        raise ConfigurationError(
            f"registry=, base_image=, dockerfile= and insecure= choose a builder, but builder={type(builder).__name__}(...) "
            "was given too: set them on that builder instead."
        )
    serving = ServingDeployer(kube=kube, mutators=deployer_options.get("mutators", ()),
                              pull_credentials=deployer_options.get("pull_credentials"))
    return Backend("kubernetes", builder, deployer, serving)


def kubeflow_backend(*, service_account: str = "default-editor", **options: Any) -> Backend:
    """Inside a Kubeflow notebook: the profile namespace (the pod's own) and its default-editor account."""
    from ..deployers.mutators import service_account as use_account

    pod_namespace = current().pod_namespace
    if "namespace" not in options and pod_namespace:
        options["namespace"] = pod_namespace
    options["mutators"] = [use_account(service_account), *options.get("mutators", [])]
    return kubernetes_backend(**options)
