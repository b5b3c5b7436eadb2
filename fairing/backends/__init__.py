"""Backends: a bundle of defaults (builder, deployer) for one environment.

``local`` (a subprocess; the embedded default), ``docker`` (the local Docker engine),
``kubernetes``, ``kubeflow``, ``gke``, ``aws``. A backend is a plain value; choose one
by name with :func:`get_backend` or build one yourself. Its builder and deployer must
share an artifact type (:func:`fairing.artifacts.check_pair`): a mismatched pair is
refused when the backend is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from ..artifacts import check_pair, pairs_that_work

__all__ = ["Backend", "BackendChoice", "get_backend", "backend_factory", "BACKENDS", "working_pairs", "with_settings"]

from .._names import BACKENDS  # noqa: E402  (the table lives at the bottom)


@dataclass(frozen=True)
class Backend:
    """``deployer`` runs jobs; ``serving`` runs prediction endpoints (None: this backend cannot)."""

    name: str
    builder: Any
    deployer: Any
    serving: Any = None

    def __post_init__(self) -> None:
        check_pair(self.builder, self.deployer, known_pairs=working_pairs)


def working_pairs() -> list[str]:
    """The built-in builders and deployers that work together, by artifact type."""
    from .._options import load
    from ..builders import BUILDERS
    from ..deployers import DEPLOYERS

    return pairs_that_work({name: load(BUILDERS, name, "builder") for name in BUILDERS},
                           {name: load(DEPLOYERS, name, "deployer") for name in DEPLOYERS})


#: Settings a backend chooses itself (the cloud backends derive the registry from the account).
_OWN_SETTINGS = {
    "aws": ("registry", "insecure", "ca_bundle"),
    "gke": ("registry", "insecure", "ca_bundle"),
}
_BUILDER_SETTINGS = ("registry", "base_image", "insecure", "ca_bundle", "platform", "python_version")


def backend_factory(backend: Any = None, options: Optional[dict] = None, *, settings: Any = None,
                    caller: Any = None):
    """(factory, keyword arguments) for ``backend`` with ``options``, checked now.

    ``backend`` is a name, a Kubeflow Fairing backend object (``KubernetesBackend()``...)
    or None: the ``backend`` setting (``FAIRING_BACKEND``, ``[tool.fairing]``), else 'local'.
    Settings fill the options not given (an option given as None is not given: Kubeflow
    Fairing code passes ``docker_registry=None``); with ``builder=`` given, the builder's
    settings (registry, base image...) are left to that builder. ``caller``: (what, names)
    of the call the options were given to, whose own parameters are valid and suggested.
    """
    from .._registry import make
    from ..compat import backend_spec
    from ..settings import resolve

    name, legacy = backend_spec(backend)
    settings = settings if settings is not None else resolve()
    name = name or settings.backend or "local"
    given = {**legacy, **(options or {})}
    exclude = set(_OWN_SETTINGS.get(name, ()))
    if given.get("builder") is not None:
        exclude.update(_BUILDER_SETTINGS)
    if given.get("deployer") is not None and not isinstance(given["deployer"], str):
        exclude.update(("cpu", "memory", "gpus"))  # a deployer object has its own
    factory, kwargs, _run = make("backend", BACKENDS, name, given, settings=None, caller=caller)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs = {**settings.options_for(factory, exclude=exclude), **kwargs}
    return factory, kwargs


class BackendChoice:
    """A backend chosen and its options checked now, made when first needed (with the
    settings of that moment, and the builder or deployer the caller gives then)."""

    def __init__(self, backend: Any, options: Optional[dict] = None, *, caller: Any = None, builder: Any = None,
                 deployer: Any = None) -> None:
        self.backend = backend
        self.options = {k: v for k, v in (options or {}).items() if v is not None}  # None: not given
        if isinstance(backend, Backend):
            if self.options:
                from ..errors import ConfigurationError

                raise ConfigurationError(
                    f"Options {sorted(self.options)} were given with a Backend object ({backend.name}), which is "
                    "already made: pass them to the function that makes it (e.g. kubernetes_backend(...)), or give "
                    "the backend by name."
                )
            self.factory = None
        else:
            self.factory, _kwargs = backend_factory(backend, self.options, caller=caller)  # checks now
            check_parts(self.factory, builder, deployer)

    def make(self, **parts: Any) -> Backend:
        """The backend; ``parts`` (``builder=``, ``deployer=``) replace its own (a cluster
        backend then does not choose a builder at all, so it needs no registry or base image)."""
        if self.factory is None:
            builder, deployer = parts.get("builder"), parts.get("deployer")
            backend = self.backend
            if builder is not None and getattr(backend.builder, "unwarmed", None) is builder:
                builder = backend.builder  # the warm builder made around it (warm=True)
            if builder is not None or deployer is not None:
                backend = replace(backend, builder=builder or backend.builder, deployer=deployer or backend.deployer)
            return replace(backend, builder=with_settings(backend.builder), deployer=with_settings(backend.deployer),
                           serving=with_settings(backend.serving))
        from .._registry import accepted_options, call

        accepted = accepted_options(self.factory) or frozenset()
        check_parts(self.factory, parts.get("builder"), parts.get("deployer"))
        own = getattr(self.factory, "__name__", "").replace("_backend", "")
        given = {k: v for k, v in parts.items() if v is not None and k in accepted and v != own}
        factory, kwargs = backend_factory(self.backend, {**self.options, **given})
        backend = call(factory, kwargs, f"the {getattr(factory, '__name__', 'backend')}")
        # the builder too: a ClusterBuilder made without a context builds where the job runs
        return replace(backend, builder=with_settings(backend.builder), deployer=with_settings(backend.deployer),
                       serving=with_settings(backend.serving))


def check_parts(factory: Any, builder: Any, deployer: Any) -> None:
    """Refuse now a ``builder=``/``deployer=`` given by a name that ``factory`` (a backend)
    cannot make: unknown (naming the closest), or not one of that backend's kind."""
    from .._names import BUILDERS, CLUSTER_BACKENDS
    from .._options import load
    from ..errors import ConfigurationError

    name = getattr(factory, "__name__", "").replace("_backend", "")
    cluster = name in CLUSTER_BACKENDS
    for kind, value, table in (("builder", builder, BUILDERS), ("deployer", deployer, None)):
        method = "build" if kind == "builder" else "deploy"
        if value is not None and not isinstance(value, str) and not callable(getattr(value, method, None)):
            raise ConfigurationError(
                f"{kind}= takes a {kind} (an object with .{method}()) or a name, got {type(value).__name__} {value!r}.")
        if not isinstance(value, str):
            continue
        if kind == "deployer" and cluster:
            from .kubernetes import job_deployer_class

            job_deployer_class(value)
            continue
        if kind == "builder" and cluster:
            load(table, value, "builder")
            continue
        if value == name:  # the backend's own, by name: what it uses anyway
            continue
        raise ConfigurationError(
            f"{kind}={value!r} cannot be given by name to the {name} backend, which has its own {kind}; "
            + ("workloads by name ('job', 'tfjob', 'pytorchjob', 'trainjob') run on a cluster backend: give "
               "backend='kubernetes'." if kind == "deployer" else "builders by name go with a cluster backend "
               "(backend='kubernetes'); or pass a builder object."))


