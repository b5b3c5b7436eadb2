"""What the Kubernetes deployers share: the pod template, and the handle of a running workload.

The handle keeps two watches open in background threads — one on the workload object
(Job, TFJob, PyTorchJob), one on its pods — and resumes each from its last
resourceVersion when the server closes it (re-listing after ``410 Gone``). ``wait()``
sleeps on a condition those watches signal: there is no polling loop. Logs of every
replica stream as soon as its container starts (the previous container too, after a
restart) and are kept in order per replica, prefixed ``[worker-1]``.

Results travel through the termination message (``/dev/termination-log``, at most
4096 bytes per container) and, for larger ones, through the last line of the result
replica's log (``FAIRING_RESULT_LOG=1``); the limit then is the log kept by the
kubelet (10 MiB by default, per container).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from typing import Any, Iterator, Optional

from ..errors import DeployError, ImagePullError, JobFailedError, JobTimeoutError, UnschedulableError
from ..events import EventCallback, LogLine, emitter
from ..handle import JobStatus, LogBuffer
from ..kube import KubeClient, raise_for_api_error
from ..results import outcome
from ..runtime.result import PREFIX, decode
from .mutators import Mutator, apply, image_pull_secrets

__all__ = ["KubeDeployerBase", "KubeHandle", "PodHandle", "JOB_LABEL"]

JOB_LABEL = "fairing.dev/job"
MANAGED_BY = {"app.kubernetes.io/managed-by": "fairing"}
_TAIL = 40
_WATCH_SECONDS = 60


def _age(timestamp: Optional[str]) -> float:
    """Seconds since an API timestamp (0 when absent or unreadable)."""
    if not timestamp:
        return 0.0
    try:
        from datetime import datetime

        return time.time() - datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _image_name(image: Any) -> str:
    text = str(image)
    if not text or any(c.isspace() for c in text):
        raise DeployError(f"The image reference {text!r} is not valid; pass the ImageRef a builder returned.")
    return text


class KubeDeployerBase:
    """Options shared by the Job, TFJob and PyTorchJob deployers.

    ``namespace`` defaults to the kubeconfig context's (or the pod's own in a cluster);
    ``kube`` is a :class:`fairing.kube.KubeClient` to use instead of reading kubeconfig.
    ``mutators`` customise every pod (see :mod:`fairing.deployers.mutators`).
    ``ttl_seconds_after_finished`` lets the cluster remove finished workloads;
    ``active_deadline_seconds`` and ``backoff_limit`` (default 0: no retries) bound them.
    ``pull_credentials`` finds credentials for the image's registry (a provider as in
    :mod:`fairing.images.auth`; default: the ones ``docker login`` stored, as the builders
    use); when there are some, an image pull secret ``fairing-pull-<registry>`` is created
    or updated in the namespace and referenced from the pods. ``False`` turns this off.
    """

    container_name = "fairing-job"

    def __init__(self, *, namespace: Optional[str] = None, kube: Optional[KubeClient] = None,
                 kubeconfig: Optional[str] = None, context: Optional[str] = None, mutators=(),
                 labels: Optional[dict] = None, annotations: Optional[dict] = None,
                 ttl_seconds_after_finished: Optional[int] = None, active_deadline_seconds: Optional[int] = None,
                 backoff_limit: int = 0, name_prefix: str = "fairing", pull_credentials: Any = None) -> None:
        self._kube = kube
        self._kube_options = {"kubeconfig": kubeconfig, "context": context, "namespace": namespace}
        self.mutators: list[Mutator] = list(mutators)
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.active_deadline_seconds = active_deadline_seconds
        self.backoff_limit = backoff_limit
        self.name_prefix = name_prefix
        self.pull_credentials = pull_credentials

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            self._kube = KubeClient(**self._kube_options)
        return self._kube

    def new_name(self) -> str:
        return f"{self.name_prefix}-{time.strftime('%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"

    def pull_secret(self, image: Any) -> Optional[str]:
        """Create or update the image pull secret for ``image``'s registry; its name, or None."""
        if self.pull_credentials is False:
            return None
        from ..images import ImageRef

        host = ImageRef.parse(str(image)).registry
        provider = self.pull_credentials
        if provider is None:
            from ..images.auth import DockerConfigCredentials

            provider = DockerConfigCredentials()
        credential = provider(host)
        if credential is None:
            return None
        auth = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
        config = json.dumps({"auths": {host: {"auth": auth}}})
        name = "fairing-pull-" + re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")[:40]
        body = {"metadata": {"name": name, "labels": dict(MANAGED_BY)}, "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
        kube = self.kube
        try:
            try:
                kube.core.create_namespaced_secret(kube.namespace, body)
            except kube.k8s.client.ApiException as exc:
                if exc.status != 409:
                    raise
                kube.core.replace_namespaced_secret(name, kube.namespace, body)
        except kube.k8s.client.ApiException as exc:
            raise_for_api_error(exc, action=f"write the image pull secret {name}", kind="Secret",
                                namespace=kube.namespace)
        return name

    def pod_template(self, image: Any, name: str, *, extra_mutators=()) -> dict:
        container = {
            "name": self.container_name,
            "image": _image_name(image),
            "env": [{"name": "FAIRING_RESULT_FILE", "value": "/dev/termination-log"},
                    {"name": "FAIRING_RESULT_LOG", "value": "1"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
        spec = apply({"containers": [container], "restartPolicy": "Never"}, [*self.mutators, *extra_mutators])
        secret = self.pull_secret(image)
        if secret:
            spec = image_pull_secrets(secret)(spec)
        return {
            "metadata": {
                "labels": {**MANAGED_BY, **self.labels, JOB_LABEL: name},
                # A sidecar would keep the pod running after the job ends.
                "annotations": {**self.annotations, "sidecar.istio.io/inject": "false"},
            },
            "spec": spec,
        }

    def metadata(self, name: str) -> dict:
        return {"name": name, "labels": {**MANAGED_BY, **self.labels, JOB_LABEL: name},
                "annotations": dict(self.annotations)}


class KubeHandle:
    """A workload on a cluster. Subclasses say how to create, read, judge and delete it.

    ``unschedulable_grace``: seconds a pod may stay unschedulable (an unbound claim, a
    node being added) before :class:`UnschedulableError` is raised.
    """

    kind = "Job"
    unschedulable_grace = 20.0

    def __init__(self, kube: KubeClient, name: str, namespace: str, *, on_event: Optional[EventCallback]) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self._emit = emitter(on_event)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._obj: Optional[dict] = None
        self._obj_gone = False
        self._pods: dict[str, dict] = {}
        self._log = LogBuffer()
        self._streams: dict[str, threading.Thread] = {}
        self._watch_error: Optional[BaseException] = None
        self._deleted = False

    # -- what subclasses provide -------------------------------------------------------

    def _list_objects(self, **kwargs):
        raise NotImplementedError

    def _phase(self, obj: dict) -> Optional[str]:
        """'Succeeded' or 'Failed' once the workload has ended, else None."""
        raise NotImplementedError

    def _delete_object(self) -> None:
        raise NotImplementedError

    def replica(self, pod: dict) -> str:
        """The log prefix of a pod: '' for a lone pod, 'worker-1' for a replica."""
        return ""

    def _is_result_pod(self, pod: dict) -> bool:
        return True

    # -- watches -------------------------------------------------------------------------

    def start(self) -> "KubeHandle":
        selector = f"{JOB_LABEL}={self.name}"
        threading.Thread(target=self._watch_loop, args=(self._list_objects, {"field_selector": f"metadata.name={self.name}"}, self._on_object),
                         name=f"fairing-watch-{self.name}", daemon=True).start()
        threading.Thread(target=self._watch_loop, args=(self.kube.core.list_namespaced_pod, {"label_selector": selector}, self._on_pod),
                         name=f"fairing-pods-{self.name}", daemon=True).start()
        return self

    def _watch_loop(self, list_fn, selector: dict, on_event) -> None:
        k8s = self.kube.k8s
        resource_version = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = self.kube.to_dict(list_fn(namespace=self.namespace, **selector))
                    for item in listing.get("items", []):
                        on_event("ADDED", item)
                    resource_version = listing["metadata"]["resourceVersion"]
                watch = k8s.watch.Watch()
                for event in watch.stream(list_fn, namespace=self.namespace, resource_version=resource_version,
                                          timeout_seconds=_WATCH_SECONDS, allow_watch_bookmarks=True, **selector):
                    if self._stop.is_set():
                        watch.stop()
                        break
                    obj = self.kube.to_dict(event["object"])
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            resource_version = None
                            break
                        continue
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
                failures = 0
            except Exception as exc:  # expired watch (410): re-list; dropped connection: retry, then report
                if getattr(exc, "status", None) == 410:
                    resource_version = None
                    continue
                failures += 1
                if failures > 5:
                    with self._cond:
                        self._watch_error = exc
                        self._cond.notify_all()
                    return
                self._stop.wait(min(2 ** failures, 10))

    def _on_object(self, kind: str, obj: dict) -> None:
        with self._cond:
            if kind == "DELETED":
                self._obj_gone = True
            else:
                self._obj = obj
            self._cond.notify_all()

    def _on_pod(self, kind: str, pod: dict) -> None:
        name = pod["metadata"]["name"]
        with self._cond:
            if kind == "DELETED":
                self._pods.pop(name, None)
            else:
                self._pods[name] = pod
            self._cond.notify_all()
        if kind != "DELETED":
            self._maybe_stream(pod)

    # -- logs ----------------------------------------------------------------------------

    def _maybe_stream(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        statuses = pod.get("status", {}).get("containerStatuses") or []
        started = any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}) for s in statuses)
        restarts = sum(s.get("restartCount", 0) for s in statuses)
        key = f"{name}#{restarts}"
        if not started or key in self._streams:
            return
        thread = threading.Thread(target=self._stream, args=(name, self.replica(pod), restarts),
                                  name=f"fairing-log-{name}", daemon=True)
        with self._cond:
            if key in self._streams:
                return
            self._streams[key] = thread
        thread.start()

    def _stream(self, pod_name: str, source: str, restarts: int) -> None:
        core = self.kube.core
        try:
            response = core.read_namespaced_pod_log(pod_name, self.namespace, follow=True, _preload_content=False)
            pending = b""
            for chunk in response.stream(4096):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._add_line(source, raw.decode("utf-8", "replace"))
            if pending:
                self._add_line(source, pending.decode("utf-8", "replace"))
        except Exception as exc:  # the pod went away mid-stream: the log ends here
            if not (self._deleted or self._stop.is_set()):
                why = getattr(exc, "body", None) or getattr(exc, "reason", None) or exc
                self._add_line(source, f"[fairing: log stream of {pod_name} ended: {type(exc).__name__}: {why}]")
        finally:
            with self._cond:
                self._cond.notify_all()

    def _add_line(self, source: str, line: str) -> None:
        if line.startswith(PREFIX):
            return  # the result line is for result(), not for people
        self._log.add(line, source)
        self._emit(LogLine(line, source))

    def _streams_done(self) -> bool:
        return all(not t.is_alive() for t in self._streams.values())

    def logs(self, follow: bool = True) -> Iterator[str]:
        return self._log.follow(follow, done=lambda: self._ended() and self._streams_done())

    def _tail(self, source: Optional[str] = None) -> str:
        return self._log.tail(_TAIL, source)

    def _pod_log_tail(self, pod: dict) -> str:
        """The pod's last lines: from the stream when it has them, else read now (the stream
        may not have caught a container that exited at once); the previous container's
        after a restart."""
        buffered = self._tail(self.replica(pod))
        if buffered:
            return buffered
        restarted = any(cs.get("restartCount") for cs in pod.get("status", {}).get("containerStatuses") or [])
        try:
            return self.kube.core.read_namespaced_pod_log(pod["metadata"]["name"], self.namespace,
                                                          tail_lines=_TAIL, previous=restarted)
        except self.kube.k8s.client.ApiException:
            return ""

    # -- status and waiting ----------------------------------------------------------------

    def _pods_terminal(self) -> bool:
        return all(p.get("status", {}).get("phase") in ("Succeeded", "Failed") for p in self._pods.values())

    def _ended(self) -> bool:
        return self._obj is not None and self._phase(self._obj) is not None

    def status(self) -> JobStatus:
        with self._cond:
            obj, pods = self._obj, list(self._pods.values())
        if obj is None:
            return JobStatus("Pending")
        phase = self._phase(obj)
        if phase:
            return JobStatus(phase, self._exit_code())
        running = any(p.get("status", {}).get("phase") == "Running" for p in pods)
        return JobStatus("Running" if running else "Pending")

    def _diagnose(self, pod: dict) -> None:
        """Raise the error that explains a pod that cannot start."""
        name = pod["metadata"]["name"]
        status = pod.get("status", {})
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                if _age(cond.get("lastTransitionTime")) < self.unschedulable_grace:
                    continue  # claims being bound, nodes being added: give the scheduler a moment
                raise UnschedulableError(
                    f"The pod {name} of {self.kind} {self.name} cannot be scheduled: {cond.get('message')}. "
                    "Ask for fewer resources (cpu, memory, GPUs), or add nodes that have them."
                )
        for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ErrImagePull"):
                if reason == "ErrImagePull" and "not found" not in waiting.get("message", "") \
                        and "manifest unknown" not in waiting.get("message", ""):
                    continue  # maybe transient: wait for the back-off verdict
                raise ImagePullError(
                    f"The node cannot pull the image {cs.get('image')} for pod {name} ({reason}): "
                    f"{waiting.get('message', '')}. Check that the image was pushed to a registry the cluster "
                    "can reach, and that an image pull secret is set if the registry needs credentials."
                )
            if reason in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
                raise DeployError(f"The container of pod {name} could not be created ({reason}): "
                                  f"{waiting.get('message', '')}. Check the secrets, config maps and volumes it uses.")
            if reason == "CrashLoopBackOff":
                last = (cs.get("lastState") or {}).get("terminated") or {}
                raise JobFailedError(
                    f"The pod {name} keeps crashing (CrashLoopBackOff, last exit code {last.get('exitCode')}).",
                    job=self.name, exit_code=last.get("exitCode"), logs_tail=self._pod_log_tail(pod),
                )

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._cond:
                while True:
                    if self._watch_error is not None:
                        raise_for_api_error(self._watch_error, action=f"watch {self.kind} {self.name}",
                                            kind=self.kind, namespace=self.namespace)
                    if self._obj_gone:
                        raise DeployError(f"The {self.kind} {self.name} was deleted while fairing waited for it.")
                    if self._ended():
                        break
                    for pod in list(self._pods.values()):
                        self._diagnose(pod)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise JobTimeoutError(
                            f"The {self.kind} {self.name} did not finish within {timeout:g} s (pods: "
                            f"{self._pods_text()}; recent events: {self._events_text()}). It is deleted unless "
                            "cleanup='never'; raise the timeout, or make the job do less.",
                            job=self.name, logs_tail=self._tail(),
                        )
                    # Re-judge the cached state at least every few seconds (grace periods expire
                    # without any event); the watches deliver every change as it happens.
                    self._cond.wait(min(remaining, 5.0) if remaining is not None else 5.0)
                # Replicas may end a little after the workload does (workers after the master):
                # give them, then their log streams, a bounded moment to finish.
                end = time.monotonic() + 30
                while not self._pods_terminal() and time.monotonic() < end:
                    self._cond.wait(1.0)
                end = time.monotonic() + 10
                while not self._streams_done() and time.monotonic() < end:
                    self._cond.wait(0.5)
        except KeyboardInterrupt:
            self.delete()
            raise
        return self.status()

    def _pods_text(self) -> str:
        rows = []
        for pod in self._pods.values():
            states = [next(iter((cs.get("state") or {"unknown": {}}).items())) for cs in
                      pod.get("status", {}).get("containerStatuses") or []]
            detail = ", ".join(f"{k}{'/' + v.get('reason') if v.get('reason') else ''}" for k, v in states)
            rows.append(f"{pod['metadata']['name']} {pod.get('status', {}).get('phase')} {detail}".strip())
        return "; ".join(rows) or "none created"

    def _events_text(self) -> str:
        try:
            events = self.kube.core.list_namespaced_event(self.namespace).items
        except self.kube.k8s.client.ApiException:
            return "(could not list events)"
        mine = [e for e in events if (e.involved_object.name or "").startswith(self.name)]
        return "; ".join(f"{e.reason}: {e.message}" for e in mine[-8:]) or "none"

    # -- results ---------------------------------------------------------------------------

    def _result_container(self) -> tuple[Optional[dict], dict]:
        with self._cond:
            pods = [p for p in self._pods.values() if self._is_result_pod(p)]
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                terminated = (cs.get("state") or {}).get("terminated")
                if terminated:
                    return pod, terminated
        return None, {}

    def _exit_code(self) -> Optional[int]:
        return self._result_container()[1].get("exitCode")

    def result(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        pod, terminated = self._result_container()
        tail = self._pod_log_tail(pod) if pod else self._tail()
        if terminated.get("reason") == "OOMKilled":
            raise JobFailedError(
                f"The {self.kind} {self.name} was OOMKilled: it used more memory than its limit. "
                "Raise the memory limit (resources(memory=...)) or use less memory.",
                job=self.name, exit_code=terminated.get("exitCode"), logs_tail=tail,
            )
        envelope = None
        for text in (terminated.get("message") or "", self._result_from_log(pod)):
            try:
                envelope = decode(text)
                break
            except Exception:  # truncated or absent: try the next channel
                continue
        return outcome(envelope, job=self.name, exit_code=terminated.get("exitCode"), logs_tail=tail)

    def _result_from_log(self, pod: Optional[dict]) -> str:
        if pod is None:
            return ""
        try:
            text = self.kube.core.read_namespaced_pod_log(pod["metadata"]["name"], self.namespace, tail_lines=3)
        except self.kube.k8s.client.ApiException:
            return ""
        return text if PREFIX in text else ""

    # -- cleanup ---------------------------------------------------------------------------

    def delete(self) -> None:
        if self._deleted:
            return
        self._deleted = True
        try:
            self._delete_object()
        except self.kube.k8s.client.ApiException as exc:
            if exc.status != 404:
                raise_for_api_error(exc, action=f"delete {self.kind} {self.name}", kind=self.kind,
                                    namespace=self.namespace)
        # Foreground deletion: the object goes once its pods are gone.
        end = time.monotonic() + 60
        with self._cond:
            while not self._obj_gone and time.monotonic() < end and self._watch_error is None:
                self._cond.wait(1.0)
        self._stop.set()


class PodHandle(KubeHandle):
    """A single bare pod (the in-cluster builder's Kaniko pod), watched like any workload."""

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

    def wait_running(self, deadline: float) -> bool:
        """Block until the pod's container runs (True) or the pod has already ended (False);
        raise the diagnosis if it cannot start, JobTimeoutError at ``deadline`` (monotonic)."""
        with self._cond:
            while True:
                statuses = (self._pods.get(self.name) or {}).get("status", {}).get("containerStatuses") or []
                if any("running" in (s.get("state") or {}) for s in statuses):
                    return True
                if self._ended():
                    return False
                for pod in list(self._pods.values()):
                    self._diagnose(pod)
                if time.monotonic() > deadline:
                    raise JobTimeoutError(f"The pod {self.name} did not start in time: {self._pods_text()}",
                                          job=self.name)
                self._cond.wait(1.0)
