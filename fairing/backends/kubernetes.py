"""The kubernetes and kubeflow backends: build to a registry, run as a Job (or given deployer).

The builder follows the environment unless one is given: the in-cluster (Kaniko)
builder when a Dockerfile is needed and fairing runs inside a cluster, the Docker
builder when a Docker engine answers, else the append builder (no daemon needed).
"""

from __future__ import annotations

from typing import Any, Optional

from .._options import checks_options, forwards_to, job_options
from ..environment import Environment, current
from ..errors import ConfigurationError
from ..kube import KubeClient
from . import Backend

__all__ = ["kubernetes_backend", "kubeflow_backend", "choose_builder", "job_deployer_class", "BUILDER_OPTIONS"]


def job_deployer_class(name: str) -> type:
    """The Kubernetes workload deployer named ``name`` ('job', 'tfjob', 'pytorchjob',
    'trainjob'), as ``deployer=`` takes it by name; anything else is a ConfigurationError."""
    from .._options import load
    from .._names import DEPLOYERS, SERVING_DEPLOYERS
    from ..deployers.kubernetes import KubeDeployerBase

    names = {k: v for k, v in DEPLOYERS.items() if k not in SERVING_DEPLOYERS and k not in ("local", "docker")}
    if name in DEPLOYERS and name not in names:
        raise ConfigurationError(f"deployer={name!r} does not run a training job on a cluster backend; choose one "
                                 f"of {', '.join(repr(n) for n in names)}"
                                 + (" (a prediction endpoint: fairing.PredictionEndpoint)." if name in SERVING_DEPLOYERS
                                    else f", or backend={name!r}."))
    klass = load(names, name, "deployer")
    assert issubclass(klass, KubeDeployerBase)
    return klass


#: Options of the backend that go to whichever builder it chooses (when that builder takes them).
BUILDER_OPTIONS = ("insecure", "ca_bundle", "platform", "python_version", "repository", "username", "password",
                   "credentials", "pip_args")


def choose_builder(*, base_image: Optional[str], registry: Optional[str], dockerfile: Optional[str] = None,
                   environment: Optional[Environment] = None, **builder_options: Any):
    """The builder for this environment (see the module docstring); ``environment``
    [:func:`fairing.environment.current`] says whether fairing runs in a cluster and
    whether a Docker engine answers. ``builder_options`` the chosen builder does not take
    are refused by name (e.g. ``python_version`` with the Docker builder, which reads the
    Python from the image it builds)."""
    if not registry or not base_image and not dockerfile:
        raise ConfigurationError(
            "A cluster backend needs an image registry and a base image to build on: e.g. "
            "kubernetes_backend(registry='registry.example.com/team', base_image='python:3.11-slim'), "
            "or FAIRING_REGISTRY / FAIRING_BASE_IMAGE, or registry/base_image under [tool.fairing] in pyproject.toml, "
            "or give your own builder=."
        )
    from .._registry import accepted_options, load
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
    factory = load(BUILDERS, name, "builder")
    given = {k: v for k, v in builder_options.items() if v is not None}
    refused = sorted(set(given) - (accepted_options(factory) or set(given)))
    if refused:
        raise ConfigurationError(
            f"The {name} builder, chosen for this environment, does not take {', '.join(refused)}. Drop "
            f"{'them' if len(refused) > 1 else 'it'}, or pass builder=... with the builder you want."
        )
    options = {"base_image": base_image, "registry": registry, **given}
    if dockerfile:
        options["dockerfile"] = dockerfile
    return factory(**options)


#: The job options every cluster backend takes (the cloud ones choose the registry themselves).
CLUSTER_JOB_OPTIONS = ("base_image", "namespace", "deployer", "replicas", "nodes", "cpu", "memory", "gpus", "env", "secret_env",
                       "queue")


