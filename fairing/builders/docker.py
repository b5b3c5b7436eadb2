"""DockerBuilder: a BuildContext becomes an image through a Docker-compatible engine.

The Dockerfile is generated (:mod:`fairing.builders.dockerfile`: requirements installed
before the code is copied, so the dependency layer stays cached), or the user gives
their own Dockerfile for the environment (apt packages, compiled dependencies): it is
built first, from its own directory, and the generated steps go on top of it, so the
job still runs with fairing's runtime.

The build streams as events: a :class:`~fairing.events.Progress` per Dockerfile step
(``task="docker build"``, ``unit="step"``, the instruction as ``note``) and the steps'
output as :class:`~fairing.events.LogLine` with ``source="build"``. With a registry the
image is pushed and the result is an :class:`~fairing.images.ImageRef` pinned by the
pushed manifest's digest (a :class:`~fairing.artifacts.RegistryImage`); without one (or
with ``push=False``) it is a :class:`~fairing.artifacts.DockerImage` naming the image by
its ID, which the Docker deployer runs.

Podman works through the same code: give ``base_url`` its Docker-compatible socket.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .._options import checks_options
from .._docker import engine_error, is_engine_error, make_client
from ..artifacts import DockerImage, RegistryImage
from ..context import BuildContext
from .naming import repository_name
from ..errors import (BuildError, ConfigurationError, FairingError, RegistryAuthError, RegistryError,
                      RegistryUnreachableError)
from ..events import EventCallback, LogLine, Progress, Stage, emitter, failed_on_error
from .dockerfile import DEFAULT_PIP_ARGS, docker_build_context, render_dockerfile

__all__ = ["DockerBuilder"]

#: Image labels set by this builder.
LABEL_BASE = "dev.fairing.base"
_TAIL = 40
_STEP = re.compile(r"^(?:Step|STEP) (\d+)/(\d+) ?: (.*)$")  # Docker's "Step 1/8 : ", Podman's "STEP 1/8: "
_IMAGE_LINE = re.compile(r"^\s*-{2,3}> (?:Using cache )?([0-9a-f]{12,64})\s*$")  # " ---> id" / "--> id"
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_AUTH_WORDS = ("unauthorized", "authentication required", "denied", "no basic auth credentials",
               "insufficient_scope", "authorization failed", "403 forbidden", "401 unauthorized")
_UNREACHABLE_WORDS = ("connection refused", "no such host", "i/o timeout", "dial tcp", "network is unreachable",
                      "server gave http response to https client", "tls: ", "x509:", "connection reset")


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
def _check_dockerfile_context(root: Path, dockerfile: str) -> None:
    """The secret scan over what the Docker SDK sends of your Dockerfile's directory: its files,
    less what ``.dockerignore`` leaves out (read as the SDK reads it), links left as links."""
    from docker.utils.build import exclude_paths

    from ..preprocessors.secrets import check_files

    ignore = root / ".dockerignore"
    patterns = []
    if ignore.is_file():
        patterns = [line.strip() for line in ignore.read_text(errors="replace").splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    files = {rel: root / rel for rel in exclude_paths(str(root), patterns, dockerfile=dockerfile)}
    check_files({rel: path for rel, path in files.items() if path.is_file() and not path.is_symlink()})


class DockerBuilder:
    """Build ``context`` with a Docker-compatible engine; push when a registry is given.

    Arguments (defaults in brackets):

    * ``base_image`` - the image to build on, e.g. ``"python:3.11-slim"`` or
      ``"localhost:5000/team/python:3.11"``; pulled by the engine when it lacks it.
      Not needed with ``dockerfile``.
    * ``registry`` - where to push, ``"host[:port][/path]"`` [none: build only and return
      a :class:`~fairing.artifacts.DockerImage`].
    * ``dockerfile`` - the path of your own Dockerfile for the environment; it is built
      first, from ``dockerfile_context`` [its directory], then the requirements, code, env
      and entrypoint go on top.
    * ``repository`` - the image name under ``registry`` [``fairing-<script stem>`` or
      ``fairing-job``]. The tag is derived from the content: ``fairing-<20 hex>``.
    * ``push`` - push when a registry is given [True].
    * ``base_url`` - the engine's API, e.g. ``"unix:///run/podman/podman.sock"``
      [``$DOCKER_HOST``, else ``unix:///var/run/docker.sock``].
    * ``username``/``password`` - push credentials, or ``credentials`` - a provider
      from :mod:`fairing.images.auth` [:class:`~fairing.images.auth.DockerConfigCredentials`:
      what ``docker login`` stored in ``~/.docker/config.json``, with ``credHelpers`` and
      ``credsStore``; the same lookup as the append builder]. They reach the engine in the
      push request's ``X-Registry-Auth`` header only: never in the image, a log or an error.
    * ``pull`` - always pull a newer base image [False: use the engine's copy if it has one].
    * ``build_args`` - ``ARG`` values for your Dockerfile [none].
    * ``pip_args`` - options of the requirements' ``pip install``
      [:data:`fairing.builders.dockerfile.DEFAULT_PIP_ARGS`].
    * ``timeout`` - seconds a build or push may stay silent [3600].
    * ``insecure``/``ca_bundle`` - how fairing itself reaches the registry when the engine
      does not report the pushed digest (Podman) and fairing asks the registry:
      ``True`` or hosts allowed over plain HTTP [loopback only], PEM CAs [the system's].
    * ``client`` - a ``docker.DockerClient`` to use instead of making one.
    """

    produces = (RegistryImage, DockerImage)  # narrowed per instance by registry= and push=

    def __init__(
        self,
        base_image: Any = None,
        registry: Optional[str] = None,
        *,
        dockerfile: "str | os.PathLike[str] | None" = None,
        dockerfile_context: "str | os.PathLike[str] | None" = None,
        repository: Optional[str] = None,
        push: bool = True,
        base_url: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        credentials: Optional[Callable[[str], Any]] = None,
        pull: bool = False,
        build_args: Optional[Mapping[str, str]] = None,
        pip_args: Sequence[str] = DEFAULT_PIP_ARGS,
        timeout: int = 3600,
        insecure: "bool | Iterable[str]" = False,
        ca_bundle: Optional[str] = None,
        client: Any = None,
    ) -> None:
        from ..images import ImageRef
        from ..images.reference import parse_registry

        if base_image is None and dockerfile is None:
            raise ConfigurationError(
                "DockerBuilder needs base_image= (e.g. 'python:3.11-slim') or dockerfile= (the path of your "
                "Dockerfile)."
            )
        self.base_image = str(base_image) if base_image is not None else None
        if dockerfile is not None:
            path = Path(dockerfile)
            if not path.is_file():
                raise ConfigurationError(f"The Dockerfile {str(path)!r} does not exist. Check the path.")
            self.dockerfile: Optional[Path] = path.resolve()
            ctx = Path(dockerfile_context) if dockerfile_context is not None else path.resolve().parent
            if not ctx.is_dir():
                raise ConfigurationError(f"dockerfile_context {str(ctx)!r} is not a directory.")
            self.dockerfile_context: Optional[Path] = ctx.resolve()
        else:
            self.dockerfile = self.dockerfile_context = None
        self._host = self._prefix = None
        self.registry = None
        if registry:
            where = parse_registry(registry)  # 'myuser' means Docker Hub's namespace 'myuser'
            self._host, self._prefix = where.host, where.prefix
            self.registry = registry.strip().rstrip("/")
        if repository is not None:
            ImageRef.parse(f"{self._host or 'localhost'}/{self._join(repository)}")  # validates
        self.repository = repository
        self.push = push
        self.base_url = base_url
        from ..images.auth import resolve_credentials

        self._credentials = resolve_credentials(username=username, password=password, credentials=credentials)
        self.produces = RegistryImage if self.registry and push else DockerImage
        self.pull = pull
        self.build_args = dict(build_args or {})
        self.pip_args = tuple(pip_args)
        self.timeout = timeout
        self.insecure = insecure
        self.ca_bundle = ca_bundle
        self._client = client

    def __repr__(self) -> str:
        return (f"DockerBuilder(base_image={self.base_image!r}, registry={self.registry!r}, "
                f"dockerfile={str(self.dockerfile) if self.dockerfile else None!r})")

    # -- helpers ------------------------------------------------------------------------

    def _join(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def _docker(self) -> Any:
        if self._client is None:
            self._client = make_client(self.base_url, timeout=self.timeout, purpose="Building an image with Docker")
        return self._client

    def target_repository(self, context: BuildContext) -> str:
        """The image name (without tag) the build is tagged and pushed as."""
        name = self._join(self.repository or repository_name(context))
        return f"{self._host}/{name}" if self._host else name

    # -- build --------------------------------------------------------------------------

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> "RegistryImage | DockerImage":
        emit = emitter(on_event)
        client = self._docker()
        try:
            base = self._base(client, emit)
            labels = {LABEL_BASE: self.base_image or str(self.dockerfile)}
            text = render_dockerfile(context, base, pip_args=self.pip_args, labels=labels)
            repository = self.target_repository(context)
            with tempfile.TemporaryFile(prefix="fairing-docker-context-") as fh:
                # the tar holds the Dockerfile (so the base) and every file: its hash names the build
                hasher = _HashingWriter(fh)
                docker_build_context(context, text).write_tar(hasher)  # type: ignore[arg-type]
                fh.seek(0)
                tag = "fairing-" + hasher.hexdigest()[:20]
                emit(Stage("docker build", "started", f"{repository}:{tag}"))
                try:
                    image_id = self._run_build(client, emit, what="the image", tag=f"{repository}:{tag}",
                                               fileobj=fh)
                except BuildError as exc:
                    emit(Stage("docker build", "failed", type(exc).__name__))
                    if not _cache_raced(exc):
                        raise
                    # a cached step's image was removed while this build used it (docker image rm,
                    # prune, another session): build once more, which redoes the missing steps
                    emit(Stage("docker build", "started", f"{repository}:{tag} (again: its cache was removed)"))
                    fh.seek(0)
                    with failed_on_error(emit, "docker build"):
                        image_id = self._run_build(client, emit, what="the image", tag=f"{repository}:{tag}",
                                                   fileobj=fh)
            emit(Stage("docker build", "finished", image_id))
            if not self.registry or not self.push:
                return DockerImage(image_id, f"{repository}:{tag}")
            return self._push(client, emit, repository, tag)
        except FairingError:
            raise
        except Exception as exc:  # the engine went away mid-build (requests' ConnectionError...)
            if is_engine_error(exc):
                raise engine_error(exc, self.base_url, "building an image") from None
            raise

    def _base(self, client: Any, emit: EventCallback) -> str:
        """The FROM of the generated Dockerfile: ``base_image``, or the user's Dockerfile's image ID."""
        if self.dockerfile is None:
            return self.base_image  # type: ignore[return-value]
        assert self.dockerfile_context is not None
        emit(Stage("docker build", "started", f"your Dockerfile {self.dockerfile}"))
        with failed_on_error(emit, "docker build"):
            try:
                rel = os.path.relpath(self.dockerfile, self.dockerfile_context)
            except ValueError:
                rel = str(self.dockerfile)
            _check_dockerfile_context(self.dockerfile_context, rel)
            image_id = self._run_build(client, emit, what=f"your Dockerfile {self.dockerfile}", tag=None,
                                       path=str(self.dockerfile_context), dockerfile=rel)
        emit(Stage("docker build", "finished", f"your Dockerfile: {image_id}"))
        return image_id

    def _run_build(self, client: Any, emit: EventCallback, *, what: str, tag: Optional[str],
                   fileobj: Any = None, path: Optional[str] = None, dockerfile: Optional[str] = None) -> str:
        """Run one build (of the tar in ``fileobj``, or of the directory ``path``); its image ID."""
        docker_errors = _docker_errors()
        kwargs: dict = dict(tag=tag, rm=True, forcerm=True, pull=self.pull, decode=True, timeout=self.timeout,
                            buildargs=self.build_args or None)
        if fileobj is not None:
            kwargs.update(fileobj=fileobj, custom_context=True)
        else:
            kwargs.update(path=path, dockerfile=dockerfile)
        step, total, instruction = 0, 0, ""
        step_lines: deque = deque(maxlen=_TAIL)
        image_id = None
        last_image = None  # the image of the last step that succeeded
        partial = ""
        try:
            for chunk in client.api.build(**kwargs):
                if "stream" in chunk:
                    partial += chunk["stream"]
                    *lines, partial = _ANSI.sub("", partial).split("\n")
                    for line in lines:
                        m = _STEP.match(line)
                        if m:
                            step, total, instruction = int(m.group(1)), int(m.group(2)), m.group(3)
                            step_lines.clear()
                            emit(Progress("docker build", step, total, unit="step", note=instruction))
                        elif re.match(r"^\s*-{2,3}> Using cache", line):
                            emit(Progress("docker build", step, total, unit="step", note="cached"))
                            image = _IMAGE_LINE.match(line)
                            last_image = image.group(1) if image else last_image
                        elif re.match(r"^\s*-{2,3}> ", line):
                            image = _IMAGE_LINE.match(line)
                            last_image = image.group(1) if image else last_image
                        elif line.startswith(("Removing intermediate container", "Successfully ", "COMMIT ")) \
                                or _HEX_ID.match(line):
                            continue
                        elif line.strip():
                            step_lines.append(line)
                            emit(LogLine(line, source="build"))
                elif "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                elif "status" in chunk:  # pulling the base image
                    if chunk.get("id") and chunk["status"] in ("Pull complete", "Already exists"):
                        emit(Progress(f"pull {chunk['id']}", 1, 1, unit="layer", note=chunk["status"].lower()))
                if "error" in chunk or "errorDetail" in chunk:
                    message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error") or ""
                    if partial.strip():
                        step_lines.append(partial)
                    raise _step_failed(what, step, total, instruction, message, list(step_lines), last_image)
        except docker_errors.APIError as exc:
            raise BuildError(
                f"The Docker engine refused to build {what}: {exc.explanation or exc}. "
                "Check the Dockerfile's syntax and the base image name."
            ) from None
        if image_id is None:
            raise BuildError(f"The Docker engine built {what} but did not report an image ID. Try again; if it "
                             "persists, check the engine's log.")
        return image_id

    # -- push ---------------------------------------------------------------------------

    def _registry_digest(self, ref: Any) -> Optional[str]:
        """The digest the registry serves for ``ref``'s tag, read with fairing's registry client."""
        from ..images.registry import RegistryClient

        with RegistryClient(credentials=self._credentials, insecure=self.insecure, ca_bundle=self.ca_bundle) as client:
            found = client.head_manifest(ref)
            if found is not None and found.digest:
                return found.digest
            return client.get_manifest(ref)[2]

    def _push(self, client: Any, emit: EventCallback, repository: str, tag: str) -> RegistryImage:
        from ..images import ImageRef

        docker_errors = _docker_errors()
        ref = ImageRef.parse(f"{repository}:{tag}")
        from ..images.auth import docker_auth_config, lookup

        auth = docker_auth_config(lookup(self._credentials, ref.registry))
        emit(Stage("push", "started", str(ref)))
        with failed_on_error(emit, "push"):
            digest = None
            pushed = skipped = 0
            try:
                for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                    if "error" in chunk or "errorDetail" in chunk:
                        message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error") or ""
                        raise _push_failed(ref, message)
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = aux["Digest"]
                    status = chunk.get("status", "")
                    layer = chunk.get("id")
                    if status == "Pushing" and layer:
                        detail = chunk.get("progressDetail") or {}
                        if detail.get("current") is not None:
                            emit(Progress(f"push {layer}", detail["current"], detail.get("total")))
                    elif status == "Pushed" and layer:
                        pushed += 1
                        emit(Progress(f"push {layer}", 1, 1, unit="layer", note="uploaded"))
                    elif status == "Layer already exists" and layer:
                        skipped += 1
                        emit(Progress(f"push {layer}", 1, 1, unit="layer", note="skipped"))
            except docker_errors.APIError as exc:
                raise _push_failed(ref, str(exc.explanation or exc)) from None
            if not digest:  # Podman's API does not report it (and its RepoDigests differ): ask the registry
                digest = self._registry_digest(ref)
            if not digest:
                raise RegistryError(f"Pushing {ref} finished without the registry's digest. Try again.")
        emit(Stage("push", "finished", f"{pushed} layers uploaded, {skipped} already there"))
        return RegistryImage.pin(ref, digest, plain_http=self._plain_http(ref))

    def _plain_http(self, ref: Any) -> bool:
        """Whether the registry of ``ref`` speaks plain HTTP. The engine found out by itself (its
        insecure-registries); fairing asks once, and only for a registry marked insecure here."""
        from ..errors import FairingError
        from ..images.registry import RegistryClient

        if not (self.insecure is True or ref.registry in set(self.insecure or ())):
            return False
        try:
            with RegistryClient(credentials=self._credentials, insecure=self.insecure,
                                ca_bundle=self.ca_bundle) as client:
                client.head_manifest(ref)
                return client.transport.scheme.get(ref.registry) == "http"
        except FairingError:  # the engine pushed it; what fairing cannot reach, a job pushes to over HTTPS
            return False


def _cache_raced(error: BuildError) -> bool:
    text = str(error)
    return "unknown parent image ID" in text or "failed to set parent" in text


class _HashingWriter:
    """A write-only file that hashes what passes through it to ``fh``."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self._fh.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _docker_errors() -> Any:
    from .._docker import docker_module

    return docker_module("Building an image with Docker").errors


def _step_failed(what: str, step: int, total: int, instruction: str, message: str, lines: list,
                 last_image: Optional[str]) -> BuildError:
    where = f"step {step}/{total} ({instruction})" if step else "its start"
    tail = "\n".join(lines[-_TAIL:]).rstrip()
    if "pip install" in instruction:
        hint = ("Check the requirements' names and versions, and that the engine's containers can reach the "
                "package index (behind a TLS-intercepting proxy, put its CA in the base image and set PIP_CERT).")
    elif step <= 1 and ("not found" in message or "pull access denied" in message or "manifest" in message
                        or "repository does not exist" in message):
        hint = ("The base image could not be pulled: check its name, push it to a registry this engine can "
                "reach, or build it locally first (docker build / docker load).")
    else:
        hint = "Fix that step (run the same Dockerfile with 'docker build' to iterate), then submit again."
    out = f"\n--- output of that step ---\n{tail}" if tail else ""
    if last_image and step > 1:
        hint += f" To look around in the state before that step: docker run --rm -it --entrypoint sh {last_image}"
    error = BuildError(f"Building {what} failed at {where}: {message.strip()}{out}\n{hint}")
    #: The image ID of the last step that succeeded (the engine keeps it as build cache), or None.
    error.cache_image = last_image  # type: ignore[attr-defined]
    return error


def _push_failed(ref: Any, message: str) -> RegistryError:
    low = message.lower()
    if any(word in low for word in _AUTH_WORDS):
        return RegistryAuthError(
            f"The registry {ref.registry} refused the push of {ref.name}: {message.strip()}. Log in with "
            f"'docker login {ref.registry}', pass username=/password= or credentials= to DockerBuilder, and "
            "check that the account may push to this repository.",
            code="DENIED",
        )
    if any(word in low for word in _UNREACHABLE_WORDS):
        return RegistryUnreachableError(
            f"The Docker engine could not reach the registry {ref.registry} to push {ref.name}: {message.strip()}. "
            "Check the address and that the registry runs; a plain-HTTP registry that is not on localhost must be "
            "listed in 'insecure-registries' of the engine's daemon.json."
        )
    return RegistryError(f"Pushing {ref.name} to {ref.registry} failed: {message.strip()}")
