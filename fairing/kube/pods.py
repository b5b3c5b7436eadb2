"""A bare pod run to completion and watched like any workload (the in-cluster builder's Kaniko pod)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import JobTimeoutError
from ..events import EventCallback
from .client import raise_for_api_error
from .labels import JOB_LABEL, MANAGED_BY
from .watch import Workload

__all__ = ["Pod", "run_pod", "pod_manifest"]


class Pod(Workload):
    """One pod, named and selected by its own name."""

    kind = "Pod"

    def _list_objects(self, **kwargs):
        return self.kube.core.list_namespaced_pod(**kwargs)

    def _phase(self, obj: dict) -> Optional[str]:
        phase = (obj.get("status") or {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    def _delete_object(self) -> None:
        self.kube.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)

    def replica(self, pod: dict) -> str:
        return pod["metadata"]["name"]

    def _running(self) -> bool:
        statuses = (self._pods.get(self.name) or {}).get("status", {}).get("containerStatuses") or []
        return any("running" in (s.get("state") or {}) for s in statuses) or self._ended()

    def wait_running(self, timeout: float) -> bool:
        """Block until the pod's container runs (True) or the pod has already ended (False);
        raise the diagnosis if it cannot start, JobTimeoutError after ``timeout`` seconds."""
        self.wait_until(self._running, timeout=timeout, tick=1.0, on_timeout=lambda: JobTimeoutError(
            f"The pod {self.name} did not start in time: {self._pods_text()}", job=self.name))
        return not self._ended()

    def send_stdin(self, path: Path, *, container: str, timeout: float) -> None:
        """Wait until ``container`` runs (raising what keeps it from starting), then write the
        file at ``path`` to its stdin and close it. A pod that already ended gets nothing:
        its log says why."""
        from kubernetes.stream import stream

        if not self.wait_running(timeout):
            return
        k8s = self.kube.k8s
        # stream() swaps the request method of the ApiClient it is given while it runs: give it
        # its own, or the log and watch threads' calls would go over the websocket too.
        core = k8s.client.CoreV1Api(k8s.client.ApiClient(self.kube.api_client.configuration))
        ws = stream(core.connect_get_namespaced_pod_attach, self.name, self.namespace, container=container,
                    stdin=True, stdout=False, stderr=False, tty=False, _preload_content=False)
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    ws.write_stdin(chunk)
        finally:
            ws.close()


def pod_manifest(name: str, containers: list, *, volumes: Optional[list] = None) -> dict:
    """A pod that runs ``containers`` once, labelled as fairing's (no sidecar injected)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {**MANAGED_BY, JOB_LABEL: name},
                         "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"restartPolicy": "Never", "containers": containers, "volumes": list(volumes or [])}}


def run_pod(kube: Any, manifest: dict, *, on_event: Optional[EventCallback] = None) -> Pod:
    """Create the pod ``manifest`` describes and start watching it (its logs stream as
    LogLine events). The caller deletes it (``Pod.delete()``)."""
    name = manifest["metadata"]["name"]
    try:
        kube.core.create_namespaced_pod(kube.namespace, manifest)
    except kube.api_errors as exc:
        raise_for_api_error(exc, action=f"create the pod {name}", kind="Pod", namespace=kube.namespace)
    return Pod(kube, name, kube.namespace, on_event=on_event).start()
