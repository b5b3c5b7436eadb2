"""Kubeflow Fairing 1.0.2's spellings, mapped to today's in one table.

Code written for Kubeflow Fairing keeps running: its parameter names
(``base_docker_image``, ``docker_registry``, ``push``, ``command``, ``worker_count``...),
its backend classes (``KubernetesBackend()``, ``KubeflowGKEBackend()``...) and methods
(``PredictionEndpoint.predict_nparray``, ``TrainJob.submit`` waiting for the job) are
accepted with a :class:`FutureWarning` naming the new spelling. What has no meaning
here is a :class:`~fairing.ConfigurationError` that says so, unless it is given the
value that means what fairing does anyway (then the warning says it can be dropped).

:data:`TABLE` is the whole mapping; ``docs/kubeflow-fairing.md`` shows it as a table
(a test checks that the two agree). :func:`translate` applies it; every part made by
name goes through it (see :func:`fairing._registry.make`).

It stays one module past 450 lines because it is one table and the few functions that
read it: split, the mapping a reader checks against the documentation would be in pieces.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from .errors import ConfigurationError

__all__ = [
    "TABLE", "NAMES", "translate_name", "Rename", "RunOption", "NoEffect", "Unsupported", "ReplicaCount", "translate", "legacy_names",
    "warn_renamed", "backend_spec", "LegacyBackend", "KubernetesBackend", "KubeflowBackend", "GKEBackend",
    "KubeflowGKEBackend", "AWSBackend", "KubeflowAWSBackend", "get_resource_mutator", "LEGACY_TASK_POSITIONAL",
]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _stacklevel() -> int:
    """warn_renamed's stack level of the first frame outside fairing: the user's call."""
    frame = inspect.currentframe()
    level = 0  # this frame; warn_renamed's is level 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    return max(level, 1)


def warn_renamed(message: str) -> None:
    """A FutureWarning pointing at the user's line that used an old spelling."""
    warnings.warn(message, FutureWarning, stacklevel=_stacklevel())


# -- the kinds of rule --------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    """The option is called ``new`` now; ``convert`` maps its value when the form changed."""

    new: str
    convert: Optional[Callable[[Any], Any]] = None

    def describe(self) -> str:
        return f"`{self.new}=`"


@dataclass(frozen=True)
class RunOption:
    """It sets how the job is waited for: ``option`` of ``config.set_options`` / ``run()``."""

    option: str
    convert: Callable[[Any], Any]

    def describe(self) -> str:
        return f"`{self.option}=` of `set_options()` / `run()`"


@dataclass(frozen=True)
class NoEffect:
    """``defaults`` are values that ask for what fairing does anyway; others cannot be had."""

    defaults: tuple
    reason: str

    def describe(self) -> str:
        return f"drop it ({self.reason})"


@dataclass(frozen=True)
class Unsupported:
    """No counterpart here: always a ConfigurationError with ``reason``."""

    reason: str

    def describe(self) -> str:
        return f"error: {self.reason}"


@dataclass(frozen=True)
class ReplicaCount:
    """One replica type's count, gathered into ``replicas={type: n}`` (KF default ``default``)."""

    replica_type: str
    default: int

    def describe(self) -> str:
        return f"`replicas={{'{self.replica_type}': n}}`"


# -- value conversions --------------------------------------------------------------------


def _mutators(value: Any) -> list:
    """Today's mutators take a pod spec dict and return a new one; Kubeflow Fairing's took
    (kube_manager, pod_spec, namespace) and changed a V1PodSpec in place."""
    items = list(value or [])
    for fn in items:
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            continue
        if len(params) == 3:
            raise ConfigurationError(
                f"The pod spec mutator {getattr(fn, '__qualname__', fn)!r} has Kubeflow Fairing's signature "
                "(kube_manager, pod_spec, namespace) and changes a V1PodSpec in place; fairing's mutators take a "
                "pod spec dict and return a new one. Use fairing.deployers.mutators (resources, gpus, env, pvc, "
                "secret_env...) or fairing.compat.get_resource_mutator(cpu=..., memory=...)."
            )
    return items


def _cleanup(value: Any) -> str:
    return "always" if value else "never"


def _quiet(stream_log: Any) -> bool:
    return not stream_log


def _context_store(value: Any) -> Any:
    """Kubeflow Fairing's context sources (GCSContextSource...) uploaded differently."""
    if not callable(getattr(value, "stage", None)):
        raise ConfigurationError(
            f"context_source={type(value).__name__}(...) is a Kubeflow Fairing context source; give "
            "context_store=S3Context(bucket) or GCSContext(bucket) from fairing.builders.context_stores "
            "(or nothing: the context goes to the build pod's stdin)."
        )
    return value


