"""Warm deployer: a call runs in a worker pod that outlives it, so a re-run needs no new pod.

The first call starts a worker (a Job of one pod running :mod:`fairing.runtime.warm`)
from the image the warm builder made (base, requirements, runtime; no code). Each call
then reaches the worker through the API server's port-forward subresource (the user's
own permissions; the worker listens on the pod's loopback only: no Service, no port on
the cluster network), sends only the files the worker does not have (by sha256), and the
run starts in a fresh Python process there; its output streams back, and its signed
result (the same envelope as a Job's) comes back on the same connection, with the files
it wrote (``$FAIRING_OUTPUTS``, ``outputs=``). Closing the connection (Ctrl-C, a
timeout, ``delete()``) stops the run, not the worker.

Lifecycle: a worker with no call for ``idle`` seconds exits; its Job has
``ttlSecondsAfterFinished: 0``, so the cluster removes the Job and its pod, also when the
submitting process died. A worker serves one namespace and one identity: it is found by
the hash of (its image, the namespace, who the API server says the user is), that
identity's hash is on the pod (checked before each call), and the worker answers only the
token whose sha256 it was started with. The token stays on this machine (``token_dir``,
mode 0600), so kernels of one user on one machine share a worker; another machine or
another identity starts its own. A new base image or requirements file is a new image,
hence a new worker (the old one idles out).

Why a raw socket protocol and not HTTP: the frames (see :mod:`fairing.runtime.warm`) are
a few lines of standard library on both sides, and the runtime may import nothing else.

It is past 450 lines because the worker's lifecycle (find, start, reach), the token files and the
call's handle are one protocol's client; split, each part would reach into the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from ..artifacts import WarmImage
from ..context import Link
from ..errors import ConfigurationError, DeployError, ImagePullError, JobFailedError, JobTimeoutError
from ..events import EventCallback, emitter
from ..handle import HasOutputs, Hooks, JobStatus, LineSplitter, LogBuffer, publish_lines
from ..kube import JOB_LABEL, MANAGED_BY, raise_for_api_error
from ..results import outcome, read_envelope
from ..runtime import warm as protocol
from ..runtime.result import new_key
from .kubernetes import KubeDeployerBase
from .mutators import apply, image_pull_secrets

__all__ = ["WarmDeployer", "WarmHandle", "WARM_LABEL", "IDENTITY_LABEL", "identity_of", "workers"]

WARM_LABEL = "fairing.dev/warm"
IDENTITY_LABEL = "fairing.dev/warm-identity"
_START_TIMEOUT = 600.0


def identity_of(kube: Any) -> str:
    """sha256 of who the API server says this client is (a SelfSubjectReview: user name, uid,
    groups); where the server has no such API, of the client's credentials."""
    k8s = kube.k8s
    try:
        review = k8s.client.AuthenticationV1Api(kube.api_client).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        info = review.status.user_info
        who = json.dumps([info.username, info.uid, sorted(info.groups or [])])
    except kube.api_errors:
        cfg = kube.api_client.configuration
        who = json.dumps([cfg.host, sorted((cfg.api_key or {}).items()), cfg.cert_file or "", cfg.username or ""])
    return hashlib.sha256(who.encode()).hexdigest()


def workers(kube: Any, namespace: Optional[str] = None) -> list:
    """The warm workers' Jobs in the namespace (``kube``'s by default)."""
    ns = namespace or kube.namespace
    return kube.batch.list_namespaced_job(ns, label_selector=WARM_LABEL).items


