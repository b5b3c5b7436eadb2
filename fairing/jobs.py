"""The jobs fairing started: what they carry, listing them, re-attaching to them, and logs that outlive them.

Every job records who and what started it (:class:`JobOrigin`: fairing's version, the
user, the payload kind and its source). On Kubernetes that goes on the workload and its
pods as labels and annotations; for every job a small *record* is also kept under the
user cache dir (``<cache>/fairing/jobs/<name>/record.json``, next to a local job's log,
result and exit code) so that a later process — another terminal, a restarted kernel —
can find it again::

    fairing.jobs()                      # JobInfo rows: local records, plus the cluster's jobs
    handle = fairing.attach("fairing-1201-213500-ab12c")
    handle.result()                     # the value, or the job's exception re-raised

The record says how to read the result (``result``: the channel and a *reference* to the
result's HMAC key — the Secret ``<job>-result-key`` on Kubernetes, the owner-only key file
in the job directory locally — never the key itself, and never in a label); an attached
handle reads the key from there.

Logs kept with ``keep_logs=True`` are written to ``<cache>/fairing/logs/<name>.log``
before the job is deleted; :func:`saved_log` finds them.

``fairing.jobs`` is this module, and calling it calls :func:`jobs`: importing a submodule
sets the package's attribute of that name, so a plain ``fairing.jobs`` function would be
replaced by the module as soon as anything imported ``fairing.jobs``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import ConfigurationError, FairingError, JobNotFoundError
from .kube.labels import (MANAGED_BY, PAYLOAD_LABEL, SOURCE_ANNOTATION, USER_LABEL,
                          VERSION_LABEL)

__all__ = [
    "JobOrigin", "JobInfo", "jobs", "attach", "delete", "save_logs", "saved_log", "origin_of", "stamped",
    "remember", "forget", "finish", "log_lines", "jobs_dir", "logs_dir",
]

MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
from ._names import CLUSTER_BACKENDS as _CLUSTER_BACKENDS  # noqa: E402
_RECORD = "record.json"


def jobs_dir() -> Path:
    """Where job records (and local jobs' logs, results and exit codes) live."""
    from .environment import current

    return current().jobs_dir


def logs_dir() -> Path:
    """Where logs kept with ``keep_logs=True`` are saved."""
    from .environment import current

    return current().logs_dir


# -- what a job carries ------------------------------------------------------------------


def _label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._")


@dataclass(frozen=True)
class JobOrigin:
    """Who and what started a job. ``payload``: 'function', 'script', 'notebook' or 'serve'."""

    version: str
    user: str
    payload: str
    source: str

    def labels(self) -> dict:
        return {VERSION_LABEL: _label_value(self.version), USER_LABEL: _label_value(self.user),
                PAYLOAD_LABEL: _label_value(self.payload)}

    def annotations(self) -> dict:
        return {SOURCE_ANNOTATION: self.source}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): the uid says enough
        return f"uid-{os.getuid()}"


def origin_of(context: Any, preprocessor: Any = None) -> JobOrigin:
    """The origin of a job running ``context`` (a BuildContext) made by ``preprocessor``:
    the payload kind from the context's payload description, the source from the preprocessor."""
    from . import __version__
    from .runtime import PAYLOAD_FILE

    payload: dict = {}
    data = context.files.get(PAYLOAD_FILE) if context is not None else None
    if isinstance(data, (bytes, Path)):
        try:
            payload = json.loads(data if isinstance(data, bytes) else data.read_bytes())
        except (OSError, ValueError):
            payload = {}
    kind = payload.get("kind", "unknown")
    source = str(payload.get("path", ""))
    notebook = getattr(preprocessor, "notebook", None)
    target = getattr(preprocessor, "target", None)
    if notebook is not None:  # a notebook converted to a script is still a notebook to its user
        kind, source = "notebook", str(notebook)
    elif getattr(preprocessor, "entry_point", None) is not None:
        source = str(preprocessor.entry_point)
    elif target is not None:
        source = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
    return JobOrigin(__version__, _user(), kind, source)


def stamped(deployer: Any, origin: JobOrigin) -> Any:
    """``deployer`` with the origin's labels and annotations added (a copy; a deployer
    that has no labels, such as the local one, is returned as it is)."""
    if not (isinstance(getattr(deployer, "labels", None), dict)
            and isinstance(getattr(deployer, "annotations", None), dict)):
        return deployer
    import copy

    new = copy.copy(deployer)
    new.labels = {**origin.labels(), **deployer.labels}
    new.annotations = {**origin.annotations(), **deployer.annotations}
    return new