_COMMON_PREPROCESSOR = {
    "path_prefix": NoEffect(("/app/", "/app"), "the code always goes to /app in the image"),
    "output_map": Rename("input_files"),  # {src: dst}: handled by _output_map
}

_KUBE_DEPLOYER = {
    "pod_spec_mutators": Rename("mutators", _mutators),
    "config_file": Rename("kubeconfig"),
    "job_name": Rename("name_prefix"),
    "cleanup": RunOption("cleanup", _cleanup),
    "stream_log": RunOption("quiet", _quiet),
    "runs": NoEffect((1,), "one submit runs one job; call it again for more"),
    "persist_config": NoEffect((True,), "fairing never writes the kubeconfig"),
    "client_configuration": Unsupported("give kubeconfig= and context= instead of a kubernetes.client.Configuration"),
    "deployer_type": Unsupported("choose the deployer by name: 'job', 'tfjob', 'pytorchjob', 'serving'"),
    "output": NoEffect((None,), "the job's output streams to your stdout unless quiet=True"),
}

_BUILDER = {
    "image_name": Rename("repository"),
    "preprocessor": Unsupported("the builder receives the build context itself; choose the preprocessor with "
                                "config.set_preprocessor(...)"),
    "dockerfile_path": Rename("dockerfile"),
}

#: (kind, name) -> {Kubeflow Fairing option: rule}; name '*' applies to every part of the kind.
TABLE: dict[tuple[str, str], dict[str, Any]] = {
    ("preprocessor", "*"): _COMMON_PREPROCESSOR,
    ("preprocessor", "python"): {
        "executable": Rename("entry_point"),
        "command": Rename("entry_point"),  # ['python', 'train.py', *args]: handled by _command
    },
    ("preprocessor", "notebook"): {
        "executable": NoEffect((None,), "the notebook itself is the entry point"),
        "command": NoEffect((["python"], ("python",), None), "the converted notebook runs with the image's python3"),
        "notebook_preprocessor": Unsupported("fairing filters magic commands itself; an nbconvert preprocessor "
                                             "cannot be given"),
        "overwrite": NoEffect((True,), "the converted script is made in memory"),
    },
    ("preprocessor", "full_notebook"): {
        "output_file": NoEffect(("fairing_output_notebook.ipynb",), "the executed notebook is the job's result"),
        "command": NoEffect((None,), "papermill runs the notebook"),
    },
    ("preprocessor", "function"): {
        "function_obj": Rename("target"),
    },
    ("builder", "*"): _BUILDER,
    ("builder", "append"): {
        "push": NoEffect((True,), "the append builder always pushes to the registry"),
    },
    ("builder", "cluster"): {
        "push": NoEffect((True,), "the cluster builder always pushes to the registry"),
        "context_source": Rename("context_store", _context_store),
        "cleanup": NoEffect((True, False), "the build pod and its context are always removed"),
        "pod_spec_mutators": Unsupported("the build pod is not customisable; mutators apply to the job's pods"),
    },
    ("deployer", "*"): _KUBE_DEPLOYER,
    ("deployer", "tfjob"): {
        "chief_count": ReplicaCount("Chief", 0),
        "ps_count": ReplicaCount("PS", 0),
        "worker_count": ReplicaCount("Worker", 1),
    },
    ("deployer", "pytorchjob"): {
        "master_count": ReplicaCount("Master", 1),
        "worker_count": ReplicaCount("Worker", 1),
    },
    ("deployer", "serving"): {
        "serving_class": Unsupported("serve a model class with fairing.PredictionEndpoint(ModelClass, ...)"),
        "service_type": NoEffect(("ClusterIP",), "endpoints are ClusterIP services; predict() reaches them through "
                                                  "the API server"),
    },
    ("backend", "*"): {
        "build_context_source": Unsupported("give builder=ClusterBuilder(..., context_store=S3Context(...) or "
                                            "GCSContext(...)) for in-cluster builds from an object store"),
        "pod_spec_mutators": Rename("mutators", _mutators),
    },
    # TrainJob(...) and PredictionEndpoint(...) keywords
    ("task", "*"): {
        "base_docker_image": Rename("base_image"),
        "docker_registry": Rename("registry"),
        "pod_spec_mutators": Rename("mutators", _mutators),
        "output_map": Rename("input_files"),
        "service_type": NoEffect(("ClusterIP",), "endpoints are ClusterIP services; predict() reaches them through "
                                                  "the API server"),
    },
}

#: (kind, Kubeflow Fairing name) -> the part's name today, or why there is none.
NAMES: dict[tuple[str, str], Any] = {
    ("deployer", "kfserving"): Rename("kserve"),
    ("deployer", "gcp"): Unsupported("AI Platform training is not supported; run on GKE with set_backend('gke', "
                                     "project=...)"),
    ("builder", "podman"): Unsupported("use set_builder('docker', base_url='unix:///run/podman/podman.sock') (the "
                                       "Docker builder speaks to Podman's socket)"),
}


