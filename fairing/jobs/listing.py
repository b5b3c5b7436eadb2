"""Listing the jobs and endpoints fairing started: this machine's records and the cluster's workloads."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from .._names import CLUSTER_BACKENDS as _CLUSTER_BACKENDS
from ..errors import ConfigurationError, FairingError
from ..kube.labels import MANAGED_BY, PAYLOAD_LABEL, SOURCE_ANNOTATION, USER_LABEL, VERSION_LABEL
from .origin import JobOrigin
from .records import BadRecord, forget, scan

__all__ = ["JobInfo", "jobs"]

MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


@dataclass(frozen=True)
class JobInfo:
    """One job or endpoint fairing started, as :func:`jobs` lists it."""

    name: str
    backend: str
    kind: str              # 'local', 'Job', 'TFJob', 'PyTorchJob', 'TrainJob', 'Endpoint', 'InferenceService'
    phase: str             # 'Pending', 'Queued' (Kueue holds it), 'Running', 'Succeeded', 'Failed';
                           # 'Unknown': its cluster did not answer;
                           # 'Invalid': its record cannot be trusted (``problem`` says why)
    created: float         # seconds since the epoch
    image: str = ""
    namespace: str = ""
    exit_code: Optional[int] = None
    origin: Optional[JobOrigin] = None
    labels: dict = field(default_factory=dict)
    url: str = ""          # an endpoint's address
    problem: str = ""      # why its record cannot be trusted (phase 'Invalid'): `fairing delete NAME` removes it
    queue: str = ""        # the Kueue LocalQueue it was sent to
    message: str = ""      # phase 'Queued': where and why Kueue holds it (its Workload's condition)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def is_endpoint(self) -> bool:
        """A prediction endpoint (local, a Deployment, or a KServe InferenceService)."""
        return self.kind == "Endpoint" or (self.kind in workload_handles()
                                           and workload_handles()[self.kind].WORKLOAD.endpoint)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["age"] = round(self.age, 1)
        return data


def _local_info(record: dict) -> JobInfo:
    from ..deployers.local import recorded_status

    local = record["local"]
    status = recorded_status(Path(local["job_dir"]), local["pid"], local.get("started"))
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


def workload_handles() -> dict[str, Any]:
    """The handle classes of the cluster workloads fairing starts, by recorded kind
    (:data:`fairing._names.WORKLOAD_HANDLES`); each declares its ``WORKLOAD``."""
    from .._names import WORKLOAD_HANDLES
    from .._options import load

    return {kind: load(WORKLOAD_HANDLES, kind, "workload kind") for kind in WORKLOAD_HANDLES}


def _workload_phase(kind: str, obj: dict) -> tuple[str, Optional[int]]:
    """(phase, exit code) of a listed object of the recorded ``kind`` (see :func:`fairing.kube.workloads.listed_phase`)."""
    from ..kube.workloads import listed_phase

    return listed_phase(workload_handles()[kind].WORKLOAD, obj)


def _first_image(spec: dict) -> str:
    if (spec.get("trainer") or {}).get("image"):  # a TrainJob
        return spec["trainer"]["image"]
    if (spec.get("trialTemplate") or {}).get("trialSpec"):  # a Katib Experiment: its trials' Job
        spec = spec["trialTemplate"]["trialSpec"].get("spec") or {}
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
    handle_class = workload_handles()[kind]
    url = ""
    if handle_class.WORKLOAD.endpoint:
        service, port = handle_class.service_for(meta.get("name", ""))
        url = f"http://{service}.{namespace}.svc:{port}"
    from ..kube.kueue import QUEUE_LABEL

    return JobInfo(meta.get("name", ""), "kubernetes", kind, phase, _timestamp(meta.get("creationTimestamp")),
                   _first_image(obj.get("spec") or {}), namespace, code, origin, dict(labels), url,
                   queue=labels.get(QUEUE_LABEL, ""))


_LIST_TIMEOUT = 15  # seconds: a cluster that does not answer must not hang `fairing list`


def _cluster_jobs(kube: Any, namespace: str) -> list[JobInfo]:
    from ..kube import raise_for_api_error
    from ..kube.kueue import queue_states
    from ..kube.workloads import list_objects

    api = kube.k8s.client.ApiException
    handles = workload_handles()
    listed_kinds = {cls.WORKLOAD.kind for cls in handles.values()}
    found: list[JobInfo] = []
    for kind, handle_class in handles.items():
        workload = handle_class.WORKLOAD
        try:
            items = list_objects(kube, workload, namespace, MANAGED_SELECTOR, _LIST_TIMEOUT)
        except api as exc:
            if exc.status == 404 and workload.custom:
                continue  # no such operator in this cluster: no such jobs
            if exc.status == 403 and workload.custom:
                continue  # an add-on kind this identity may not read (Katib's Experiments for kubeflow-edit)
            raise_for_api_error(exc, action=f"list fairing's {kind}s", kind=workload.kind, namespace=namespace)
        held = queue_states(kube, namespace, items)  # one listing of Kueue's Workloads, when any is held
        for item in items:
            owners = (item.get("metadata") or {}).get("ownerReferences") or []
            if any(owner.get("kind") in listed_kinds for owner in owners):
                continue  # made by one of ours (KServe's predictor Deployment): listed as its owner
            info = _kube_info(kind, item, namespace)
            state = held.get((item.get("metadata") or {}).get("uid"))
            if state is not None and not info.done:
                info = replace(info, phase="Queued", message=state.describe())
            found.append(info)
    return found


def _kube(namespace: Optional[str], kubeconfig: Optional[str], context: Optional[str]):
    """A client for the cluster; ``context`` [the ``context`` setting, else the kubeconfig's]."""
    from ..kube import KubeClient

    if context is None:
        from ..settings import resolve

        context = resolve().context
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
    records, bad = scan()
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
    for problem in bad:  # never hidden, never acted on: listed by name so that it can be deleted
        if ("", problem.name) not in found:
            found[("", problem.name)] = _bad_info(problem)
    return sorted(found.values(), key=lambda info: info.created)


def _bad_info(problem: BadRecord) -> JobInfo:
    try:
        created = problem.path.lstat().st_mtime
    except OSError:
        created = 0.0
    return JobInfo(problem.name, "?", "?", "Invalid", created, problem=problem.reason)