@job_options("registry", "insecure_registry", *CLUSTER_JOB_OPTIONS)
@checks_options
@forwards_to("fairing.deployers.job:JobDeployer")
def kubernetes_backend(*, registry: Optional[str] = None, base_image: Optional[str] = None,
                       namespace: Optional[str] = None, kubeconfig: Optional[str] = None,
                       context: Optional[str] = None, builder: Any = None, deployer: Any = None,
                       dockerfile: Optional[str] = None, insecure: Any = None, ca_bundle: Optional[str] = None,
                       platform: Optional[str] = None, python_version: Optional[str] = None,
                       repository: Optional[str] = None, username: Optional[str] = None,
                       password: Optional[str] = None, credentials: Any = None, pip_args: Any = None,
                       warm: bool = False, warm_idle: Optional[float] = None,
                       **deployer_options: Any) -> Backend:
    """Build to ``registry`` on ``base_image`` and run as a Job in ``namespace``.

    ``insecure``, ``ca_bundle``, ``platform``, ``python_version``, ``repository``,
    ``username``/``password``/``credentials`` and ``pip_args`` go to the builder chosen
    for this environment (see :func:`choose_builder`); ``builder=`` replaces that choice
    (and then those options are refused: give them to your builder). ``deployer`` is a
    deployer object or the name of a workload ('job', 'tfjob', 'pytorchjob', 'trainjob');
    ``deployer_options`` (``cpu``, ``memory``, ``gpus``, mutators, backoff_limit,
    ttl_seconds_after_finished...) go to the :class:`~fairing.deployers.job.JobDeployer`
    or the named one, and are refused when a deployer object is given.

    ``warm=True``: each call runs on a warm worker pod that outlives it, so a re-run sends
    only the changed files and starts no pod (see :mod:`fairing.deployers.warm`); a worker
    with no call for ``warm_idle`` seconds [600] exits and its pod goes. Functions, scripts
    and notebooks run as Jobs can be warm; distributed kinds and endpoints cannot.
    """
    from ..deployers.job import JobDeployer
    from ..deployers.serving import ServingDeployer

    builder_options = {"insecure": insecure, "ca_bundle": ca_bundle, "platform": platform,
                       "python_version": python_version, "repository": repository, "username": username,
                       "password": password, "credentials": credentials, "pip_args": pip_args}
    if warm_idle is not None and not warm:
        raise ConfigurationError("warm_idle= is how long a warm worker waits for the next call; give warm=True too.")
    if warm:
        _check_warm(deployer, deployer_options)
    kube = KubeClient(kubeconfig=kubeconfig, context=context, namespace=namespace)
    if warm:
        return _warm_backend(kube, deployer, deployer_options, warm_idle, builder=builder, base_image=base_image,
                             registry=registry, dockerfile=dockerfile, builder_options=builder_options)
    if deployer is None:
        deployer = JobDeployer(kube=kube, **deployer_options)
    elif isinstance(deployer, str):
        deployer = job_deployer_class(deployer)(kube=kube, **deployer_options)
    elif set(deployer_options) - {"mutators", "pull_credentials"}:
        raise ConfigurationError(
            f"deployer= is given, so {', '.join(sorted(deployer_options))} cannot be applied to it: give them to "
            "the deployer you made."
        )
    if builder is None:
        builder = choose_builder(base_image=base_image, registry=registry, dockerfile=dockerfile, **builder_options)
    else:
        given = sorted(k for k, v in {"registry": registry, "base_image": base_image, "dockerfile": dockerfile,
                                      **builder_options}.items() if v is not None and v is not False)
        if given:
            raise ConfigurationError(
                f"{'=, '.join(given)}= choose a builder, but builder={type(builder).__name__}(...) was given too: "
                "set them on that builder instead."
            )
    serving = ServingDeployer(kube=kube, mutators=deployer_options.get("mutators", ()),
                              pull_credentials=deployer_options.get("pull_credentials"))
    return Backend("kubernetes", builder, deployer, serving)


_WARM_TAKES = {"mutators", "pull_credentials", "labels", "annotations", "insecure_hosts", "insecure_registry"}


def _check_warm(deployer: Any, deployer_options: dict) -> None:
    supported = ("warm=True runs functions (@train), scripts and notebooks as single-pod Jobs on a warm worker; "
                 "distributed kinds (TFJob, PyTorchJob, TrainJob) and endpoints cannot be warm.")
    if deployer is not None:
        name = deployer if isinstance(deployer, str) else type(deployer).__name__
        raise ConfigurationError(f"deployer={name!r} cannot be combined with warm=True: {supported} "
                                 "Drop warm=True to run it, or drop deployer= to run warm.")
    refused = sorted(set(deployer_options) - _WARM_TAKES)
    if refused:
        raise ConfigurationError(f"{', '.join(refused)} do not apply to a warm worker (it is not a Job of its own "
                                 "per call); drop them or drop warm=True.")


def _warm_backend(kube: KubeClient, deployer: Any, deployer_options: dict, warm_idle: Optional[float], *,
                  builder: Any, builder_options: dict, **choice: Any) -> Backend:
    from ..builders.warm import WarmBuilder
    from ..deployers.warm import WarmDeployer

    if builder is None:
        builder = choose_builder(**choice, **builder_options)
    options = {k: v for k, v in deployer_options.items() if k in _WARM_TAKES}
    from ..deployers.serving import ServingDeployer

    warm = WarmDeployer(kube=kube, idle=600 if warm_idle is None else warm_idle,
                        token_dir=current().cache_dir / "warm", **options)
    # endpoints are never warm (the warm setting leaves them as they are): they serve from their own image
    serving = ServingDeployer(kube=kube, mutators=options.get("mutators", ()),
                              pull_credentials=options.get("pull_credentials"))
    return Backend("kubernetes", WarmBuilder(builder), warm, serving)


@job_options("registry", "insecure_registry", *CLUSTER_JOB_OPTIONS)
@checks_options
@forwards_to(kubernetes_backend)
def kubeflow_backend(*, service_account: str = "default-editor", **options: Any) -> Backend:
    """Inside a Kubeflow notebook: the profile namespace (the pod's own, as for every cluster
    backend: see :class:`fairing.kube.KubeClient`) and its default-editor account."""
    from ..deployers.mutators import service_account as use_account

    options["mutators"] = [use_account(service_account), *options.get("mutators", [])]
    return kubernetes_backend(**options)
