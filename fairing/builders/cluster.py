"""In-cluster builder: a Kaniko pod builds the Dockerfile and pushes, with no Docker daemon.

The context (a generated Dockerfile that installs requirements before copying code, or
the user's own) reaches the pod through a context store (:mod:`.context_stores`:
stdin stream, S3, GCS). Push credentials come from a temporary Secret mounted as
``/kaniko/.docker/config.json``. The image digest comes back through the pod's
termination message (``--digest-file``). Build logs stream as LogLine events. The pod,
the secrets and the uploaded context are deleted after success and after failure.
When the registry already has the image for this exact context, nothing is built.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from ..context import BuildContext
from ..errors import BuildError, ConfigurationError
from ..events import EventCallback, Stage, emitter
from ..images import ImageRef
from ..kube import KubeClient, raise_for_api_error
from .context_stores import ContextStore, StagedContext, StreamContext
from .naming import repository_name
from .dockerfile import DEFAULT_PIP_ARGS, docker_build_context, render_dockerfile

__all__ = ["ClusterBuilder"]

_TAIL = 30


class ClusterBuilder:
    """Build ``context`` on ``base_image`` with Kaniko in the cluster and push to ``registry``.

    * ``kaniko_image`` - the executor image [``gcr.io/kaniko-project/executor:v1.23.2``].
    * ``context_store`` - :class:`StreamContext` [default], ``S3Context`` or ``GCSContext``.
    * ``dockerfile`` - the text of your own Dockerfile [generated]; its context is the
      BuildContext's files plus ``requirements.txt``.
    * ``cache`` - Kaniko layer caching in ``cache_repo`` [``<registry>/cache``].
    * ``insecure`` - True, or registry hosts to reach over plain HTTP [none].
    * ``username``/``password`` or ``credentials`` - push credentials
      [``~/.docker/config.json`` through fairing's credential lookup].
    * ``kube`` / ``namespace`` - where the pod runs [kubeconfig's].
    * ``timeout`` - seconds for the whole build [1800].
    * ``pip_args`` - extra ``pip install`` options for the requirements step, e.g. a
      private index: ``("--index-url", "https://pypi.internal/simple")`` [none].
    """

    def __init__(self, base_image: str, registry: str, *, repository: Optional[str] = None,
                 kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2",
                 context_store: Optional[ContextStore] = None, dockerfile: Optional[str] = None,
                 cache: bool = True, cache_repo: Optional[str] = None, insecure: "bool | Iterable[str]" = False,
                 username: Optional[str] = None, password: Optional[str] = None, credentials: Any = None,
                 kube: Optional[KubeClient] = None, namespace: Optional[str] = None,
                 kubeconfig: Optional[str] = None, timeout: float = 1800, registry_client: Any = None,
                 pip_args: Iterable[str] = ()) -> None:
        if not registry or not base_image and not dockerfile:
            raise ConfigurationError("ClusterBuilder needs a registry and a base image (or your own Dockerfile).")
        self.base_image = base_image
        self.registry = registry.rstrip("/")
        self.repository = repository
        self.kaniko_image = kaniko_image
        self.context_store = context_store or StreamContext()
        self.dockerfile = dockerfile
        self.cache = cache
        self.cache_repo = cache_repo or f"{self.registry}/cache"
        self.insecure = insecure
        self._static = (username, password) if username is not None else None
        self._credentials = credentials
        self._kube = kube
        self._kube_options = {"namespace": namespace, "kubeconfig": kubeconfig}
        self.timeout = timeout
        self._registry_client = registry_client
        self.pip_args = tuple(pip_args)

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            self._kube = KubeClient(**self._kube_options)
        return self._kube

    # -- pieces ----------------------------------------------------------------------------

    def _insecure_hosts(self, *refs: ImageRef) -> list[str]:
        if self.insecure is True:
            return sorted({r.registry for r in refs})
        return sorted(set(self.insecure or ()))

    def _client(self, target: ImageRef):
        if self._registry_client is not None:
            return self._registry_client
        from ..images.registry import RegistryClient, StaticCredentials

        creds = StaticCredentials(*self._static) if self._static else self._credentials
        return RegistryClient(credentials=creds, insecure=self.insecure)

    def _credential_for(self, host: str):
        if self._static:
            from ..images.auth import Credential

            return Credential(*self._static)
        from ..images.auth import DockerConfigCredentials

        provider = self._credentials or DockerConfigCredentials()
        return provider(host)

    def _docker_config_secret(self, name: str, hosts: Iterable[str]):
        auths = {}
        for host in sorted(set(hosts)):
            cred = self._credential_for(host)
            if cred is not None:
                token = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                auths[host] = {"auth": token}
        if not auths:
            return None
        kube = self.kube
        body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "fairing"}},
                "type": "Opaque",
                "data": {"config.json": base64.b64encode(json.dumps({"auths": auths}).encode()).decode()}}
        kube.core.create_namespaced_secret(kube.namespace, body)
        return name

    def _pod(self, name: str, target: ImageRef, staged: StagedContext, secret: Optional[str], insecure: list[str]):
        args = ["--dockerfile=Dockerfile", f"--context={staged.kaniko_context}", f"--destination={target}",
                "--digest-file=/dev/termination-log", "--verbosity=info", "--log-format=text"]
        if self.cache:
            args += ["--cache=true", f"--cache-repo={self.cache_repo}"]
        args += [f"--insecure-registry={h}" for h in insecure]
        container = {"name": "kaniko", "image": self.kaniko_image, "args": args, "env": list(staged.env),
                     "volumeMounts": list(staged.volume_mounts), "terminationMessagePolicy": "File"}
        volumes = list(staged.volumes)
        if secret:
            volumes.append({"name": "docker-config", "secret": {"secretName": secret}})
            container["volumeMounts"].append({"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})
        if staged.stdin is not None:
            container.update(stdin=True, stdinOnce=True)
        from ..deployers.kubernetes import JOB_LABEL

        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "fairing", JOB_LABEL: name},
                             "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes}}

    def _stream_stdin(self, handle, path: Path, deadline: float) -> None:
        """Wait until the container runs, then write the archive to its stdin and close it."""
        from kubernetes.stream import stream

        if not handle.wait_running(deadline):
            return  # it ended before reading anything: its log says why
        kube = self.kube
        # stream() swaps the request method of the ApiClient it is given while it runs: give it
        # its own, or the log and watch threads' calls would go over the websocket too.
        core = kube.k8s.client.CoreV1Api(kube.k8s.client.ApiClient(kube.api_client.configuration))
        ws = stream(core.connect_get_namespaced_pod_attach, handle.name, kube.namespace, container="kaniko",
                    stdin=True, stdout=False, stderr=False, tty=False, _preload_content=False)
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    ws.write_stdin(chunk)
        finally:
            ws.close()

    # -- the build -------------------------------------------------------------------------

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> ImageRef:
        emit = emitter(on_event)
        dockerfile = self.dockerfile or render_dockerfile(context, self.base_image,
                                                          pip_args=(*DEFAULT_PIP_ARGS, *self.pip_args))
        docker_context = docker_build_context(context, dockerfile)
        key = docker_context.digest().split(":", 1)[1]  # Dockerfile (with its FROM), requirements and code
        repository = self.repository or repository_name(context)
        target = ImageRef.parse(f"{self.registry}/{repository}:fairing-{key[:20]}")
        client = self._client(target)
        existing = client.head_manifest(target)
        if existing is not None:
            emit(Stage("build", "skipped", f"{target} already built"))
            return target.with_digest(existing.digest)
        name = f"fairing-build-{uuid.uuid4().hex[:10]}"
        fd, archive_name = tempfile.mkstemp(prefix="fairing-context-", suffix=".tar.gz")
        archive = Path(archive_name)
        cleanups = []
        handle = None
        try:
            with os.fdopen(fd, "wb") as fh:
                docker_context.write_tar_gz(fh)
            emit(Stage("upload-context", "started", type(self.context_store).__name__))
            staged = self.context_store.stage(archive, name=name, kube=self.kube)
            cleanups.append(staged.cleanup)
            emit(Stage("upload-context", "finished", staged.kaniko_context))
            hosts = {target.registry}
            base_host = ImageRef.parse(self.base_image).registry if self.base_image else None
            if base_host:
                hosts.add(base_host)
            secret = self._docker_config_secret(f"{name}-docker", hosts)
            if secret:
                cleanups.append(lambda: self.kube.core.delete_namespaced_secret(secret, self.kube.namespace))
            insecure = self._insecure_hosts(target, *( [ImageRef.parse(self.base_image)] if self.base_image else []))
            handle = self._run(name, target, staged, secret, insecure, on_event)
            deadline = time.monotonic() + self.timeout
            if staged.stdin is not None:
                self._stream_stdin(handle, staged.stdin, deadline)
            status = handle.wait(max(1.0, deadline - time.monotonic()))
            _, terminated = handle._result_container()
            if status.phase != "Succeeded":
                raise BuildError(
                    f"The Kaniko build of {target} failed (exit code {terminated.get('exitCode')}). "
                    f"Its last lines:\n{handle._tail()}\nFix the failing step of the Dockerfile and build again."
                )
            digest = (terminated.get("message") or "").strip()
            if not digest.startswith("sha256:"):
                raise BuildError(f"Kaniko finished but reported no digest for {target}; its log:\n{handle._tail()}")
            emit(Stage("push", "finished", str(target.with_digest(digest))))
            return target.with_digest(digest)
        finally:
            if handle is not None:
                handle.delete()
            for cleanup in reversed(cleanups):
                try:
                    cleanup()
                except Exception as exc:  # report, but keep cleaning the rest
                    emit(Stage("cleanup", "failed", f"{type(exc).__name__}: {exc}"))
            archive.unlink(missing_ok=True)

    def _run(self, name, target, staged, secret, insecure, on_event):
        from ..deployers.kubernetes import PodHandle

        kube = self.kube
        try:
            kube.core.create_namespaced_pod(kube.namespace, self._pod(name, target, staged, secret, insecure))
        except kube.k8s.client.ApiException as exc:
            raise_for_api_error(exc, action=f"create the Kaniko pod {name}", kind="Pod", namespace=kube.namespace)
        return PodHandle(kube, name, kube.namespace, on_event=on_event).start()
