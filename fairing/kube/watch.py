"""One watcher for a workload on a cluster: the object, its pods, their logs, and waiting.

A :class:`Workload` keeps two watches open in background threads - one on the object
(Job, TFJob, Deployment, a bare Pod...), one on its pods (selected by
:data:`~fairing.kube.labels.JOB_LABEL`) - and resumes each from its last
resourceVersion when the server closes it (re-listing after ``410 Gone``). Every wait
goes through :meth:`Workload.wait_until`, which sleeps on a condition those watches
signal (no polling loop) and raises what :func:`~fairing.kube.diagnose.diagnose` finds
wrong with a pod. While Kueue holds the workload (:mod:`fairing.kube.kueue`), another
thread reads its Workload's conditions every few seconds: the handle reports it queued
(a :class:`~fairing.events.Queued` event, a 'Queued' status) instead of judging pods that
do not exist yet.

A third watch reads the namespace's events about the workload, for every kind in this one
place: a controller's ``FailedCreate`` (Job, JobSet's Jobs, the training operator's
``FailedCreatePod``) means the cluster refuses the pods (a missing service account, an
exceeded ResourceQuota, a LimitRange, Pod Security) and raises
:class:`~fairing.errors.PodsRefusedError` at once instead of waiting for pods that never
come; a node autoscaler's ``TriggeredScaleUp`` / ``NotTriggerScaleUp`` on a pending pod
goes to the diagnosis. An identity that may not read events loses only this early answer.
Logs of every replica stream as soon as its container starts (the previous container too,
after a restart), kept in order per replica.

The module runs past 450 lines because the three watches, the queue reader, their resumption and the one
wait they all signal share one lock and one state: split apart, each piece would need the
others' internals.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator, Optional

from ..errors import DeployError, FairingError, JobFailedError, JobTimeoutError, PodsRefusedError
from ..events import EventCallback, Queued, Stage, emitter
from ..handle import JobStatus, LineSplitter, LogBuffer, publish_lines
from ..runtime.result import PREFIX
from .client import is_status, raise_for_api_error
from .diagnose import NO_SCALE_UP, SCALE_UP, SCALE_UP_TIMEOUT, UNSCHEDULABLE_GRACE, diagnose
from .labels import JOB_LABEL

__all__ = ["Workload", "main_statuses"]

log = logging.getLogger(__name__)

_TAIL = 40
_WATCH_SECONDS = 60
#: The reasons a controller reports a pod it could not create with (batch Job and JobSet's
#: Jobs: FailedCreate; training-operator: FailedCreatePod).
_FAILED_CREATE = ("FailedCreate", "FailedCreatePod")
#: The component cluster-autoscaler's recorder reports as (source.component, reportingComponent).
_AUTOSCALER = "cluster-autoscaler"
#: FailedCreate messages that are a retry, not a refusal (the controller tries again).
_TRANSIENT = ("the object has been modified", "Operation cannot be fulfilled", "already exists",
              "etcdserver", "Timeout", "timed out", "connection refused", "TooManyRequests")
_QUEUE_POLL = 2.0  # seconds between readings of a queued workload's Kueue Workload


def _instant(value: Any) -> float:
    """A timestamp of the API (``...Z`` from a watch, ``...+00:00`` from a model) in seconds."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


#: Seconds after one of the workload's own pods ended during which an exceeded quota is
#: still its own (the quota controller has not counted the pod out yet).
_QUOTA_SETTLE = 60.0  # measured: under load the recount took over 15 s