class WarmDeployer(KubeDeployerBase):
    """Runs each call on a warm worker (see the module docstring).

    ``idle``: seconds without a call after which a worker exits and its pod goes [600].
    ``token_dir``: where the workers' tokens are kept on this machine [a new temporary
    directory: workers shared only within this process; the backends pass the cache dir].
    ``start_timeout``: how long the first call waits for the worker to run [600 s].
    Other options: see :class:`~fairing.deployers.kubernetes.KubeDeployerBase`.
    """

    container_name = "fairing-warm"
    accepts = (WarmImage,)

    def __init__(self, *, idle: float = 600, token_dir: Any = None, start_timeout: float = _START_TIMEOUT,
                 **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(idle, (int, float)) or isinstance(idle, bool) or not 0 < idle <= protocol.MAX_IDLE:
            raise ConfigurationError(f"warm_idle must be a positive number of seconds up to {protocol.MAX_IDLE:.0f} "
                                     f"(a week), got {idle!r}.")
        self.idle = float(idle)
        self.token_dir = Path(token_dir) if token_dir is not None else Path(tempfile.mkdtemp(prefix="fairing-warm-"))
        self.start_timeout = start_timeout
        self._identity: Optional[str] = None
        self._known: dict = {}  # worker key -> (pod, worker, token) last used: no listing per call (shared by copies)

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = identity_of(self.kube)
        return self._identity

    def worker_key(self, image: Any) -> str:
        """The label value that finds a worker of ``image`` for this identity in this namespace."""
        return hashlib.sha256(f"{image}|{self.kube.namespace}|{self.identity}".encode()).hexdigest()[:40]

    def _token_path(self, worker: str) -> Path:
        return self.token_dir / self.kube.namespace / worker

    def _token_dir(self) -> Path:
        """The namespace's token directory, made 0700; refused when another user could swap its
        files (a token file replaced by a link would send what it points to as the token)."""
        directory = self.token_dir / self.kube.namespace
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in (self.token_dir, directory):
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                raise ConfigurationError(
                    f"The warm workers' token directory {path} is a link, another user's, or writable by others "
                    f"(mode {stat.S_IMODE(st.st_mode):o}); fairing keeps the workers' tokens there. Remove it (a new "
                    "one is made, mode 0700) or set XDG_CACHE_HOME to a directory of your own.")
        return directory

    def _token(self, worker: str) -> Optional[str]:
        """The token of ``worker``: a regular file of this user, never through a link."""
        path = self._token_dir() / worker
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd) as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size != 64:
                return None
            return fh.read().strip() or None

    def manifest(self, image: WarmImage, name: str, token: str) -> dict:
        labels = {**MANAGED_BY, **self.labels, JOB_LABEL: name, WARM_LABEL: self.worker_key(image.image),
                  IDENTITY_LABEL: self.identity[:40]}
        container = {
            "name": self.container_name, "image": str(image.image),
            "command": ["python3", "-m", "fairing_runtime.warm"], "workingDir": image.context.workdir,
            "env": [{"name": protocol.TOKEN_ENV, "value": hashlib.sha256(token.encode()).hexdigest()},
                    {"name": protocol.IDLE_ENV, "value": str(self.idle)}],
        }
        spec = apply({"containers": [container], "restartPolicy": "Never"}, self.mutators)
        secret = self.pull_secret(image.image, name)  # <name>-pull, owned by the worker's Job below
        if secret:
            spec = image_pull_secrets(secret)(spec)
        annotations = {**self.annotations, "sidecar.istio.io/inject": "false", IDENTITY_LABEL: self.identity}
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 0,
                         "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}}}

    def find_worker(self, image: WarmImage) -> Optional[tuple]:
        """(pod name, worker name, token) of a running worker of ``image`` this process may use, or None."""
        kube = self.kube
        selector = f"{WARM_LABEL}={self.worker_key(image.image)}"
        try:
            pods = kube.core.list_namespaced_pod(kube.namespace, label_selector=selector).items
        except kube.api_errors as exc:
            raise_for_api_error(exc, action="list the warm workers' pods", kind="Pod", namespace=kube.namespace)
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
            if pod.metadata.deletion_timestamp or (pod.status.phase not in ("Pending", "Running")):
                continue
            worker = (pod.metadata.labels or {}).get(JOB_LABEL, "")
            token = self._token(worker)
            if token and self.check_identity(pod):
                os.utime(self._token_path(worker))  # in use: kept by the pruning below
                return pod.metadata.name, worker, token
        return None

    def check_identity(self, pod: Any) -> bool:
        return (pod.metadata.annotations or {}).get(IDENTITY_LABEL) == self.identity

    def start_worker(self, image: WarmImage) -> tuple:
        kube = self.kube
        name = f"fairing-warm-{uuid.uuid4().hex[:8]}"
        token = secrets.token_hex(32)
        path = self._token_dir() / name
        self._prune_tokens(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        try:
            job = kube.batch.create_namespaced_job(kube.namespace, self.manifest(image, name, token))
        except BaseException as exc:
            path.unlink(missing_ok=True)
            self.delete_secrets(name)
            if isinstance(exc, kube.api_errors):
                raise_for_api_error(exc, action=f"create the warm worker {name}", kind="Job", namespace=kube.namespace)
            raise
        self.own_secrets(name, "batch/v1", "Job", job.metadata.uid)  # they go with the worker's Job
        return name, token

    def _prune_tokens(self, directory: Path) -> None:
        """Forget the tokens of workers unused for longer than they wait (they have exited)."""
        horizon = time.time() - (self.idle + 3600)
        for path in directory.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < horizon:
                    path.unlink()
            except OSError:
                pass  # another process pruned it

    def _wait_pod(self, worker: str) -> str:
        kube = self.kube
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            pods = kube.core.list_namespaced_pod(kube.namespace, label_selector=f"{JOB_LABEL}={worker}").items
            for pod in pods:
                if pod.status.phase == "Running" and self._listening(pod.metadata.name):
                    return pod.metadata.name
                if pod.status.phase in ("Failed", "Succeeded"):
                    raise DeployError(f"The warm worker {worker} ended before its first call "
                                      f"({pod.status.phase}); see `kubectl logs -l {JOB_LABEL}={worker}`.")
                for cs in pod.status.container_statuses or []:
                    waiting = cs.state.waiting if cs.state else None
                    if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                        self.delete_worker(worker)
                        raise ImagePullError(f"The warm worker {worker} cannot pull its image: {waiting.reason}: "
                                             f"{waiting.message}")
            time.sleep(0.2)
        self.delete_worker(worker)
        raise DeployError(f"The warm worker {worker} did not start within {self.start_timeout:.0f} s.")

    def _listening(self, pod: str) -> bool:
        """Whether the worker in ``pod`` said it listens (a port-forward to a closed port ends in
        an error the kubernetes client's forwarding thread prints)."""
        try:
            return protocol.READY in self.kube.pod_log(pod, self.kube.namespace, tail_lines=5)
        except Exception:  # no log yet
            return False

    def delete_worker(self, worker: str) -> None:
        """Remove the worker ``worker`` (its Job, its pod and its token here)."""
        kube = self.kube
        try:
            kube.batch.delete_namespaced_job(worker, kube.namespace, propagation_policy="Background",
                                             grace_period_seconds=0)
        except kube.api_errors:
            pass  # gone already
        self._token_path(worker).unlink(missing_ok=True)

    def connect(self, pod: str) -> socket.socket:
        """A connection to the worker in ``pod``, through the API server's port-forward."""
        from kubernetes.stream import portforward

        kube = self.kube
        try:
            forward = portforward(kube.core.connect_get_namespaced_pod_portforward, pod, kube.namespace,
                                  ports=str(protocol.PORT))
        except kube.api_errors as exc:
            raise_for_api_error(exc, action=f"port-forward to the warm worker's pod {pod}", kind="Pod",
                                namespace=kube.namespace)
        sock = forward.socket(protocol.PORT)
        sock.setblocking(True)
        sock._fairing_forward = forward  # type: ignore[attr-defined]  (kept alive with the socket)
        return sock

    def deploy(self, image: WarmImage, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> "WarmHandle":
        if not isinstance(image, WarmImage):
            raise ConfigurationError(f"The warm deployer runs what the warm builder makes, got {type(image).__name__}.")
        blobs, paths, links, executable = _payload(image.context)
        worker_key = self.worker_key(image.image)
        sock = None
        known = self._known.pop(worker_key, None)
        if known is not None:  # the worker of the last call: no listing
            pod, worker, token = known
            try:
                sock = self.connect(pod)
                missing = self._hello(sock, token, blobs, worker)
            except (EOFError, OSError, DeployError):  # gone since (idle, deleted): look again
                sock = None
        if sock is None:
            sock, pod, worker, token, missing = self._reach(image, blobs)
        self._known[worker_key] = (pod, worker, token)
        key = new_key()
        run = {"files": paths, "links": links, "exec": executable, "entrypoint": list(image.context.entrypoint),
               "env": dict(image.context.env), "workdir": image.context.workdir, "key": key.hex()}
        try:
            for digest in missing:
                protocol.send(sock, b"B", blobs[digest])
            protocol.send(sock, b"R", json.dumps(run).encode())
        except BaseException:
            # Ctrl-C or a broken upload: the worker is freed now, not when the traceback holding this
            # socket goes (a notebook keeps it: the worker would wait for the rest of the upload)
            sock.close()
            raise
        handle = WarmHandle(name or f"{worker}-{uuid.uuid4().hex[:5]}", worker, pod, sock, key, on_event=on_event)
        return handle.start()

    def _reach(self, image: WarmImage, blobs: dict) -> tuple:
        """(socket, pod, worker, token, missing sha256s): a worker of ``image`` found, or started."""
        found = self.find_worker(image)
        started = found is None
        if found is None:
            worker, token = self.start_worker(image)
            pod = self._wait_pod(worker)
        else:
            pod, worker, token = found
        deadline = time.monotonic() + (self.start_timeout if started else 30)
        while True:
            try:
                sock = self.connect(pod)
                return sock, pod, worker, token, self._hello(sock, token, blobs, worker)
            except (EOFError, OSError) as exc:  # not listening yet (a new worker), or it just idled out
                if time.monotonic() > deadline:
                    raise DeployError(f"The warm worker {worker} does not answer: {exc}.") from exc
                if not started and self.find_worker(image) is None:
                    return self._reach(image, blobs)
                time.sleep(0.1)

    def _hello(self, sock: socket.socket, token: str, files: dict, worker: str) -> list:
        try:
            protocol.send(sock, b"H", json.dumps({"token": token, "have": sorted(files)}).encode())
            kind, body = protocol.recv(sock)
            answer = json.loads(body)
        except ValueError:
            answer = None  # not the worker's protocol: refused below
        except BaseException:  # Ctrl-C while a busy worker serves another call, or it went away
            sock.close()
            raise
        if kind != b"N" or not isinstance(answer, dict) or "refused" in answer:
            sock.close()
            why = answer.get("refused", "bad answer") if isinstance(answer, dict) else "not a worker's answer"
            raise DeployError(f"The warm worker {worker} refused the call: {why}. "
                              "It serves the submitter that started it; this one starts its own.")
        missing = answer.get("missing")
        if not isinstance(missing, list) or not set(missing) <= set(files):
            sock.close()
            raise DeployError(f"The warm worker {worker} answered with files this call does not have: not a "
                              "fairing warm worker (or a corrupt one); delete it (`fairing delete`) and run again.")
        return missing


def _payload(context: Any) -> tuple:
    """({sha256: bytes}, {path: sha256}, {path: link target}, [executable paths]) of ``context``'s files."""
    from ..preprocessors.secrets import check_files, recheck

    blobs: dict = {}
    paths: dict = {}
    links: dict = {}
    executable = []
    for path, source in context.files.items():
        if isinstance(source, Link):
            links[path] = source.target
            continue
        if isinstance(source, bytes):
            data = source
        else:
            st = os.stat(source)
            recheck(source, st)  # changed since the scan: scanned again, or refused
            data = Path(source).read_bytes()
            after = os.stat(source)
            if len(data) != st.st_size or (after.st_size, after.st_mtime_ns, after.st_ino) != (
                    st.st_size, st.st_mtime_ns, st.st_ino):
                check_files({path: data})  # changed while read: what is sent is scanned, not what was
            if st.st_mode & stat.S_IXUSR:
                executable.append(path)
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        paths[path] = digest
    return blobs, paths, links, executable


class WarmHandle(Hooks, HasOutputs):
    """One call on a warm worker: its output, its result, and stopping it (not the worker)."""

    kind = "warm call"

    def __init__(self, name: str, worker: str, pod: str, sock: socket.socket, key: bytes, *,
                 on_event: Optional[EventCallback] = None) -> None:
        self.name, self.worker, self.pod = name, worker, pod
        self._sock, self._key = sock, key
        self._emit = emitter(on_event)
        self._log = LogBuffer()
        self._done = threading.Event()
        self._exit: Optional[dict] = None
        self._tar = b""
        self._error: Optional[BaseException] = None
        self._stopped = False
        self._outputs_dir: Optional[str] = None
        self._thread = threading.Thread(target=self._read, name=f"fairing-warm-{name}", daemon=True)

    def start(self) -> "WarmHandle":
        self._thread.start()
        return self

    def _read(self) -> None:
        splitters = {b"O": LineSplitter(), b"E": LineSplitter()}
        try:
            while True:
                kind, body = protocol.recv(self._sock)
                if kind in splitters:
                    publish_lines(splitters[kind].feed(body), self._log, self._emit)
                elif kind == b"T":
                    self._tar = body
                elif kind == b"X":
                    answer = json.loads(body)
                    if not isinstance(answer, dict):
                        raise ValueError("the worker's last frame is not an exit record")
                    self._exit = answer
                    break
        except BaseException as exc:  # the connection broke (or was closed by delete)
            self._error = exc
        finally:
            for splitter in splitters.values():
                publish_lines(splitter.close(), self._log, self._emit)
            self._log.close()
            self._done.set()
            self._close()

    def _close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def logs(self, follow: bool = True):
        return self._log.follow(follow, done=self._done.is_set)

    def status(self) -> JobStatus:
        if not self._done.is_set():
            return JobStatus("Running")
        code = (self._exit or {}).get("code")
        return JobStatus("Succeeded" if code == 0 else "Failed", exit_code=code)

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        if not self._done.wait(timeout):
            self.delete()
            raise JobTimeoutError(f"The call {self.name} on the warm worker {self.worker} did not finish within "
                                  f"{timeout} s; it was stopped (the worker stays).", job=self.name,
                                  logs_tail=self._log.tail())
        return self.status()

    def result(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        tail = self._log.tail()
        if self._exit is None:
            if self._stopped:
                raise JobFailedError(f"The call {self.name} was stopped.", job=self.name, logs_tail=tail)
            raise JobFailedError(f"The warm worker {self.worker} (pod {self.pod}) went away during the call "
                                 f"{self.name}: {self._error}. Run again: a new worker starts.", job=self.name,
                                 logs_tail=tail)
        text = self._exit.get("result") or ""
        try:
            envelope = read_envelope(text, self._key, job=self.name) if isinstance(text, str) and text else None
        except ValueError:  # no envelope signed with this call's key: ignored, never unpickled
            envelope = None
        code = self._exit.get("code")
        if self._exit.get("error"):
            raise JobFailedError(f"The call {self.name} on the warm worker {self.worker} ended with code {code}, "
                                 f"but {self._exit['error']}.", job=self.name, exit_code=code, logs_tail=tail)
        if not isinstance(code, int) or isinstance(code, bool):
            raise JobFailedError(f"The warm worker {self.worker} (pod {self.pod}) answered the call {self.name} "
                                 f"with no exit code ({code!r}): not a fairing warm worker, or a corrupt one.",
                                 job=self.name, logs_tail=tail)
        if envelope and envelope.get("outputs") and self._outputs is None:
            from ..outputs import Outputs

            self._outputs = Outputs(self._extract())
        return outcome(envelope, job=self.name, exit_code=code, logs_tail=tail)

    def _extract(self) -> str:
        import io
        import tarfile

        self._outputs_dir = tempfile.mkdtemp(prefix="fairing-warm-outputs-")
        with tarfile.open(fileobj=io.BytesIO(self._tar)) as tar:
            tar.extractall(self._outputs_dir, filter="data")
        return self._outputs_dir

    def delete(self) -> None:
        """Stop the call if it runs (the worker stays) and remove its local files. Idempotent."""
        if not self._done.is_set():
            self._stopped = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._close()
            self._done.wait(5)
        if self._outputs_dir:
            shutil.rmtree(self._outputs_dir, ignore_errors=True)
            self._outputs_dir = None
        self.run_hooks("delete")
