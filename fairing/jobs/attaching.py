"""Attaching to a job fairing started, from any process: a live handle found by its record or on the cluster."""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigurationError, JobNotFoundError, MissingDependencyError
from .listing import _kube, workload_handles
from .records import _forget_on_delete, forget, read_record

__all__ = ["attach"]


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
        from ..notebook.display import default_renderer

        on_event = default_renderer()
    record = read_record(name)  # a record that cannot be trusted raises JobRecordError, naming it
    if record and "local" in record:
        from ..deployers.local import LocalHandle

        handle = LocalHandle.reattach(name=name, on_event=on_event, **record["local"])
        if record.get("endpoint") and record.get("url"):
            from ..deployers.serving import LocalEndpointHandle

            port = int(record["url"].rsplit(":", 1)[1])
            return LocalEndpointHandle(handle, port)
        return handle
    kube_record = (record or {}).get("kubernetes") or {}
    ns = namespace or kube_record.get("namespace")
    try:
        kube = _kube(ns, kubeconfig, context)
    except MissingDependencyError:
        if record or namespace:
            raise
        raise JobNotFoundError(f"No job named {name!r} on this machine. `fairing list` shows the jobs fairing "
                               "started here (a cluster's jobs are looked up with the kubernetes extra).",
                               job=name) from None
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
    """The recorded kind of fairing's workload ``name`` in ``kube``'s namespace (``hint``, the
    record's kind, is looked at first), or None."""
    from ..kube import raise_for_api_error
    from ..kube.workloads import read_object

    api = kube.k8s.client.ApiException
    handles = workload_handles()
    order = ([hint] if hint in handles else []) + [k for k in handles if k != hint]
    for kind in order:
        workload = handles[kind].WORKLOAD
        try:
            obj = read_object(kube, workload, name)
        except api as exc:
            if exc.status == 404:
                continue
            raise_for_api_error(exc, action=f"read the {workload.kind} {name}", kind=workload.kind,
                                namespace=kube.namespace)
        if ((obj.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "fairing":
            return kind
    return None


def _kube_handle(kube: Any, name: str, kind: str, on_event: Any) -> Any:
    """A started handle on the workload, once its watches have listed it and its pods."""
    handle = workload_handles()[kind].attach(kube, name, on_event=on_event)
    _forget_on_delete(handle).start().synced()
    return handle
