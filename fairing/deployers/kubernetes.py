"""What the Kubernetes deployers share: options, the pod template, the image pull secret,
and the handle of a running workload.

The handle is a :class:`fairing.kube.Workload` (watches on the workload and its pods,
logs of every replica prefixed ``[worker-1]``, one waiting loop) that also reads the
job's result.

Results are signed with a per-job key (see :mod:`fairing.runtime.result`) kept in a
Secret ``<job>-result-key``: created before the workload, owned by it once it exists,
mounted into its pods (never a plain env value), and deleted with it. The registry
credentials of the image (``pull_credentials``, by default the Docker config, which in a
notebook pod is the one mounted at ``DOCKER_CONFIG``) go the same way, as the image pull
secret ``<job>-pull`` of that workload alone.
Results travel through the termination message (``/dev/termination-log``, at most
4096 bytes per container) and, for larger ones, through the last line of the result
replica's log (``FAIRING_RESULT_LOG=1``); the limit then is the log kept by the
kubelet (10 MiB by default, per container).

Output files (see :mod:`fairing.outputs`) and results too large for the termination
message go as an OCI artifact to ``<image repository>-outputs/<job>`` in the image's
registry, pushed by the job with the image pull secret's credentials mounted as a file
(``insecure_registry``: plain HTTP [when the builder reached the registry so, or for hosts in
the ``insecure_registries`` setting]);
the handle deletes the artifact with the workload.

The module runs past 450 lines because every option every Kubernetes workload shares
(Secrets made and settled under one cleanup, pull secrets, queue, grace times, resources)
lives in the one base deployer; split up, each kind would re-learn the others' rules.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Optional

from .._options import checks_options
from ..artifacts import RegistryImage
from ..errors import ConfigurationError, DeployError, ImagePullError, JobFailedError, ResultError
from ..handle import HasOutputs, Hooks
from ..kube.diagnose import SCALE_UP_TIMEOUT, UNSCHEDULABLE_GRACE
from ..kube.kueue import QUEUE_LABEL, check_local_queue, check_queue_name
from ..kube.workloads import condition_phase
from ..kube import JOB_LABEL, MANAGED_BY, KubeClient, Workload, raise_for_api_error
from ..kube.secrets import DOCKER_CONFIG_KEY, delete_secret, registry_secret, write_secret
from ..resources import Resources
from ..results import outcome, read_envelope
from ..runtime.result import KEY_FILE_ENV, PREFIX, new_key
from .mutators import Mutator, apply, image_pull_secrets

__all__ = ["KubeDeployerBase", "KubeHandle", "JOB_LABEL", "result_key_secret", "pull_secret_for"]

_KEY_DIR = "/var/run/fairing-result"  # where pods find their result key (a mounted Secret)
_AUTH_DIR = "/var/run/fairing-registry"  # the registry credentials the job pushes its outputs with


_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _seconds(name: str, value: Any, default: float) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} is a number of seconds (0 or more), e.g. {name}={default:g}; got {value!r}.")
    return float(value)


def result_key_secret(job: str) -> str:
    """The name of the Secret that holds a job's result key."""
    return f"{job[:200]}-result-key"


def pull_secret_for(job: str) -> str:
    """The name of the image pull secret of a job (its registry credentials, if any)."""
    return f"{job[:200]}-pull"