# -- records -----------------------------------------------------------------------------


def _record_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigurationError(f"{name!r} is not a job name; `fairing list` shows the names.")
    return jobs_dir() / name / _RECORD


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may name a key file: only yours
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def remember(handle: Any, origin: JobOrigin, *, backend: str, image: Any = None, endpoint: bool = False) -> None:
    """Write the record of a job just started, so that :func:`attach` and :func:`jobs` find it."""
    record: dict = {"name": handle.name, "backend": backend, "created": time.time(), "origin": asdict(origin),
                    "image": "" if image is None or hasattr(image, "context")
                    else str(image), "endpoint": endpoint}
    if hasattr(handle, "attach_info"):  # a local process
        record["local"] = handle.attach_info()
        record["result"] = {"channel": "file", "key_ref": "file:" + str(Path(record["local"]["job_dir"]) / "key")}
    elif hasattr(handle, "namespace") and hasattr(handle, "kube"):
        from .deployers.kubernetes import result_key_secret

        record["kubernetes"] = {"namespace": handle.namespace, "kind": "Endpoint" if endpoint else handle.kind,
                                "plural": getattr(handle, "plural", None),
                                "server": getattr(handle.kube.api_client.configuration, "host", "")}
        record["result"] = {"channel": "termination-message", "key_ref": "secret:" + result_key_secret(handle.name)}
    elif hasattr(getattr(handle, "process", None), "attach_info"):  # a local endpoint
        record["local"] = handle.process.attach_info()
    else:
        return  # the docker backend's containers are not recorded (yet)
    if endpoint:
        record["url"] = handle.url
    _write(_record_path(handle.name), record)
    _forget_on_delete(handle)


def _forget_on_delete(handle: Any) -> Any:
    """Have ``handle`` forget its record when it is deleted (a local job's record goes with its directory)."""
    if hasattr(handle, "on"):
        handle.on("delete", _forget_handle)
    return handle


def _forget_handle(handle: Any) -> None:
    forget(handle.name)


def _read_record(name: str) -> Optional[dict]:
    try:
        return json.loads(_record_path(name).read_text())
    except (OSError, ValueError):
        return None


def _records() -> Iterator[dict]:
    root = jobs_dir()
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        record = _read_record(entry.name) if not entry.name.startswith(".") else None
        if record:
            yield record


def forget(name: str) -> None:
    """Remove a job's record (a local job's directory goes with its ``delete()``)."""
    import shutil

    path = _record_path(name)
    if path.parent.is_dir():
        shutil.rmtree(path.parent, ignore_errors=True)


# -- listing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobInfo:
    """One job or endpoint fairing started, as :func:`jobs` lists it."""

    name: str
    backend: str
    kind: str              # 'local', 'Job', 'TFJob', 'PyTorchJob', 'TrainJob', 'Endpoint'
    phase: str             # 'Pending', 'Running', 'Succeeded', 'Failed'; 'Unknown': its cluster did not answer
    created: float         # seconds since the epoch
    image: str = ""
    namespace: str = ""
    exit_code: Optional[int] = None
    origin: Optional[JobOrigin] = None
    labels: dict = field(default_factory=dict)
    url: str = ""          # an endpoint's address

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["age"] = round(self.age, 1)
        return data


def _local_info(record: dict) -> JobInfo:
    from .deployers.local import recorded_status

    local = record["local"]
    status = recorded_status(Path(local["job_dir"]), int(local["pid"]))
    origin = JobOrigin(**record["origin"]) if record.get("origin") else None
    return JobInfo(record["name"], record["backend"], "Endpoint" if record.get("endpoint") else "local",
                   status.phase, record["created"], record.get("image", ""), "", status.exit_code, origin,
                   url=record.get("url", ""))


