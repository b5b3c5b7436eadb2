"""In-cluster builder: a Kaniko pod builds the Dockerfile and pushes, with no Docker daemon.

The context (a generated Dockerfile that installs requirements before copying code, or
the user's own) reaches the pod through a context store (:mod:`.context_stores`:
stdin stream, S3, GCS). Push credentials come from a temporary ``dockerconfigjson``
Secret mounted as ``/kaniko/.docker/config.json``. The image digest comes back through
the pod's termination message (``--digest-file``). Package indexes with credentials
reach pip as a pip configuration in another temporary Secret, mounted under ``/kaniko``
(which Kaniko never snapshots), so they enter no layer and no history. Build logs stream
as LogLine events.
The pod, the secrets and the uploaded context are deleted after success and after
failure. When the registry already has the image for this exact context, nothing is
built.

The pod is run with :func:`fairing.kube.run_pod`. Every failure of the build is a
:class:`~fairing.errors.BuildError`: what Kubernetes said about the pod (an executor
image that cannot be pulled, no node for it, a timeout) is a
:class:`~fairing.errors.BuildPodError` with that diagnosis as ``__cause__``.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from .._options import checks_options
from ..artifacts import RegistryImage
from ..context import BuildContext
from ..errors import BuildError, BuildPodError, ConfigurationError, DeployError, JobError
from ..events import EventCallback, Stage, emitter, failed_on_error
from ..images import ImageRef
from ..images.reference import parse_registry
from ..kube import KubeClient, Pod, pod_manifest, registry_secret, run_pod
from ..kube.secrets import DOCKER_CONFIG_KEY, write_secret
from .context_stores import ContextStore, StagedContext, StreamContext
from .naming import repository_name
from .dockerfile import DEFAULT_PIP_ARGS, docker_build_context, pip_config, render_dockerfile

__all__ = ["ClusterBuilder"]

_PIP_DIR = "/kaniko/fairing-pip"  # under /kaniko: never part of an image Kaniko builds

_TAIL = 30


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
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
    * ``kube`` / ``namespace`` / ``kubeconfig`` / ``context`` - where the pod runs [kubeconfig's].
    * ``timeout`` - seconds for the whole build [1800].
    * ``pip_args`` - extra ``pip install`` options for the requirements step, e.g. a
      private index: ``("--index-url", "https://pypi.internal/simple")`` [none].
    """

    produces = RegistryImage

    def __init__(self, base_image: str, registry: str, *, repository: Optional[str] = None,
                 kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2",
                 context_store: Optional[ContextStore] = None, dockerfile: Optional[str] = None,
                 cache: bool = True, cache_repo: Optional[str] = None, insecure: "bool | Iterable[str]" = False,
                 username: Optional[str] = None, password: Optional[str] = None, credentials: Any = None,
                 kube: Optional[KubeClient] = None, namespace: Optional[str] = None,
                 kubeconfig: Optional[str] = None, context: Optional[str] = None, timeout: float = 1800, registry_client: Any = None,
                 pip_args: Iterable[str] = ()) -> None:
        if not registry or not base_image and not dockerfile:
            raise ConfigurationError("ClusterBuilder needs a registry and a base image (or your own Dockerfile).")
        self.base_image = base_image
        parse_registry(registry)  # the same registry strings as the other builders, checked now
        self.registry = registry.strip().rstrip("/")
        self.repository = repository
        self.kaniko_image = kaniko_image
        self.context_store = context_store or StreamContext()
        self.dockerfile = dockerfile
        self.cache = cache
        self.cache_repo = cache_repo or f"{self.registry}/cache"
        self.insecure = insecure
        from ..images.auth import resolve_credentials

        self._credentials = resolve_credentials(username=username, password=password, credentials=credentials)
        self._kube = kube
        self._kube_options = {"namespace": namespace, "kubeconfig": kubeconfig, "context": context}
        self.timeout = timeout
        self._registry_client = registry_client
        self.pip_args = tuple(pip_args)

    def required_access(self) -> list:
        """What the build pod needs in the namespace (the permission pre-flight)."""
        from ..kube.access import Access

        return [*(Access(v, "pods") for v in ("create", "get", "list", "watch", "delete")), Access("get", "pods/log"),
                Access("create", "pods/attach"), *(Access(v, "secrets") for v in ("create", "delete"))]  # never replaced

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

    def _plain_http(self, target: ImageRef) -> bool:
        """Kaniko pushes to an insecure registry over plain HTTP (--insecure-registry)."""
        return target.registry in self._insecure_hosts(target)

    def _already_built(self, target: ImageRef):
        """The registry's descriptor of ``target``, or None (then it is built)."""
        if self._registry_client is not None:
            return self._registry_client.head_manifest(target)
        from ..images.registry import RegistryClient

        with RegistryClient(credentials=self._credentials, insecure=self.insecure) as client:
            return client.head_manifest(target)

    def _pod(self, name: str, target: ImageRef, staged: StagedContext, secret: Optional[str], insecure: list[str],
             pip_secret: Optional[str] = None):
        args = ["--dockerfile=Dockerfile", f"--context={staged.kaniko_context}", f"--destination={target}",
                "--digest-file=/dev/termination-log", "--verbosity=info", "--log-format=text"]
        if self.cache:
            args += ["--cache=true", f"--cache-repo={self.cache_repo}"]
        args += [f"--insecure-registry={h}" for h in insecure]
        container = {"name": "kaniko", "image": self.kaniko_image, "args": args, "env": list(staged.env),
                     "volumeMounts": list(staged.volume_mounts), "terminationMessagePolicy": "File"}
        volumes = list(staged.volumes)
        if secret:
            volumes.append({"name": "docker-config", "secret": {
                "secretName": secret, "items": [{"key": DOCKER_CONFIG_KEY, "path": "config.json"}]}})
            container["volumeMounts"].append({"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})
        if pip_secret:
            volumes.append({"name": "fairing-pip", "secret": {"secretName": pip_secret}})
            container["volumeMounts"].append({"name": "fairing-pip", "mountPath": _PIP_DIR, "readOnly": True})
        if staged.stdin is not None:
            container.update(stdin=True, stdinOnce=True)
        return pod_manifest(name, [container], volumes=volumes)

    # -- the build -------------------------------------------------------------------------

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> RegistryImage:
        emit = emitter(on_event)
        dockerfile = self.dockerfile or render_dockerfile(context, self.base_image,
                                                          pip_args=(*DEFAULT_PIP_ARGS, *self.pip_args),
                                                          pip_config_file=f"{_PIP_DIR}/pip.conf")
        docker_context = docker_build_context(context, dockerfile)
        key = docker_context.digest().split(":", 1)[1]  # Dockerfile (with its FROM), requirements and code
        repository = self.repository or repository_name(context)
        target = ImageRef.parse(f"{self.registry}/{repository}:fairing-{key[:20]}")
        existing = self._already_built(target)
        if existing is not None:
            emit(Stage("kaniko", "skipped", f"{target} already built"))
            return RegistryImage.pin(target, existing.digest, plain_http=self._plain_http(target))
        name = f"fairing-build-{uuid.uuid4().hex[:10]}"
        fd, archive_name = tempfile.mkstemp(prefix="fairing-context-", suffix=".tar.gz")
        archive = Path(archive_name)
        cleanups = []
        handle: Optional[Pod] = None
        emit(Stage("kaniko", "started", str(target)))
        try:
            with os.fdopen(fd, "wb") as fh:
                docker_context.write_tar_gz(fh)
            emit(Stage("upload-context", "started", type(self.context_store).__name__))
            with failed_on_error(emit, "upload-context"):
                staged = self.context_store.stage(archive, name=name, kube=self.kube)
            cleanups.append(staged.cleanup)
            emit(Stage("upload-context", "finished", staged.kaniko_context))
            bases = [ImageRef.parse(self.base_image)] if self.base_image else []
            delete_secret = registry_secret(self.kube, f"{name}-docker", self._credentials,
                                            {target.registry, *(b.registry for b in bases)})
            if delete_secret:
                cleanups.append(delete_secret)
            secret = f"{name}-docker" if delete_secret else None
            pip_secret = None
            if context.requirements and context.pip_indexes.has_credentials and not self.dockerfile:
                pip_secret = f"{name}-pip"
                cleanups.append(write_secret(self.kube, pip_secret, {"pip.conf": pip_config(context)}))
            handle = run_pod(self.kube, self._pod(name, target, staged, secret, self._insecure_hosts(target, *bases),
                                                  pip_secret), on_event=on_event)
            deadline = time.monotonic() + self.timeout
            if staged.stdin is not None:
                handle.send_stdin(staged.stdin, container="kaniko", timeout=max(1.0, deadline - time.monotonic()))
            status = handle.wait(max(1.0, deadline - time.monotonic()))
            _, terminated = handle.terminated()
            if status.phase != "Succeeded":
                raise BuildError(
                    f"The Kaniko build of {target} failed (exit code {terminated.get('exitCode')}). "
                    f"Its last lines:\n{handle.tail()}\nFix the failing step of the Dockerfile and build again."
                )
            digest = (terminated.get("message") or "").strip()
            if not digest.startswith("sha256:"):
                raise BuildError(f"Kaniko finished but reported no digest for {target}; its log:\n{handle.tail()}")
            result = RegistryImage.pin(target, digest, plain_http=self._plain_http(target))
            emit(Stage("kaniko", "finished", str(result)))
            return result
        except (DeployError, JobError) as exc:  # what Kubernetes said about the pod, as a build failure
            emit(Stage("kaniko", "failed", type(exc).__name__))
            raise BuildPodError(f"The Kaniko build of {target} in namespace {self.kube.namespace!r} could not run: "
                                f"{exc}") from exc
        except BaseException as exc:
            emit(Stage("kaniko", "failed", type(exc).__name__))
            raise
        finally:
            if handle is not None:
                try:
                    handle.delete()
                except Exception as exc:  # report, but keep cleaning the rest
                    emit(Stage("cleanup", "failed", f"{type(exc).__name__}: {exc}"))
            for cleanup in reversed(cleanups):
                try:
                    cleanup()
                except Exception as exc:  # report, but keep cleaning the rest
                    emit(Stage("cleanup", "failed", f"{type(exc).__name__}: {exc}"))
            archive.unlink(missing_ok=True)