def _image_name(image: Any) -> str:
    text = str(image)
    if not text or any(c.isspace() for c in text):
        raise DeployError(f"The image reference {text!r} is not valid; pass the RegistryImage a builder returned.")
    return text


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class KubeDeployerBase:
    """Options shared by the Job, TFJob and PyTorchJob deployers.

    ``namespace`` defaults to the kubeconfig context's (or the pod's own in a cluster);
    ``kube`` is a :class:`fairing.kube.KubeClient` to use instead of reading kubeconfig.
    ``mutators`` customise every pod (see :mod:`fairing.deployers.mutators`).
    ``ttl_seconds_after_finished`` lets the cluster remove finished workloads;
    ``active_deadline_seconds`` and ``backoff_limit`` (default 0: no retries) bound them.
    ``pull_credentials`` finds credentials for the image's registry (a provider as in
    :mod:`fairing.images.auth`; default: the ones ``docker login`` stored, as the builders
    use); when there are some, an image pull secret ``<job>-pull`` with them for the image's
    registry only is created in the namespace, referenced from the pods, owned by the
    workload and deleted with it. ``False`` turns this off.
    ``insecure_registry``: the job pushes its outputs over plain HTTP [when the builder
    reached the image's registry so, or it is one of ``insecure_hosts``].
    ``insecure_hosts``: registries reached over plain HTTP [None: none; the backends fill
    it from the ``insecure_registries`` setting].
    ``unschedulable_grace``: seconds a pod may stay unschedulable before the job fails with
    :class:`~fairing.errors.UnschedulableError` [20; the ``unschedulable_grace`` setting];
    ``scale_up_timeout``: how long, once a node autoscaler reported ``TriggeredScaleUp`` for
    the pod (a node is being added) [600; the ``scale_up_timeout`` setting].
    ``priority_class``: the pods' ``priorityClassName`` (a PriorityClass on the cluster).
    ``queue``: the Kueue LocalQueue (in the namespace) the workload waits in for quota: the
    ``kueue.x-k8s.io/queue-name`` label on the workload (see :mod:`fairing.kube.kueue`)
    [None: none; the backends fill it from the ``queue`` setting]; checked to exist before
    anything is built. Endpoints take none.
    ``cpu``, ``memory``, ``gpus``: the requests and limits of the training container of every
    pod (see :mod:`fairing.resources`; checked now); ``mutators`` may still change them.
    """

    container_name = "fairing-job"
    accepts = (RegistryImage,)
    #: The WorkloadKind this deployer starts (what :meth:`required_access` asks for).
    workload_kind: Any = None
    queueable = True  # a batch workload Kueue can hold (endpoints are not)
    #: Whether its workloads get a result-key Secret (endpoints report no result).
    writes_result_key = True

    def __init__(self, *, namespace: Optional[str] = None, kube: Optional[KubeClient] = None,
                 kubeconfig: Optional[str] = None, context: Optional[str] = None, mutators=(),
                 labels: Optional[dict] = None, annotations: Optional[dict] = None,
                 ttl_seconds_after_finished: Optional[int] = None, active_deadline_seconds: Optional[int] = None,
                 backoff_limit: int = 0, name_prefix: str = "fairing", pull_credentials: Any = None,
                 insecure_registry: Optional[bool] = None, insecure_hosts: Optional[Iterable[str]] = None,
                 unschedulable_grace: Optional[float] = None, scale_up_timeout: Optional[float] = None,
                 priority_class: Optional[str] = None, queue: Optional[str] = None,
                 cpu: Any = None, memory: Any = None, gpus: Any = None) -> None:
        self.resources = Resources.of(cpu, memory, gpus)
        # None: not given (the settings may fill them, fairing.backends.with_settings)
        self.unschedulable_grace = _seconds("unschedulable_grace", unschedulable_grace, UNSCHEDULABLE_GRACE)
        self.scale_up_timeout = _seconds("scale_up_timeout", scale_up_timeout, SCALE_UP_TIMEOUT)
        if priority_class is not None and not (isinstance(priority_class, str) and _DNS_NAME.fullmatch(priority_class)):
            raise ConfigurationError(f"priority_class must name a PriorityClass (a lowercase DNS name such as "
                                     f"'high-priority'), got {priority_class!r}.")
        self.priority_class = priority_class
        if queue is not None and not self.queueable:
            raise ConfigurationError(f"queue= sends a batch job to a Kueue LocalQueue; the {type(self).__name__} "
                                     "runs an endpoint, which Kueue does not queue here. Drop queue=.")
        self.queue = check_queue_name(queue)
        self._queue_checked: Optional[tuple] = None  # (namespace, queue) found to exist
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
        self.insecure_registry = insecure_registry
        self.insecure_hosts = None if insecure_hosts is None else tuple(insecure_hosts)

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            self._kube = KubeClient(**self._kube_options)
        return self._kube

    def required_access(self) -> list:
        """What the identity needs in the namespace to run this deployer's workloads (the
        permission pre-flight, :func:`fairing.kube.access.preflight`)."""
        from ..kube.access import Access, workload_access

        if self.workload_kind is None:
            return []
        group, _version = self.workload_kind.group_version
        needs = workload_access(group, self.workload_kind.plural, result_key=self.writes_result_key)
        if self.pull_credentials is not False:  # the image pull secret: created (never updated), deleted
            needs += [Access("create", "secrets"), Access("get", "secrets"), Access("delete", "secrets")]
        return list(dict.fromkeys(needs))

    def new_name(self) -> str:
        return f"{self.name_prefix}-{time.strftime('%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"

    def preflight(self) -> None:
        """What can be checked before anything is built: the LocalQueue named by ``queue``
        exists (:class:`~fairing.errors.QueueNotFoundError` otherwise)."""
        if self.queue and self._queue_checked != (self.kube.namespace, self.queue):
            check_local_queue(self.kube, self.kube.namespace, self.queue)
            self._queue_checked = (self.kube.namespace, self.queue)

    def pull_secret(self, image: Any, name: str) -> Optional[str]:
        """Create the image pull secret of job ``name`` with the credentials for ``image``'s
        registry (only those); its name, or None when there are none."""
        if self.pull_credentials is False:
            return None
        from ..images import ImageRef
        from ..images.auth import resolve_credentials

        host = ImageRef.parse(str(image)).registry
        secret = pull_secret_for(name)
        if secret in self._made(name):
            return secret  # another replica's pod template (a TFJob's chief, PS and workers)
        # created, never replaced: a Secret of that name is someone else's (a user's, or a
        # running job's of the same name), which fairing must neither overwrite nor adopt
        written = registry_secret(lambda: self.kube, secret, resolve_credentials(credentials=self.pull_credentials),
                                  [host], error=ImagePullError)
        if not written:
            return None
        self._made(name).add(secret)
        return secret

    def _made(self, name: str) -> set:
        """The Secrets this deployer created for job ``name`` and has not handed over yet:
        the only ones it may adopt or delete (one of the same name may be someone else's)."""
        made = self.__dict__.setdefault("_secrets_made", {})
        return made.setdefault(name, set())

    def settled(self, name: str) -> None:
        """Job ``name``'s workload exists: its Secrets are its own now (owner, handle)."""
        self.__dict__.get("_secrets_made", {}).pop(name, None)

    def own_secrets(self, name: str, api_version: str, kind: str, uid: str) -> None:
        """Make the workload ``name`` the owner of the Secrets this deployer made for it (result
        key, pull secret), so the cluster removes them with it even if this process dies; the
        handle deletes them otherwise."""
        kube = self.kube
        owner = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
        for secret in sorted(self._made(name)):
            try:
                kube.core.patch_namespaced_secret(secret, kube.namespace, {"metadata": {"ownerReferences": [owner]}})
            except kube.api_errors:
                pass  # the handle still deletes it with the workload

    def delete_secrets(self, name: str) -> None:
        """Delete the Secrets this deployer made for job ``name`` (a workload that could not
        be made); errors are dropped."""
        for secret in sorted(self.__dict__.get("_secrets_made", {}).pop(name, ())):
            try:
                delete_secret(self.kube, secret)
            except Exception:
                pass  # the original error matters more

    @contextlib.contextmanager
    def result_key(self, name: str) -> Iterator[Callable[[str, str, str], None]]:
        """Create the Secret with job ``name``'s result key around the workload's creation
        (deleted again if that fails). It yields ``owned_by(api_version, kind, uid)``, which
        makes the workload the Secret's owner, so the cluster removes it with the workload
        even if this process dies; the handle deletes both otherwise."""
        self.preflight()  # a deployer used on its own: before anything is created
        with self.making_secrets(name):
            write_secret(self.kube, result_key_secret(name), {"key": new_key().hex()})
            self._made(name).add(result_key_secret(name))

            def owned_by(api_version: str, kind: str, uid: str) -> None:
                self.own_secrets(name, api_version, kind, uid)
                self.settled(name)  # the workload's now: a SIGTERM from here on must not delete them

            yield owned_by

    @contextlib.contextmanager
    def making_secrets(self, name: str) -> Iterator[None]:
        """Around making job ``name``'s Secrets and its workload: if that fails, or Ctrl-C
        or a SIGTERM (fairing's handler, :mod:`fairing._sigterm`) ends it, the Secrets made
        so far are deleted; once it is done they are the workload's."""
        from .._sigterm import _handle_sigterm, _Pending

        _handle_sigterm()  # before anything exists that a SIGTERM could leave behind
        try:
            with _Pending(self.delete_secrets, name):
                yield
        except BaseException:
            self.delete_secrets(name)  # the pull secret the pod template made too
            raise
        self.settled(name)

    def insecure(self, image: Any) -> bool:
        """Whether the job reaches ``image``'s registry over plain HTTP."""
        if self.insecure_registry is not None:
            return bool(self.insecure_registry)
        if getattr(image, "plain_http", False):  # the builder pushed it over plain HTTP
            return True
        from ..images import ImageRef

        return ImageRef.parse(str(image)).registry in (self.insecure_hosts or ())

    def outputs_target(self, image: Any, name: str) -> str:
        """Where job ``name`` of ``image`` pushes its outputs: ``host/repository:tag``."""
        from ..images import ImageRef
        from ..outputs import outputs_repository

        ref = ImageRef.parse(str(image))
        return f"{ref.registry}/{outputs_repository(ref.repository, name)}:outputs"

    def watching(self, handle: "KubeHandle") -> "KubeHandle":
        """``handle`` told how long its pods may wait for a node."""
        if self.unschedulable_grace is not None:
            handle.unschedulable_grace = self.unschedulable_grace
        if self.scale_up_timeout is not None:
            handle.scale_up_timeout = self.scale_up_timeout
        return handle

    def handle_for(self, handle: "KubeHandle", image: Any) -> "KubeHandle":
        """``handle`` told where its outputs go and how long its pods may wait, then started."""
        self.watching(handle)
        handle.outputs_target = self.outputs_target(image, handle.name)
        handle.insecure_registry = self.insecure(image)
        return handle.start()

    def outputs_env(self, image: Any, name: str) -> tuple[list, list, list]:
        """(env, volume mounts, volumes) for a job ``name`` of ``image`` to push its outputs."""
        from ..images import ImageRef

        ref = ImageRef.parse(str(image))
        env = [{"name": "FAIRING_OUTPUTS_TARGET", "value": "oci://" + self.outputs_target(image, name)},
               {"name": "FAIRING_OUTPUTS_AUTH_FILE", "value": f"{_AUTH_DIR}/config.json"}]
        if self.insecure(image):
            env.append({"name": "FAIRING_OUTPUTS_INSECURE", "value": "1"})
        mounts = [{"name": "fairing-registry-auth", "mountPath": _AUTH_DIR, "readOnly": True}]
        volumes = [{"name": "fairing-registry-auth",
                    "secret": {"secretName": pull_secret_for(name), "optional": True, "defaultMode": 0o444,
                               "items": [{"key": DOCKER_CONFIG_KEY, "path": "config.json"}]}}]
        return env, mounts, volumes

    def pod_template(self, image: Any, name: str, *, extra_mutators=()) -> dict:
        out_env, out_mounts, out_volumes = self.outputs_env(image, name)
        container = {
            "name": self.container_name,
            "image": _image_name(image),
            "env": [{"name": "FAIRING_RESULT_FILE", "value": "/dev/termination-log"},
                    {"name": "FAIRING_RESULT_LOG", "value": "1"},
                    {"name": KEY_FILE_ENV, "value": f"{_KEY_DIR}/key"}, *out_env],
            "volumeMounts": [{"name": "fairing-result-key", "mountPath": _KEY_DIR, "readOnly": True}, *out_mounts],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
        # optional: endpoints report no result and create no key
        volumes = [{"name": "fairing-result-key",
                    "secret": {"secretName": result_key_secret(name), "defaultMode": 0o444, "optional": True}},
                   *out_volumes]
        if self.resources:
            container["resources"] = self.resources.kubernetes()
        spec = apply({"containers": [container], "volumes": volumes, "restartPolicy": "Never"},
                     [*self.mutators, *extra_mutators])
        if self.priority_class:
            spec["priorityClassName"] = self.priority_class
        secret = self.pull_secret(image, name)
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
        """The workload's metadata; with ``queue``, Kueue's label (on the workload only: its
        pods are Kueue's business once it admits the workload)."""
        queue = {QUEUE_LABEL: self.queue} if self.queue else {}
        return {"name": name, "labels": {**MANAGED_BY, **self.labels, JOB_LABEL: name, **queue},
                "annotations": dict(self.annotations)}


class KubeHandle(Hooks, HasOutputs, Workload):
    """A workload run by a deployer: a :class:`fairing.kube.Workload` whose result is read back.

    Each concrete handle class declares ``WORKLOAD`` (:class:`fairing.kube.workloads.WorkloadKind`:
    what it is on the cluster) and how to attach to one another process started
    (:meth:`attach`); job records and listing iterate those declarations."""

    WORKLOAD: Any = None

    @classmethod
    def attach(cls, kube: Any, name: str, *, on_event: Any = None) -> "KubeHandle":
        """A handle on the workload ``name`` in ``kube``'s namespace (not yet started)."""
        return cls(kube, name, kube.namespace, on_event=on_event)

    def _phase(self, obj: dict) -> Optional[str]:
        return condition_phase(obj)

    insecure_registry: Optional[bool] = None  # how its outputs artifact is reached (set by the deployer)
    outputs_target: str = ""  # where the job pushes its outputs, host/repository:tag (set by the deployer)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outputs: Any = None  # the artifact the last result read named (fairing.outputs.Outputs)
        self._pushed: dict = {}  # every artifact the results read named, by reference
        self._results_read = False  # whether any pod's result was read (then _pushed has all it pushed)

    def result(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        return self.pod_outcome(*self.terminated())

    def pod_outcome(self, pod: Optional[dict], terminated: dict) -> Any:
        """The value (or raise the exception) reported by ``pod``, whose container ended ``terminated``."""
        tail = self.pod_log_tail(pod) if pod else self.tail()
        if terminated.get("reason") == "OOMKilled":
            raise JobFailedError(
                f"The {self.kind} {self.name} was OOMKilled: it used more memory than its limit. "
                "Raise the memory limit (resources(memory=...)) or use less memory.",
                job=self.name, exit_code=terminated.get("exitCode"), logs_tail=tail,
            )
        envelope = None
        key = self._result_key()
        for text in (terminated.get("message") or "", self._result_from_log(pod)):
            try:
                envelope = read_envelope(text, key, job=self.name)
                break
            except ResultError:  # signed, but its value cannot be recreated here: no other channel helps
                raise
            except Exception:  # truncated or absent: try the next channel
                continue
        self._results_read = self._results_read or envelope is not None
        if envelope and envelope.get("outputs"):
            from ..outputs import Outputs

            self._outputs = Outputs(envelope["outputs"], insecure=self.insecure_registry)
            self._pushed.setdefault(self._outputs.ref, self._outputs)
            if envelope.get("large"):  # the full envelope travelled with the outputs
                envelope = read_envelope(self._outputs.result_line(), key, job=self.name)
        return outcome(envelope, job=self.name, exit_code=terminated.get("exitCode"), logs_tail=tail)

    def _result_key(self) -> bytes:
        secret = result_key_secret(self.name)
        try:
            data = self.kube.core.read_namespaced_secret(secret, self.namespace).data or {}
        except self.kube.api_errors as exc:
            raise_for_api_error(exc, action=f"read the Secret {secret}", kind="Secret", namespace=self.namespace)
        return bytes.fromhex(base64.b64decode(data.get("key", "")).decode())

    def delete(self) -> None:
        """Delete the workload (see :meth:`fairing.kube.Workload.delete`), its result key and
        its outputs in the registry; then the ``delete`` hooks run (the job records' one
        forgets the record :func:`fairing.jobs.jobs` kept of it)."""
        if not self.outputs_target:  # attached to (fairing.jobs.attach): the pods say where they push
            self._target_from_pods()
        super().delete()
        delete_secret(self.kube, result_key_secret(self.name), fairings_only=True)
        delete_secret(self.kube, pull_secret_for(self.name), fairings_only=True)
        for outputs in self._pushed.values():  # what the results read named
            outputs.delete()
        if not self._results_read and self._streams and self.outputs_target:
            # a container ran but no result was read: whatever it pushed under its tags
            from ..errors import RegistryError
            from ..outputs import delete_repository

            try:
                delete_repository(self.outputs_target.rsplit(":", 1)[0], insecure=self.insecure_registry)
            except RegistryError:
                pass  # best effort: not reachable from here (plain HTTP not allowed), so the job could not push either
        self.run_hooks("delete")

    def _target_from_pods(self) -> None:
        with self._cond:
            pods = list(self._pods.values())
        for pod in pods:
            env = {e.get("name"): e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
            if (env.get("FAIRING_OUTPUTS_TARGET") or "").startswith("oci://"):
                self.outputs_target = env["FAIRING_OUTPUTS_TARGET"][len("oci://"):]
                self.insecure_registry = env.get("FAIRING_OUTPUTS_INSECURE") == "1"
                return

    def _result_from_log(self, pod: Optional[dict]) -> str:
        if pod is None:
            return ""
        try:
            text = self.kube.pod_log(pod["metadata"]["name"], self.namespace, tail_lines=3)
        except self.kube.k8s.client.ApiException:
            return ""
        return text if PREFIX in text else ""