def _timestamp(text: Optional[str]) -> float:
    if not text:
        return 0.0
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _workload_phase(kind: str, obj: dict) -> tuple[str, Optional[int]]:
    status = obj.get("status") or {}
    if kind == "Endpoint":
        return ("Running" if (status.get("readyReplicas") or 0) > 0 else "Pending"), None
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True":
            # SuccessCriteriaMet and FailureTarget come first (Kubernetes >= 1.31), while
            # the Job's pods are cleaned up: the outcome is decided then
            if cond.get("type") in ("Complete", "Succeeded", "SuccessCriteriaMet"):
                return "Succeeded", 0
            if cond.get("type") in ("Failed", "FailureTarget"):
                return "Failed", None
    if kind == "Job":
        if status.get("succeeded"):
            return "Succeeded", 0
        if status.get("failed"):
            return "Failed", None
        return ("Running" if status.get("active") else "Pending"), None
    running = any(cond.get("type") == "Running" and cond.get("status") == "True"
                  for cond in status.get("conditions") or [])
    running = running or any(job.get("active") for job in status.get("jobsStatus") or [])  # a TrainJob
    return ("Running" if running else "Pending"), None


def _first_image(spec: dict) -> str:
    if (spec.get("trainer") or {}).get("image"):  # a TrainJob
        return spec["trainer"]["image"]
    templates = [spec.get("template")] if "template" in spec else [
        r.get("template") for key, replicas in spec.items() if key.endswith("ReplicaSpecs")
        for r in (replicas or {}).values()]
    for template in templates:
        for container in ((template or {}).get("spec") or {}).get("containers") or []:
            return container.get("image", "")
    return ""


def _kube_info(kind: str, obj: dict, namespace: str) -> JobInfo:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    phase, code = _workload_phase(kind, obj)
    origin = None
    if VERSION_LABEL in labels:
        origin = JobOrigin(labels.get(VERSION_LABEL, ""), labels.get(USER_LABEL, ""), labels.get(PAYLOAD_LABEL, ""),
                           annotations.get(SOURCE_ANNOTATION, ""))
    url = f"http://{meta.get('name')}.{namespace}.svc:8080" if kind == "Endpoint" else ""
    return JobInfo(meta.get("name", ""), "kubernetes", kind, phase, _timestamp(meta.get("creationTimestamp")),
                   _first_image(obj.get("spec") or {}), namespace, code, origin, dict(labels), url)


def _custom_kinds() -> dict[str, tuple[str, str, str]]:
    """The custom workloads fairing starts: kind -> (API group, version, plural)."""
    from .deployers.training import GROUP, VERSION
    from .deployers.trainjob import PLURAL, TRAINER_API

    group, version = TRAINER_API.split("/")
    return {"TFJob": (GROUP, VERSION, "tfjobs"), "PyTorchJob": (GROUP, VERSION, "pytorchjobs"),
            "TrainJob": (group, version, PLURAL)}


_LIST_TIMEOUT = 15  # seconds: a cluster that does not answer must not hang `fairing list`


def _cluster_jobs(kube: Any, namespace: str) -> list[JobInfo]:
    from .kube import raise_for_api_error

    api = kube.k8s.client.ApiException
    found: list[JobInfo] = []
    try:
        for obj in kube.batch.list_namespaced_job(namespace, label_selector=MANAGED_SELECTOR,
                                                  _request_timeout=_LIST_TIMEOUT).items:
            found.append(_kube_info("Job", kube.to_dict(obj), namespace))
        for obj in kube.apps.list_namespaced_deployment(namespace, label_selector=MANAGED_SELECTOR,
                                                        _request_timeout=_LIST_TIMEOUT).items:
            found.append(_kube_info("Endpoint", kube.to_dict(obj), namespace))
    except api as exc:
        raise_for_api_error(exc, action="list fairing's jobs", kind="Job", namespace=namespace)
    for kind, (group, version, plural) in _custom_kinds().items():
        try:
            listing = kube.custom.list_namespaced_custom_object(group, version, namespace, plural,
                                                               label_selector=MANAGED_SELECTOR,
                                                               _request_timeout=_LIST_TIMEOUT)
        except api as exc:
            if exc.status == 404:  # no such operator in this cluster: no such jobs
                continue
            raise_for_api_error(exc, action=f"list fairing's {kind}s", kind=kind, namespace=namespace)
        found.extend(_kube_info(kind, item, namespace) for item in listing.get("items", []))
    return found


def _kube(namespace: Optional[str], kubeconfig: Optional[str], context: Optional[str]):
    from .kube import KubeClient

    return KubeClient(kubeconfig=kubeconfig, context=context, namespace=namespace)


