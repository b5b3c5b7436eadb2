"""The kubernetes and kubeflow backends: build to a registry, run as a Job (or given deployer).

The builder follows the environment unless one is given: the in-cluster (Kaniko)
builder when a Dockerfile is needed and fairing runs inside a cluster, the Docker
builder when a Docker engine answers, else the append builder (no daemon needed).
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigurationError
from ..kube import SERVICE_ACCOUNT_DIR, KubeClient
from . import Backend

__all__ = ["kubernetes_backend", "kubeflow_backend", "choose_builder"]


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    try:
        docker.from_env(timeout=3).ping()
    except Exception:  # no daemon, no permission: not an option here
        return False
    return True


def choose_builder(*, base_image: Optional[str], registry: Optional[str], dockerfile: Optional[str] = None,
                   **builder_options: Any):
    """The builder for this environment (see the module docstring)."""
    if not registry or not base_image and not dockerfile:
        raise ConfigurationError(
            "A cluster backend needs an image registry and a base image to build on: e.g. "
            "kubernetes_backend(registry='registry.example.com/team', base_image='python:3.11-slim')."
        )
    from .._registry import load
    from ..builders import BUILDERS

    in_cluster = (SERVICE_ACCOUNT_DIR / "token").is_file()
    if dockerfile and in_cluster and not _docker_answers():
        name = "cluster"
    elif _docker_answers():
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
                       dockerfile: Optional[str] = None, **deployer_options: Any) -> Backend:
    """Build to ``registry`` on ``base_image`` and run as a Job in ``namespace``.

    ``deployer_options`` go to :class:`~fairing.deployers.job.JobDeployer` (mutators,
    backoff_limit, ttl_seconds_after_finished...).
    """
    from ..deployers.job import JobDeployer
    from ..deployers.serving import ServingDeployer

    kube = KubeClient(kubeconfig=kubeconfig, context=context, namespace=namespace)
    if deployer is None:
        deployer = JobDeployer(kube=kube, **deployer_options)
    if builder is None:
        builder = choose_builder(base_image=base_image, registry=registry, dockerfile=dockerfile)
    serving = ServingDeployer(kube=kube, mutators=deployer_options.get("mutators", ()),
                              pull_credentials=deployer_options.get("pull_credentials"))
    return Backend("kubernetes", builder, deployer, serving)


def kubeflow_backend(*, service_account: str = "default-editor", **options: Any) -> Backend:
    """Inside a Kubeflow notebook: the profile namespace (the pod's own) and its default-editor account."""
    from ..deployers.mutators import service_account as use_account

    ns_file = SERVICE_ACCOUNT_DIR / "namespace"
    if "namespace" not in options and ns_file.is_file():
        options["namespace"] = ns_file.read_text().strip()
    options["mutators"] = [use_account(service_account), *options.get("mutators", [])]
    return kubernetes_backend(**options)