def translate_name(kind: str, name: Any) -> Any:
    """Today's name of the ``kind`` called ``name`` (warns for an old one)."""
    rule = NAMES.get((kind, name)) if isinstance(name, str) else None
    if isinstance(rule, Unsupported):
        raise ConfigurationError(f"The {kind} {name!r} (Kubeflow Fairing) has no counterpart: {rule.reason}.")
    if isinstance(rule, Rename):
        warn_renamed(f"The {kind} {name!r} is Kubeflow Fairing's name; use {rule.new!r}.")
        return rule.new
    return name


#: Kubeflow Fairing's positional parameters of TrainJob / PredictionEndpoint after the first.
LEGACY_TASK_POSITIONAL = ("base_docker_image", "docker_registry", "input_files", "output_map", "backend")


def legacy_names() -> set[str]:
    """Every Kubeflow Fairing option name in the table (for 'did you mean' hints)."""
    return {old for rules in TABLE.values() for old in rules}


def _rules(kind: str, name: str) -> dict:
    return {**TABLE.get((kind, "*"), {}), **TABLE.get((kind, name), {})}


def _output_map(value: Any) -> list[str]:
    """Kubeflow Fairing's ``{local path: path in the image}``: fairing keeps each file at its
    path relative to the base directory, so a destination elsewhere cannot be honoured."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"output_map must be a dict of local path -> path in the image, got {value!r}.")
    files = []
    for src, dst in value.items():
        want = os.path.normpath(str(dst))
        if want.startswith("/app/"):
            want = want[len("/app/"):]
        if want != os.path.normpath(str(src)):
            raise ConfigurationError(
                f"output_map puts {src!r} at {dst!r}, but fairing keeps input files at their own relative path "
                f"(/app/{os.path.normpath(str(src))}). Move the file there locally, or open it in the job by that path."
            )
        files.append(str(src))
    return files


def _command(value: Any) -> tuple[str, list[str]]:
    argv = [str(a) for a in (value or [])]
    if not argv or os.path.basename(argv[0]).split(".")[0] not in ("python", "python3"):
        raise ConfigurationError(
            f"command={value!r} does not run Python: fairing runs a script with the image's python3. Give "
            "command=['python', 'train.py', *args] or entry_point='train.py' (args=[...] for its arguments)."
        )
    if len(argv) < 2:
        raise ConfigurationError("command=['python'] names no script: add it, e.g. command=['python', 'train.py'].")
    return argv[1], argv[2:]


def translate(kind: str, name: str, options: dict) -> tuple[dict, dict]:
    """``options`` in today's spelling, and the run options (``cleanup``, ``quiet``) the old
    spelling asked for. Warns for each old name; raises for what has no meaning here."""
    rules = _rules(kind, name)
    out: dict = {}
    run: dict = {}
    replicas: dict[str, int] = {}
    label = f"{name} {kind}" if name != "*" else kind
    for key, value in options.items():
        rule = rules.get(key)
        if rule is None:
            if not (key == "input_files" and "output_map" in options):
                out[key] = value
            continue
        if isinstance(rule, Unsupported):
            raise ConfigurationError(f"{key}= (Kubeflow Fairing) has no counterpart for the {label}: {rule.reason}.")
        if isinstance(rule, NoEffect):
            if not any(value == d for d in rule.defaults):
                raise ConfigurationError(
                    f"{key}={value!r} (Kubeflow Fairing) cannot be honoured for the {label}: {rule.reason}.")
            warn_renamed(f"{key}= is Kubeflow Fairing's option and has no effect here ({rule.reason}); remove it.")
            continue
        if isinstance(rule, RunOption):
            run[rule.option] = rule.convert(value)
            warn_renamed(f"{key}= is Kubeflow Fairing's spelling; use {rule.option}={run[rule.option]!r} "
                         f"(config.set_options or run()).")
            continue
        if isinstance(rule, ReplicaCount):
            replicas[rule.replica_type] = value
            continue
        assert isinstance(rule, Rename)
        if key == "output_map":
            # {src: dst} becomes more input files, next to those given
            new_value: Any = [*(out.get("input_files") or options.get("input_files") or []), *_output_map(value)]
            out["input_files"] = new_value
            warn_renamed("output_map= is Kubeflow Fairing's spelling; list the files in input_files= instead.")
            continue
        if key == "command" and kind == "preprocessor":
            new_value, args = _command(value)
            if args:
                out["args"] = args
        else:
            new_value = rule.convert(value) if rule.convert else value
        if rule.new in out or rule.new in options:
            raise ConfigurationError(f"Give {rule.new}= or {key}= (Kubeflow Fairing's spelling), not both.")
        out[rule.new] = new_value
        warn_renamed(f"{key}= is Kubeflow Fairing's spelling; use {rule.new}= instead.")
    if replicas:
        if "replicas" in out:
            raise ConfigurationError("Give replicas={...} or the *_count options (Kubeflow Fairing's), not both.")
        counts = {r.replica_type: r.default for r in rules.values() if isinstance(r, ReplicaCount)}
        counts.update(replicas)
        for rtype, count in counts.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ConfigurationError(f"The {rtype} count must be a whole number >= 0, got {count!r}.")
        out["replicas"] = {rtype: n for rtype, n in counts.items() if n}
        spelled = ", ".join(f"{r.lower()}_count" for r in replicas)
        warn_renamed(f"{spelled}= are Kubeflow Fairing's spelling; use replicas={out['replicas']!r} instead.")
    return out, run


# -- backend classes ----------------------------------------------------------------------


class LegacyBackend:
    """Kubeflow Fairing's backend objects, as (backend name, options) for today's backends."""

    backend_name: ClassVar[str] = "kubernetes"

    def __init__(self, namespace: Optional[str] = None, build_context_source: Any = None, **options: Any) -> None:
        given = {"namespace": namespace, "build_context_source": build_context_source, **options}
        given = {k: v for k, v in given.items() if v is not None}
        from ._options import check_options
        from ._names import BACKENDS
        from ._options import load

        translated, _run = translate("backend", self.backend_name, given)
        check_options(load(BACKENDS, self.backend_name, "backend"), translated,
                      f"{type(self).__name__} (the {self.backend_name} backend)")
        self.options = translated
        spelled = ", ".join(f"{k}={v!r}" for k, v in translated.items())
        warn_renamed(f"{type(self).__name__}() is Kubeflow Fairing's; use backend={self.backend_name!r}"
                     f"{', ' + spelled if spelled else ''} instead.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(-> backend={self.backend_name!r}, {self.options!r})"


class KubernetesBackend(LegacyBackend):
    backend_name = "kubernetes"


class KubeflowBackend(LegacyBackend):
    backend_name = "kubeflow"


class GKEBackend(LegacyBackend):
    backend_name = "gke"


class KubeflowGKEBackend(GKEBackend):
    pass


class AWSBackend(LegacyBackend):
    backend_name = "aws"


class KubeflowAWSBackend(AWSBackend):
    pass


def _no_counterpart(cls_name: str, hint: str):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError(f"{cls_name} (Kubeflow Fairing) has no counterpart here: {hint}.")

    return type(cls_name, (), {"__init__": __init__, "__doc__": f"Not available: {hint}."})


AzureBackend = _no_counterpart("AzureBackend", "use backend='kubernetes' with registry= your ACR")
KubeflowAzureBackend = _no_counterpart("KubeflowAzureBackend", "use backend='kubeflow' with registry= your ACR")
IBMCloudBackend = _no_counterpart("IBMCloudBackend", "use backend='kubernetes' with registry= your ICR namespace")
GCPManagedBackend = _no_counterpart("GCPManagedBackend", "AI Platform training is not supported; use "
                                                         "backend='gke'")


def backend_spec(backend: Any) -> tuple[Any, dict]:
    """(name or Backend, options) for ``backend``: a name, a Backend, or a Kubeflow Fairing backend object."""
    if isinstance(backend, LegacyBackend):
        return backend.backend_name, dict(backend.options)
    return backend, {}


def get_resource_mutator(cpu: Any = None, memory: Any = None, gpu: Optional[int] = None,
                         gpu_vendor: str = "nvidia") -> Callable[[dict], dict]:
    """Kubeflow Fairing's ``kubernetes.utils.get_resource_mutator``, as today's mutator
    (requests = limits, as it set them). Memory in GB as a number, or a quantity string."""
    from .deployers import mutators

    warn_renamed("get_resource_mutator() is Kubeflow Fairing's; use fairing.deployers.mutators.resources(cpu=..., "
                 "memory=...) and mutators.gpus(n) instead.")
    mem = f"{memory}Gi" if isinstance(memory, (int, float)) else memory
    cpu_q = str(cpu) if cpu is not None else None
    chain = [mutators.resources(cpu=cpu_q, memory=mem, cpu_limit=cpu_q, memory_limit=mem)]
    if gpu:
        chain.append(mutators.gpus(int(gpu), resource=f"{gpu_vendor}.com/gpu"))

    def mutate(spec: dict) -> dict:
        return mutators.apply(spec, chain)

    return mutate