def jobs(*, backend: Optional[str] = None, namespace: Optional[str] = None, kubeconfig: Optional[str] = None,
         context: Optional[str] = None) -> list[JobInfo]:
    """The jobs and endpoints fairing started, oldest first.

    ``backend=None``: this machine's local jobs, plus — when any cluster job was recorded
    or ``namespace`` is given — the fairing workloads in those namespaces (anyone's: the
    labels name the user). ``backend='local'``: local jobs only; a cluster backend: the
    cluster's (``namespace`` defaults to the kubeconfig context's).
    """
    if backend is not None and backend != "local" and backend not in _CLUSTER_BACKENDS:
        raise ConfigurationError(f"jobs() lists the 'local' backend and the cluster backends "
                                 f"{list(_CLUSTER_BACKENDS)}; got {backend!r}.")
    records = list(_records())
    found: dict[tuple[str, str], JobInfo] = {}
    if backend in (None, "local"):
        for record in records:
            if "local" in record:
                info = _local_info(record)
                found[("", info.name)] = info
    if backend != "local":
        asked = namespace is not None or backend is not None  # else: only the recorded namespaces, if reachable
        namespaces = {r["kubernetes"]["namespace"] for r in records if "kubernetes" in r} if namespace is None else set()
        if asked:
            namespaces.add(namespace or _kube(None, kubeconfig, context).namespace)
        listed = set()
        for ns in sorted(namespaces):
            try:
                infos = _cluster_jobs(_kube(ns, kubeconfig, context), ns)
            except FairingError:
                if asked:
                    raise
                continue  # no cluster configured or reachable now: its jobs show from their records
            listed.add(ns)
            for info in infos:
                found[(ns, info.name)] = info
        for record in records:
            kube_record = record.get("kubernetes")
            if not kube_record or (kube_record["namespace"], record["name"]) in found:
                continue
            if kube_record["namespace"] in listed:  # deleted by someone else: drop its record
                forget(record["name"])
            elif kube_record["namespace"] in namespaces:
                found[(kube_record["namespace"], record["name"])] = JobInfo(
                    record["name"], record["backend"], kube_record["kind"], "Unknown", record["created"],
                    record.get("image", ""), kube_record["namespace"],
                    origin=JobOrigin(**record["origin"]) if record.get("origin") else None, url=record.get("url", ""))
    return sorted(found.values(), key=lambda info: info.created)


# -- attaching ---------------------------------------------------------------------------


def attach(name: str, *, namespace: Optional[str] = None, kubeconfig: Optional[str] = None,
           context: Optional[str] = None, on_event: Any = None) -> Any:
    """A live :class:`~fairing.Handle` for the job ``name``, started by any process.

    A local job is found by its record; a cluster job by its record (for its namespace
    and kind) or, without one, in ``namespace`` (default: the kubeconfig context's).
    Its log is followed from the start (and shown in the cell, in Jupyter, unless another
    ``on_event`` is given); ``result()`` reads the job's result.
    Raises :class:`~fairing.JobNotFoundError` when there is no such job.
    """
    if on_event is None:
        from .notebook.display import default_renderer

        on_event = default_renderer()
    record = _read_record(name)
    if record and "local" in record:
        from .deployers.local import LocalHandle

        handle = LocalHandle.reattach(name=name, on_event=on_event, **record["local"])
        if record.get("endpoint") and record.get("url"):
            from .deployers.serving import LocalEndpointHandle

            port = int(record["url"].rsplit(":", 1)[1])
            return LocalEndpointHandle(handle, port)
        return handle
    kube_record = (record or {}).get("kubernetes") or {}
    ns = namespace or kube_record.get("namespace")
    try:
        kube = _kube(ns, kubeconfig, context)
    except ConfigurationError as exc:
        if record or namespace:
            raise
        raise JobNotFoundError(f"No job named {name!r} on this machine, and no cluster to look in: {exc} "
                               "`fairing list` shows the jobs fairing started.", job=name) from None
    kind = _find_kind(kube, name, kube_record.get("kind"))
    if kind is None:
        if record:
            forget(name)
        where = f"in namespace {kube.namespace!r}"
        raise JobNotFoundError(
            f"No job named {name!r} on this machine or {where}. `fairing list` shows the jobs fairing started; "
            "give --namespace (namespace=...) for a job in another namespace.", job=name)
    return _kube_handle(kube, name, kind, on_event)