def with_settings(part: Any, settings: Any = None) -> Any:
    """``part`` (a deployer, or a builder that runs on a cluster) with the options it left
    unset filled from the settings [:func:`fairing.settings.resolve` now]: the insecure
    registries, the context, the grace times, and the ``queue`` of a job deployer (one that
    takes a Kueue queue); a copy, or ``part`` itself when nothing is
    filled. Stages never read settings; the facade passes them down through here."""
    unset = [name for name in ("insecure_hosts", "unschedulable_grace", "scale_up_timeout")
             if hasattr(part, name) and getattr(part, name) is None]
    kube_options = getattr(part, "_kube_options", None)  # a Kubernetes deployer that has not connected yet
    no_context = (isinstance(kube_options, dict) and getattr(part, "_kube", True) is None
                  and kube_options.get("context") is None)
    fill_queue = bool(getattr(part, "queueable", False)) and getattr(part, "queue", "") is None
    if not unset and not no_context and not fill_queue:
        return part
    import copy

    from ..settings import resolve

    settings = settings if settings is not None else resolve()
    new = copy.copy(part)
    for name in unset:
        value = tuple(settings.insecure_registries) if name == "insecure_hosts" else getattr(settings, name)
        setattr(new, name, value)
    if no_context and settings.context:
        new._kube_options = {**kube_options, "context": settings.context}
    if fill_queue and settings.queue:
        new.queue = settings.queue
    return new


def get_backend(backend: Any = None, *, builder: Any = None, deployer: Any = None, **options: Any) -> Backend:
    """The backend named ``backend`` made with ``options``, or ``backend`` itself if it is one.

    None: the ``backend`` setting, else 'local' (see :mod:`fairing.settings`). ``builder``
    and ``deployer`` replace the backend's own (a cluster backend then does not choose a
    builder at all, so it needs no registry or base image of its own).
    """
    return BackendChoice(backend, options).make(builder=builder, deployer=deployer)


def __getattr__(name: str) -> Any:
    # Kubeflow Fairing's backend classes: fairing.backends.KubernetesBackend()...
    from .. import compat

    if name.endswith("Backend") and hasattr(compat, name):
        return getattr(compat, name)
    raise AttributeError(f"module 'fairing.backends' has no attribute {name!r}")