class Workload:
    """A workload on a cluster. Subclasses say how to list, judge and delete it.

    ``unschedulable_grace``: seconds a pod may stay unschedulable before
    :class:`~fairing.errors.UnschedulableError` is raised; ``scale_up_timeout``: how long,
    once a node autoscaler said it adds a node for the pod (the deployers set both).
    """

    kind = "Job"
    unschedulable_grace = UNSCHEDULABLE_GRACE
    scale_up_timeout = SCALE_UP_TIMEOUT
    _pod_ended_at = float("-inf")

    def __init__(self, kube: Any, name: str, namespace: str, *, on_event: Optional[EventCallback]) -> None:
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
        self._listed: set = set()  # the watches' handlers whose first listing is in
        self._refused: Optional[dict] = None  # the first FailedCreate event that refuses a pod
        self._autoscaler: dict[str, tuple[str, str, str, str]] = {}  # pod -> (time, reason, message, pod uid)
        self._event_versions: dict = {}  # refusal event -> (count, time) seen: a re-list replays, it adds nothing
        self._ours: dict = {}  # involved object uid -> whether it is this workload or one of its children
        self._waiting_node: set = set()  # pods reported as waiting for a new node
        self._queue_state: Any = None  # what Kueue last said while it held the workload (kueue.QueueState)
        self._queue_error: Optional[FairingError] = None  # its queue does not exist: it will never run

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

    def start(self) -> "Workload":
        selector = f"{JOB_LABEL}={self.name}"
        threading.Thread(target=self._watch_loop,
                         args=(self._list_objects, {"field_selector": f"metadata.name={self.name}"}, self._on_object),
                         name=f"fairing-watch-{self.name}", daemon=True).start()
        threading.Thread(target=self._watch_loop,
                         args=(self.kube.core.list_namespaced_pod, {"label_selector": selector}, self._on_pod),
                         name=f"fairing-pods-{self.name}", daemon=True).start()
        threading.Thread(target=self._watch_loop, args=(self.kube.core.list_namespaced_event, {}, self._on_k8s_event),
                         kwargs={"optional": True}, name=f"fairing-events-{self.name}", daemon=True).start()
        threading.Thread(target=self._queue_loop, name=f"fairing-queue-{self.name}", daemon=True).start()
        return self

    def _watch_loop(self, list_fn, selector: dict, on_event, optional: bool = False) -> None:
        """``optional``: a watch the handle works without; a refusal (403) ends it quietly."""
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
                    with self._cond:
                        self._listed.add(on_event)
                        self._cond.notify_all()
                watch = k8s.watch.Watch()
                for event in watch.stream(list_fn, namespace=self.namespace, resource_version=resource_version,
                                          timeout_seconds=_WATCH_SECONDS, allow_watch_bookmarks=True, **selector):
                    if self._stop.is_set():
                        watch.stop()
                        break
                    obj = self.kube.to_dict(event["object"])
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            log.info("watch of %s expired (410 Gone); listing again", self.namespace)
                            resource_version = None
                            break
                        continue
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
                failures = 0
            except Exception as exc:  # expired watch (410): re-list; dropped connection: retry, then report
                if is_status(exc, 410):
                    log.info("watch of %s expired (410 Gone); listing again", self.namespace)
                    resource_version = None
                    continue
                if optional and is_status(exc, 401, 403, 404):
                    return
                failures += 1
                if failures > 5 and optional:
                    return
                log.info("watch of %s lost (%s); reconnecting (attempt %d of 5)", self.namespace,
                         type(exc).__name__, failures)
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

    def _on_k8s_event(self, kind: str, event: dict) -> None:
        if kind == "DELETED":
            return
        involved = event.get("involvedObject") or {}
        subject = involved.get("name") or ""
        if subject != self.name and not subject.startswith(self.name + "-"):
            return
        reason, message = event.get("reason") or "", event.get("message") or ""
        when = str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")
        if reason in _FAILED_CREATE and event.get("type") == "Warning" and involved.get("kind") != "Pod" \
                and not any(t in message for t in _TRANSIENT):
            key = (event.get("metadata") or {}).get("uid") or (involved.get("uid"), reason, message)
            version = (event.get("count"), when)
            if self._event_versions.get(key) == version:
                return  # the same report again (a re-list): nothing new happened
            self._event_versions[key] = version
            # A name is no proof: another workload may share the prefix ("train" and "train-2"),
            # and an event outlives its object (a previous job of the same name).
            if not self._is_ours(involved):
                return
            with self._cond:
                self._refused = {"reason": reason, "message": message, "kind": involved.get("kind") or "",
                                 "name": subject, "at": time.monotonic()}
                self._cond.notify_all()
        elif reason in (SCALE_UP, NO_SCALE_UP) and involved.get("kind") == "Pod" and _AUTOSCALER in (
                (event.get("source") or {}).get("component"), event.get("reportingComponent")):
            # only what the autoscaler reports: anyone who may post events could write the reason
            with self._cond:
                if when >= self._autoscaler.get(subject, ("",))[0]:
                    self._autoscaler[subject] = (when, reason, message, involved.get("uid") or "")
                self._cond.notify_all()

    def _my_uid(self) -> Optional[str]:
        with self._cond:  # the object's watch lists it first; give it a moment
            self._cond.wait_for(lambda: self._obj is not None or self._obj_gone or self._stop.is_set(), timeout=10)
            return ((self._obj or {}).get("metadata") or {}).get("uid")

    def _is_ours(self, involved: dict) -> bool:
        """Whether the object an event is about is this workload (its uid, not only its name)
        or one of the objects its controller made for it (a JobSet's Job, a Deployment's
        ReplicaSet); False when that cannot be told (the wait goes on as before)."""
        uid = involved.get("uid") or ""
        if uid and uid in self._ours:
            return self._ours[uid]
        mine = self._my_uid()
        if not mine:
            return False
        if involved.get("name") == self.name and involved.get("kind") == self.kind:
            verdict = not uid or uid == mine
        else:
            try:
                verdict = self._child_of(involved, mine)
            except Exception:  # may not read it, or it is gone: cannot tell
                return False
        if uid:
            self._ours[uid] = verdict
        return verdict

    def _child_of(self, involved: dict, mine: str) -> bool:
        kube, kind, name = self.kube, involved.get("kind"), involved.get("name")
        if kind == "Job":
            obj = kube.to_dict(kube.batch.read_namespaced_job(name, self.namespace, _request_timeout=10))
        elif kind == "ReplicaSet":
            obj = kube.to_dict(kube.apps.read_namespaced_replica_set(name, self.namespace, _request_timeout=10))
        else:
            return False
        meta = obj.get("metadata") or {}
        if involved.get("uid") and meta.get("uid") != involved["uid"]:
            return False  # the event is about an earlier object of that name
        owners = meta.get("ownerReferences") or []
        if any(o.get("uid") == mine for o in owners):
            return True
        if kind == "Job" and self.kind == "TrainJob":
            # TrainJob -> JobSet (same name) -> Job; the JobSet itself may not be readable
            # (kubeflow-edit has no rule for it), so: its label, and made after this TrainJob.
            created = ((self._obj or {}).get("metadata") or {}).get("creationTimestamp")
            return ((meta.get("labels") or {}).get("jobset.sigs.k8s.io/jobset-name") == self.name
                    and any(o.get("kind") == "JobSet" and o.get("name") == self.name for o in owners)
                    and _instant(meta.get("creationTimestamp")) >= _instant(created))
        if kind == "ReplicaSet":  # an InferenceService -> its Deployment -> this ReplicaSet
            for owner in owners:
                if owner.get("kind") == "Deployment":
                    dep = kube.to_dict(kube.apps.read_namespaced_deployment(owner["name"], self.namespace,
                                                                            _request_timeout=10))
                    if any(o.get("uid") == mine for o in (dep.get("metadata") or {}).get("ownerReferences") or []):
                        return True
        return False

    def _on_pod(self, kind: str, pod: dict) -> None:
        name = pod["metadata"]["name"]
        with self._cond:
            if kind == "DELETED":
                self._pods.pop(name, None)
            else:
                self._pods[name] = pod
            if kind == "DELETED" or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self._pod_ended_at = time.monotonic()  # its share of a quota comes back (see _raise_refusal)
            self._cond.notify_all()
            scheduled = any(c.get("type") == "PodScheduled" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
            got_node = name in self._waiting_node and scheduled
            if got_node:
                self._waiting_node.discard(name)
        if got_node:
            self._emit(Stage("node", "finished", f"pod {name} is on node {(pod.get('spec') or {}).get('nodeName')}"))
        if kind != "DELETED":
            self._maybe_stream(pod)

    def _queue_loop(self) -> None:
        """While Kueue holds the workload (a queue label, suspended): read what its Workload
        says, report each change as a Queued event, and note a queue that does not exist.
        Ends at once for a workload without a queue label."""
        from ..errors import QueueNotFoundError, QueueTooSmallError
        from .kueue import queue_of, suspended, workload_state

        last: Any = None
        held_since = time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                obj = None if self._obj is None else self._obj
                ended = self._obj_gone or (obj is not None and self._phase(obj) is not None)
            if ended:
                return
            if obj is None:
                self._stop.wait(0.5)
                continue
            queue = queue_of(obj)
            if not queue:
                return
            if not suspended(obj):
                if last is not None and not last.admitted:
                    self._emit(Queued("queue", "finished", f"admitted from the LocalQueue {queue} after "
                                      f"{time.monotonic() - held_since:.0f}s", job=self.name, queue=queue))
                with self._cond:
                    self._queue_state = last = None
                self._stop.wait(_QUEUE_POLL)  # Kueue may suspend it again (preempted, evicted)
                continue
            try:
                state = workload_state(self.kube, self.namespace, obj)
            except Exception:  # not readable now (or not allowed): the status says queued, without a reason
                self._stop.wait(_QUEUE_POLL)
                continue
            if state.admitted:  # unsuspended a moment later
                self._stop.wait(0.5)
                continue
            if last is None:
                held_since = time.monotonic()
            if state != last:
                status = "failed" if state.missing or state.too_small else "started" if last is None else "waiting"
                self._emit(Queued("queue", status, state.describe(), job=self.name, queue=queue,
                                  reason=state.reason, message=state.message))
            with self._cond:
                self._queue_state = last = state
                if state.missing:
                    self._queue_error = QueueNotFoundError(
                        f"The {self.kind} {self.name} was sent to the Kueue LocalQueue {queue!r}, and Kueue will "
                        f"never admit it: {state.message}. Create that queue in namespace {self.namespace!r} (or "
                        "ask the cluster's admins), or send the job to an existing one with queue=.",
                        queue=queue, namespace=self.namespace)
                elif state.too_small:
                    self._queue_error = QueueTooSmallError(
                        f"The {self.kind} {self.name} asks more at once than the Kueue LocalQueue {queue!r} ever has, "
                        f"so Kueue would hold it forever: {state.message}. Ask for less at once (cpu=, memory=, gpus=, "
                        "fewer replicas, or a map's parallelism=), send it to a larger queue with queue=, or ask the "
                        "cluster's admins to raise the ClusterQueue's nominalQuota.", queue=queue,
                        namespace=self.namespace)
                self._cond.notify_all()
            if state.missing or state.too_small:
                return
            self._stop.wait(_QUEUE_POLL)

    def queued(self) -> Any:
        """What Kueue said while it held the workload (:class:`fairing.kube.kueue.QueueState`),
        or None: not held (no queue, or admitted)."""
        from .kueue import queue_of, suspended

        with self._cond:
            obj, state = self._obj, self._queue_state
        if obj is None or not queue_of(obj) or not suspended(obj):
            return None
        if state is None:  # not read yet (a handle just attached): read it now
            from .kueue import QueueState, workload_state

            try:
                state = workload_state(self.kube, self.namespace, obj)
            except Exception:
                state = QueueState(queue_of(obj) or "", False, "", "waiting for Kueue to see it")
        return state

    # -- logs ----------------------------------------------------------------------------

    def _maybe_stream(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        statuses = main_statuses(pod)
        started = any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}) for s in statuses)
        restarts = sum(s.get("restartCount", 0) for s in statuses)
        key = f"{name}#{restarts}"
        if not started or key in self._streams:
            return
        thread = threading.Thread(target=self._stream, args=(name, self.replica(pod), restarts, _main_container(pod)),
                                  name=f"fairing-log-{name}", daemon=True)
        with self._cond:
            if key in self._streams:
                return
            self._streams[key] = thread
        thread.start()

    def _stream(self, pod_name: str, source: str, restarts: int, container: Optional[str] = None) -> None:
        core = self.kube.core
        try:
            response = core.read_namespaced_pod_log(pod_name, self.namespace, follow=True, _preload_content=False,
                                                    **({"container": container} if container else {}))
            splitter = LineSplitter()
            for chunk in response.stream(4096):
                for text, partial in splitter.feed(chunk):
                    self._add_line(source, text, partial)
            for text, partial in splitter.close():
                self._add_line(source, text, partial)
        except Exception as exc:  # the pod went away mid-stream: the log ends here
            if not (self._deleted or self._stop.is_set()):
                why = getattr(exc, "body", None) or getattr(exc, "reason", None) or exc
                self._add_line(source, f"[fairing: log stream of {pod_name} ended: {type(exc).__name__}: {why}]")
        finally:
            with self._cond:
                self._cond.notify_all()

    def _add_line(self, source: str, line: str, partial: bool = False) -> None:
        if line.startswith(PREFIX) or partial and PREFIX.startswith(line):
            return  # the result line is for result(), not for people
        publish_lines([(line, partial)], self._log, self._emit, source)

    def _streams_done(self) -> bool:
        return all(not t.is_alive() for t in self._streams.values())

    def logs(self, follow: bool = True) -> Iterator[str]:
        return self._log.follow(follow, done=lambda: self._ended() and self._streams_done())

    def tail(self, source: Optional[str] = None) -> str:
        """The last lines streamed (of one replica, with ``source``)."""
        return self._log.tail(_TAIL, source)

    def pod_log_tail(self, pod: dict) -> str:
        """The pod's last lines: from the stream when it has them, else read now (the stream
        may not have caught a container that exited at once); the previous container's
        after a restart."""
        buffered = self.tail(self.replica(pod))
        if buffered:
            return buffered
        restarted = any(cs.get("restartCount") for cs in main_statuses(pod))
        try:
            container = _main_container(pod)
            return self.kube.pod_log(pod["metadata"]["name"], self.namespace, tail_lines=_TAIL, previous=restarted,
                                     **({"container": container} if container else {}))
        except self.kube.k8s.client.ApiException:
            return ""

    # -- state -----------------------------------------------------------------------------

    def _pods_terminal(self) -> bool:
        return all(p.get("status", {}).get("phase") in ("Succeeded", "Failed") for p in self._pods.values())

    def _ended(self) -> bool:
        return self._obj is not None and self._phase(self._obj) is not None

    def synced(self, timeout: float = 30) -> bool:
        """Block until both watches have listed what exists (False if they could not in
        ``timeout``): a handle attached to a workload that already ended must know its pods
        (their logs and result) before it can say the workload ended."""
        return self.wait_until(lambda: {self._on_object, self._on_pod} <= self._listed, timeout=timeout,
                               diagnose_pods=False, tick=1.0)

    def status(self) -> JobStatus:
        with self._cond:
            obj, pods = self._obj, list(self._pods.values())
        if obj is None:
            return JobStatus("Pending")
        phase = self._phase(obj)
        if phase:
            return JobStatus(phase, self.terminated()[1].get("exitCode"))
        held = self.queued()
        if held is not None:
            return JobStatus("Queued", message=held.describe())
        running = any(p.get("status", {}).get("phase") == "Running" for p in pods)
        return JobStatus("Running" if running else "Pending")

    def terminated(self) -> tuple[Optional[dict], dict]:
        """The newest result pod with a terminated container, and that container's
        ``terminated`` state (``exitCode``, ``reason``, ``message``); ``(None, {})`` if none."""
        with self._cond:
            pods = [p for p in self._pods.values() if self._is_result_pod(p)]
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
            for cs in main_statuses(pod):  # a helper container's end is not the result
                state = (cs.get("state") or {}).get("terminated")
                if state:
                    return pod, state
        return None, {}

    def _raise_refusal(self) -> None:
        refused = self._refused
        if refused is None:
            return
        message = refused["message"]
        low = message.lower()
        if "exceeded quota" in low and (
                any((p.get("status") or {}).get("phase") in ("Pending", "Running") for p in self._pods.values())
                or refused["at"] < self._pod_ended_at + _QUOTA_SETTLE):
            # Its own pods hold the quota (a map's next index): it frees as they end. A refusal
            # from before one ended, or soon after (the quota controller recounts a moment
            # later), is no answer; the controller tries again, and a refusal then is.
            return
        if "service account" in low or "serviceaccount" in low:
            fix = ("Create that service account in the namespace, or run as one that exists "
                   "(service_account=..., or the kubeflow backend's default-editor in a Kubeflow profile namespace).")
        elif "exceeded quota" in low or "resourcequota" in low or "must specify" in low:
            fix = ("Ask for less (cpu=, memory=, gpus=, fewer replicas), wait for other jobs in the namespace to "
                   "finish, or ask the namespace's owner to raise its ResourceQuota (kubectl describe quota).")
        elif any(t in low for t in ("limitrange", "maximum", "minimum", "must be less than or equal to",
                                    "must be greater than or equal to")):
            fix = ("Ask for resources within the namespace's LimitRange (kubectl describe limitrange): its defaults "
                   "and bounds apply to every container.")
        elif "podsecurity" in low or "violates" in low:
            fix = ("The namespace's Pod Security level refuses the pod spec: drop what it names (privileged, host "
                   "paths, capabilities...) or run in a namespace that allows it.")
        else:
            fix = "Fix what the message names, then run the job again."
        raise PodsRefusedError(
            f"The cluster refuses to create the pods of {self.kind} {self.name} ({refused['reason']} on "
            f"{refused['kind']} {refused['name']}): {message}. {fix}",
            job=self.name, reason=refused["reason"], refusal=message)

    def _raise_diagnosis(self) -> None:
        self._raise_refusal()
        for pod in list(self._pods.values()):
            pod_name = pod["metadata"]["name"]
            scaler = self._autoscaler.get(pod_name)
            if scaler and scaler[3] and scaler[3] != pod["metadata"].get("uid"):
                scaler = None  # about an earlier pod of that name (a TFJob's worker-0 of a previous run)
            if scaler and scaler[1] == SCALE_UP and pod_name not in self._waiting_node and not any(
                    c.get("type") == "PodScheduled" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or []):
                self._waiting_node.add(pod_name)
                self._emit(Stage("node", "started", f"waiting for a new node for pod {pod_name} "
                                 f"(up to {self.scale_up_timeout:g} s): {scaler[2]}"))
            error = diagnose(pod, kind=self.kind, workload=self.name, grace=self.unschedulable_grace,
                             autoscaler=scaler[1:3] if scaler else None, scale_up_timeout=self.scale_up_timeout)
            if isinstance(error, JobFailedError) and error.logs_tail is None:
                error = JobFailedError(str(error), job=error.job, exit_code=error.exit_code,
                                       logs_tail=self.pod_log_tail(pod))
            if error is not None:
                raise error

    # -- waiting ---------------------------------------------------------------------------

    def wait_until(self, done: Callable[[], Any], *, timeout: Optional[float] = None,
                   on_timeout: Optional[Callable[[], FairingError]] = None, diagnose_pods: bool = True,
                   tick: float = 5.0) -> bool:
        """Block until ``done()`` (called under the lock, after each change) is true: True.

        With ``diagnose_pods``, raise what a pod's state explains (an image that cannot be
        pulled...). At ``timeout`` raise ``on_timeout()``, or without one return False
        (also when the watches failed: then nothing more will come). ``tick`` bounds
        each sleep, because grace periods expire without any event.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if done():
                    return True
                if self._watch_error is not None:
                    if on_timeout is None:
                        return False
                    raise_for_api_error(self._watch_error, action=f"watch {self.kind} {self.name}",
                                        kind=self.kind, namespace=self.namespace)
                if diagnose_pods:
                    if self._queue_error is not None:
                        raise self._queue_error
                    self._raise_diagnosis()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if on_timeout is None:
                        return False
                    raise on_timeout()
                self._cond.wait(tick if remaining is None else min(remaining, tick))

    def _finished(self) -> bool:
        if self._obj_gone:
            raise DeployError(f"The {self.kind} {self.name} was deleted while fairing waited for it.")
        return self._ended()

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        """Block until the workload ends (raising what keeps its pods from running);
        on timeout raise JobTimeoutError; on Ctrl-C, or a SIGTERM to a program that made a
        job with :func:`fairing.train` or :class:`fairing.TrainJob` (see :mod:`fairing._sigterm`),
        delete it."""
        from .._sigterm import _Pending

        try:
            with _Pending(self.delete):
                self.wait_until(self._finished, timeout=timeout, on_timeout=lambda: JobTimeoutError(
                    f"The {self.kind} {self.name} did not finish within {timeout:g} s ({self._held_text()}pods: "
                    f"{self._pods_text()}; recent events: {self._events_text()}). It is deleted unless "
                    "cleanup='never'; raise the timeout, or make the job do less.", job=self.name,
                    logs_tail=self.tail()))
            # Replicas may end a little after the workload does (workers after the master):
            # give them, then their log streams, a bounded moment to finish.
            self.wait_until(self._pods_terminal, timeout=30, diagnose_pods=False, tick=1.0)
            self.wait_until(self._streams_done, timeout=10, diagnose_pods=False, tick=0.5)
        except KeyboardInterrupt:
            self.delete()
            raise
        return self.status()

    def _held_text(self) -> str:
        held = self.queued()
        return f"{held.describe()}; " if held is not None else ""

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

    # -- cleanup ---------------------------------------------------------------------------

    def delete(self) -> None:
        """Delete the workload and wait (a bounded minute) until it and its pods are gone."""
        if self._deleted:
            return
        self._deleted = True
        try:
            self._delete_object()
        except self.kube.api_errors as exc:
            if not is_status(exc, 404):
                raise_for_api_error(exc, action=f"delete {self.kind} {self.name}", kind=self.kind,
                                    namespace=self.namespace)
        # Foreground deletion: the object goes once its pods are gone.
        self.wait_until(lambda: self._obj_gone, timeout=60, diagnose_pods=False, tick=1.0)
        self._stop.set()


def _main_container(pod: dict) -> Optional[str]:
    """The container whose log is the workload's: the pod's default container (its
    ``kubectl.kubernetes.io/default-container`` annotation), else the first one; sidecars a
    webhook injects (KServe's modelcar) come after it. None for a pod of one container."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if len(containers) < 2:
        return None
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get("kubectl.kubernetes.io/default-container") or containers[0].get("name")


def main_statuses(pod: dict) -> list:
    """The status of the container whose log is streamed (all of a pod of one container): a
    sidecar's start or restart is not the main container's, and must not stream its log again."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    main = _main_container(pod)
    return [s for s in statuses if s.get("name") == main] if main else statuses