def _find_kind(kube: Any, name: str, hint: Optional[str]) -> Optional[str]:
    api = kube.k8s.client.ApiException
    readers = {
        "Job": lambda: kube.batch.read_namespaced_job(name, kube.namespace),
        "Endpoint": lambda: kube.apps.read_namespaced_deployment(name, kube.namespace),
        **{kind: (lambda g=group, v=version, p=plural: kube.custom.get_namespaced_custom_object(g, v, kube.namespace,
                                                                                                 p, name))
           for kind, (group, version, plural) in _custom_kinds().items()},
    }
    order = ([hint] if hint in readers else []) + [k for k in readers if k != hint]
    for kind in order:
        try:
            obj = kube.to_dict(readers[kind]())
        except api as exc:
            if exc.status == 404:
                continue
            from .kube import raise_for_api_error

            raise_for_api_error(exc, action=f"read the {kind} {name}", kind=kind, namespace=kube.namespace)
        if ((obj.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "fairing":
            return kind
    return None


def _kube_handle(kube: Any, name: str, kind: str, on_event: Any) -> Any:
    """A started handle on the workload, once its watches have listed it and its pods."""
    if kind == "Job":
        from .deployers.job import JobHandle

        handle = JobHandle(kube, name, kube.namespace, on_event=on_event)
    elif kind == "Endpoint":
        from .deployers.serving import KubeEndpointHandle

        replicas = kube.apps.read_namespaced_deployment(name, kube.namespace).spec.replicas or 1
        handle = KubeEndpointHandle(kube, name, kube.namespace, on_event=on_event, replicas=replicas)
    elif kind == "TrainJob":
        from .deployers.trainjob import TrainJobHandle

        handle = TrainJobHandle(kube, name, kube.namespace, on_event=on_event)
    else:
        from .deployers.training import TrainingJobHandle

        handle = TrainingJobHandle(kube, name, kube.namespace, on_event=on_event)
        handle.kind, handle.plural = kind, _custom_kinds()[kind][2]
    _forget_on_delete(handle).start().synced()
    return handle


# -- ending ------------------------------------------------------------------------------


def log_lines(handle: Any) -> Iterator[str]:
    """Everything the job printed so far: a local job's log file, or each pod's log from the API."""
    log_file = getattr(handle, "log_file", None) or getattr(getattr(handle, "process", None), "log_file", None)
    if log_file is not None:
        try:
            with open(log_file, encoding="utf-8", errors="replace") as fh:
                yield from (line.rstrip("\n") for line in fh)
        except OSError:
            return
        return
    kube = getattr(handle, "kube", None)
    if kube is None:
        yield from handle.logs(follow=False)
        return
    from .kube.labels import JOB_LABEL
    from .runtime.result import PREFIX

    pods = kube.core.list_namespaced_pod(handle.namespace, label_selector=f"{JOB_LABEL}={handle.name}").items
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        source = handle.replica(kube.to_dict(pod))
        try:
            text = kube.core.read_namespaced_pod_log(pod.metadata.name, handle.namespace)
        except kube.k8s.client.ApiException:
            continue  # not started: nothing to keep
        lines = text.splitlines()
        if len(lines) >= 2 and lines[-1].startswith(PREFIX) and not lines[-2]:
            lines = lines[:-2]  # the result line and the blank line the runtime puts before it
        for line in lines:
            if not line.startswith(PREFIX):
                yield f"[{source}] {line}" if source else line


def save_logs(handle: Any) -> Path:
    """Write the job's log so far to ``<cache>/fairing/logs/<name>.log``; its path."""
    path = logs_dir() / f"{handle.name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w") as fh:
        for line in log_lines(handle):
            fh.write(line + "\n")
    os.replace(tmp, path)
    return path


def saved_log(name: str) -> Optional[Path]:
    """The log kept for ``name`` with ``keep_logs=True``, or None."""
    path = logs_dir() / f"{name}.log"
    return path if path.is_file() else None


def finish(handle: Any, *, keep_logs: bool = False) -> Optional[Path]:
    """Delete the job (saving its log first when ``keep_logs``) and its record; the saved log's path."""
    saved = save_logs(handle) if keep_logs else None
    try:
        handle.delete()
    finally:
        forget(handle.name)
    return saved


def delete(name: str, *, keep_logs: bool = False, namespace: Optional[str] = None,
           kubeconfig: Optional[str] = None, context: Optional[str] = None) -> Optional[Path]:
    """Stop and remove the job ``name`` (see :func:`attach` for how it is found)."""
    return finish(attach(name, namespace=namespace, kubeconfig=kubeconfig, context=context), keep_logs=keep_logs)


class _CallableModule(types.ModuleType):
    def __call__(self, **options: Any) -> list[JobInfo]:
        return jobs(**options)


sys.modules[__name__].__class__ = _CallableModule
