"""DockerDeployer: runs an image from any builder as a container of a local Docker engine.

The container runs the image's own entrypoint and env, as a cluster would, plus
``FAIRING_RUNTIME=1``, ``FAIRING_RESULT_FILE`` (a file in the container's ``/tmp``,
read back with the archive API once the container has stopped, so it works with a
remote engine or Podman too) and the deployer's ``env``. Its logs stream as
:class:`~fairing.events.LogLine` events and through :meth:`DockerHandle.logs`.

Resources map to Docker's options: ``cpu`` (cores, ``2``, ``0.5`` or ``"500m"``) to
``NanoCpus``; ``memory`` (bytes, ``"512Mi"``, ``"2Gi"``, ``"1G"``: Kubernetes' units, as on
every backend, see :mod:`fairing.resources`) to ``Memory``; ``gpus`` (a count or ``"all"``) to a ``DeviceRequest`` for GPUs (needs
the NVIDIA Container Toolkit).

The container is removed by :meth:`DockerHandle.delete` (which ``run()`` and the
decorator call on success, failure and timeout), on Ctrl-C in :meth:`~DockerHandle.wait`,
when a timeout stops it, and at interpreter exit for handles still alive.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time
import uuid
import weakref
from typing import Any, Iterator, Optional

from .._options import checks_options
from .._docker import engine_error, is_engine_error, make_client
from ..artifacts import DockerImage, RegistryImage
from ..errors import (ConfigurationError, DeployError, ImagePullError, JobFailedError,
                      JobTimeoutError)
from ..events import EventCallback, Stage, emitter
from ..handle import JobStatus, LineSplitter, LogBuffer, publish_lines
from ..resources import Resources, check_gpus
from ..results import outcome, read_envelope
from ..runtime.result import KEY_FILE_ENV, new_key

__all__ = ["DockerDeployer", "DockerHandle", "parse_cpu", "parse_memory"]

#: Where the job writes its result inside the container.
RESULT_FILE = "/tmp/fairing-result"
KEY_FILE = "/tmp/fairing-result-key"
#: Labels on every container fairing starts (find them with ``docker ps -a --filter label=dev.fairing.job``).
LABEL_JOB = "dev.fairing.job"
_TAIL = 30
def parse_cpu(cpu: Any) -> int:
    """Cores (``2``, ``0.5``, ``"1.5"``, ``"500m"``; Kubernetes' rules) as Docker's NanoCpus."""
    return int(round(Resources.of(cpu=cpu).cores * 1e9))  # type: ignore[operator]


def parse_memory(memory: Any) -> int:
    """Bytes from an int or a Kubernetes quantity (``"512Mi"``, ``"2Gi"``, ``"1G"``): see
    :mod:`fairing.resources` (Docker's own ``"512m"`` is refused there, naming ``512Mi``)."""
    return Resources.of(memory=memory).memory_bytes  # type: ignore[return-value]


def _container_name(name: str) -> str:
    clean = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-.") or "job"
    return clean if clean.startswith("fairing-") else f"fairing-{clean}"


def _remove(client: Any, container_id: str) -> None:
    """Kill and remove a container, ignoring 'already gone' (used by the finalizer too)."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except Exception:  # gone already, or the engine is gone: nothing more to do
        pass


class DockerHandle:
    """A job running as a container. See :class:`fairing.handle.Handle`.

    ``container_id`` names the container (``docker logs <id>`` works while it exists).
    """

    #: The job's result key (see :mod:`fairing.runtime.result`); set by the deployer.
    result_key: bytes = b""

    def __init__(self, client: Any, container: Any, *, name: str, emit: EventCallback,
                 base_url: Optional[str], memory: Optional[int]) -> None:
        self.name = name
        self.container_id: str = container.id
        self._client = client
        self._container = container
        self._emit = emit
        self._base_url = base_url
        self._memory = memory
        self._finalizer = weakref.finalize(self, _remove, client, container.id)
        self._log = LogBuffer()
        self._stream: Any = None
        self._final: Optional[JobStatus] = None
        self._oom = False
        self._result_text: Optional[str] = None
        self._deleted = False
        self._reader = threading.Thread(target=self._read, name=f"fairing-logs-{name}", daemon=True)
        self._reader.start()

    # -- logs ---------------------------------------------------------------------------

    def _read(self) -> None:
        splitter = LineSplitter()
        try:
            self._stream = self._container.logs(stream=True, follow=True, stdout=True, stderr=True)
            for chunk in self._stream:
                publish_lines(splitter.feed(chunk), self._log, self._emit)
            publish_lines(splitter.close(), self._log, self._emit)
        except Exception:  # the container was removed under us, or the engine stopped: the log ends here
            pass
        finally:
            self._log.close()

    def logs(self, follow: bool = True) -> Iterator[str]:
        return self._log.follow(follow)

    def _tail(self) -> str:
        return self._log.tail(_TAIL)

    # -- state --------------------------------------------------------------------------

    def _state(self) -> dict:
        try:
            return self._client.api.inspect_container(self.container_id)["State"]
        except Exception as exc:
            if is_engine_error(exc):
                raise engine_error(exc, self._base_url, f"watching the job {self.name}") from None
            errors = _docker_errors()
            if isinstance(exc, errors.NotFound):
                raise DeployError(
                    f"The container of the job {self.name} ({self.container_id[:12]}) no longer exists: it was "
                    "removed outside fairing (docker rm, docker system prune)."
                ) from None
            raise

    def status(self) -> JobStatus:
        if self._final is not None:
            return self._final
        if self._deleted:
            return JobStatus("Failed", None, "deleted")
        state = self._state()
        status = state.get("Status")
        if status == "created":
            return JobStatus("Pending")
        if status in ("running", "paused", "restarting", "removing"):
            return JobStatus("Running")
        code = state.get("ExitCode")
        self._oom = bool(state.get("OOMKilled"))
        message = "out of memory" if self._oom else (state.get("Error") or "")
        return JobStatus("Succeeded" if code == 0 else "Failed", code, message)

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        if self._final is not None:
            return self._final
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        try:
            while True:
                status = self.status()
                if status.done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop_for_timeout(timeout)  # raises
                time.sleep(pause)
                pause = min(pause * 1.5, 0.5)
            self._reader.join(10)
            self._collect_result()
            self._final = status
            return status
        except KeyboardInterrupt:
            self.delete()
            raise

    def _stop_for_timeout(self, timeout: Optional[float]) -> None:
        try:
            self._client.api.kill(self.container_id)
        except Exception:
            pass
        self._reader.join(5)
        tail = self._tail()
        self.delete()
        raise JobTimeoutError(
            f"The job {self.name} did not finish within {timeout:g} s; its container was stopped and removed. "
            "Raise the timeout, or make the job do less.",
            job=self.name, logs_tail=tail,
        )

    def _collect_result(self) -> None:
        if self._result_text is not None:
            return
        try:
            stream, _ = self._client.api.get_archive(self.container_id, RESULT_FILE)
            data = b"".join(stream)
        except Exception:  # no result file: the job died before writing one
            self._result_text = ""
            return
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            extracted = tar.extractfile(member) if member is not None else None
            self._result_text = extracted.read().decode("utf-8", "replace") if extracted else ""

    def result(self, timeout: Optional[float] = None) -> Any:
        status = self.wait(timeout)
        try:
            envelope = read_envelope(self._result_text or "", self.result_key, job=self.name)
        except ValueError:
            envelope = None
        if envelope is None and self._oom:
            limit = f" of {self._memory / 2**20:.0f} MiB" if self._memory else ""
            raise JobFailedError(
                f"The job {self.name} was killed for using more than its memory limit{limit}. "
                "Raise memory= on the DockerDeployer, or make the job use less.",
                job=self.name, exit_code=status.exit_code, logs_tail=self._tail(),
            )
        return outcome(envelope, job=self.name, exit_code=status.exit_code, logs_tail=self._tail())

    def delete(self) -> None:
        """Stop the container if it runs and remove it. Idempotent."""
        self._deleted = True
        self._finalizer()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        self._reader.join(5)

    def __repr__(self) -> str:
        return f"<DockerHandle {self.name} container={self.container_id[:12]}>"


def _docker_errors() -> Any:
    from .._docker import docker_module

    return docker_module("Running a job with Docker").errors


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class DockerDeployer:
    """Runs images as containers of a local Docker (or Podman) engine.

    Arguments (defaults in brackets): ``cpu`` - cores [no limit]; ``memory`` - bytes or a
    quantity such as ``"2Gi"`` [no limit]; ``gpus`` - a number of GPUs or ``"all"`` [none]
    (checked as :mod:`fairing.resources` says, the meaning they have on every backend);
    ``env`` - added to each job's environment [none]; ``base_url`` - the engine's API
    [``$DOCKER_HOST``, else ``unix:///var/run/docker.sock``]; ``pull`` - pull the image
    even when the engine has it [False: only when missing]; ``credentials`` - a provider
    from :mod:`fairing.images.auth` for pulling [what ``docker login`` stored, read by
    :class:`~fairing.images.auth.DockerConfigCredentials`]; ``client`` - a
    ``docker.DockerClient`` to use instead of making one.
    """

    accepts = (RegistryImage, DockerImage)

    def __init__(self, *, cpu: Any = None, memory: Any = None, gpus: Any = None, env: Optional[dict] = None,
                 base_url: Optional[str] = None, pull: bool = False, credentials: Any = None,
                 client: Any = None) -> None:
        self.nano_cpus = parse_cpu(cpu) if cpu is not None else None
        self.memory = parse_memory(memory) if memory is not None else None
        self.gpus = gpus if gpus == "all" else (check_gpus(gpus) or None)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.base_url = base_url
        self.pull = pull
        from ..images.auth import resolve_credentials

        self._credentials = resolve_credentials(credentials=credentials)
        self._client = client

    def __repr__(self) -> str:
        return f"DockerDeployer(nano_cpus={self.nano_cpus}, memory={self.memory}, gpus={self.gpus!r})"

    def _docker(self) -> Any:
        if self._client is None:
            self._client = make_client(self.base_url, purpose="Running a job with Docker")
        return self._client

    def host_config(self) -> dict:
        """The resource options given to ``containers.create``."""
        options: dict = {}
        if self.nano_cpus is not None:
            options["nano_cpus"] = self.nano_cpus
        if self.memory is not None:
            options["mem_limit"] = self.memory
            options["memswap_limit"] = self.memory  # no swap beyond the limit, as on a cluster
        if self.gpus is not None:
            from .._docker import docker_module

            types = docker_module("Running a job with Docker").types
            options["device_requests"] = [
                types.DeviceRequest(count=-1 if self.gpus == "all" else int(self.gpus), capabilities=[["gpu"]])
            ]
        return options

    def deploy(self, image: Any, *, name: Optional[str] = None,
               on_event: Optional[EventCallback] = None) -> DockerHandle:
        emit = emitter(on_event)
        client = self._docker()
        name = name or f"job-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        reference = self._ensure_image(client, image, emit)
        errors = _docker_errors()
        result_key = new_key()
        env = {**self.env, "FAIRING_RUNTIME": "1", "FAIRING_RESULT_FILE": RESULT_FILE, KEY_FILE_ENV: KEY_FILE}
        container = None
        try:
            container = client.containers.create(
                reference, name=_container_name(name), environment=env, detach=True,
                labels={LABEL_JOB: name}, **self.host_config(),
            )
            # The key goes in as a file of the container's own layer (removed with it), not as
            # an env var that `docker inspect` and /proc/1/environ would show.
            container.put_archive("/tmp", _key_archive(result_key))
            container.start()
        except BaseException as exc:
            if container is not None:
                _remove(client, container.id)
            if isinstance(exc, errors.APIError):
                raise self._start_failed(name, reference, exc) from None
            if isinstance(exc, Exception) and is_engine_error(exc):
                raise engine_error(exc, self.base_url, f"starting the job {name}") from None
            raise
        emit(Stage("run", "started", f"container {container.short_id} ({_container_name(name)})"))
        handle = DockerHandle(client, container, name=name, emit=emit, base_url=self.base_url, memory=self.memory)
        handle.result_key = result_key
        return handle

    def _start_failed(self, name: str, reference: str, exc: Any) -> DeployError:
        text = str(exc.explanation or exc)
        if "device driver" in text or "gpu" in text.lower():
            return DeployError(
                f"The job {name} could not start because the engine has no GPU support ({text}). Install the "
                "NVIDIA driver and the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker), "
                "restart the engine, or drop gpus=."
            )
        if "Conflict" in text or "already in use" in text:
            return DeployError(f"A container named {_container_name(name)} already exists ({text}). "
                               "Choose another job name, or remove the old one (docker rm -f).")
        return DeployError(f"The Docker engine could not start the job {name} from {reference}: {text}")

    def _auth(self, name: str) -> Optional[dict]:
        """``auth_config`` for pulling ``name`` (registry/repository), from the credentials provider."""
        from ..images import ImageRef
        from ..images.auth import docker_auth_config, lookup

        return docker_auth_config(lookup(self._credentials, ImageRef.parse(name).registry, error=ImagePullError))

    def _ensure_image(self, client: Any, image: Any, emit: EventCallback) -> str:
        """The reference to run, pulling it when the engine lacks it (or when ``pull``)."""
        from ..images import ImageRef

        if isinstance(image, DockerImage):
            return image.id
        if isinstance(image, ImageRef):  # a RegistryImage, or a reference you give
            name = f"{image.registry}/{image.repository}"
            tag = image.digest or image.tag or "latest"
            reference = f"{name}@{image.digest}" if image.digest else f"{name}:{tag}"
        elif isinstance(image, str) and image:
            reference = image
            name, tag = _split(image)
        else:
            raise ConfigurationError(
                f"The Docker deployer runs an image reference (a RegistryImage or DockerImage from a builder, or "
                f"a string such as 'python:3.11'), not {type(image).__name__}. The local builder's output runs "
                "with the local deployer only."
            )
        errors = _docker_errors()
        if not self.pull:
            try:
                client.images.get(reference)
                return reference
            except errors.ImageNotFound:
                pass
            except errors.APIError:
                pass
        emit(Stage("pull", "started", reference))
        try:
            auth = self._auth(name)
            for chunk in client.api.pull(name, tag=tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk or "errorDetail" in chunk:
                    message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise ImagePullError(_pull_hint(reference, message))
        except errors.APIError as exc:
            raise ImagePullError(_pull_hint(reference, str(exc.explanation or exc))) from None
        emit(Stage("pull", "finished", reference))
        return reference


def _key_archive(key: bytes) -> bytes:
    """A tar holding the result key as ``KEY_FILE`` (the container is the job's alone)."""
    data = key.hex().encode("ascii")
    info = tarfile.TarInfo(KEY_FILE.rsplit("/", 1)[1])
    info.size, info.mode, info.mtime = len(data), 0o444, int(time.time())  # the image may run as any user
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _split(reference: str) -> tuple[str, str]:
    if "@" in reference:
        name, digest = reference.split("@", 1)
        return name, digest
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = reference.rsplit(":", 1)
        return name, tag
    return reference, "latest"


def _pull_hint(reference: str, message: str) -> str:
    low = (message or "").lower()
    if "unauthorized" in low or "denied" in low or "authentication" in low:
        fix = "Log in to the registry with 'docker login', or push the image where this engine may pull it."
    elif "not found" in low or "unknown" in low:
        fix = "Check the name, and that the build pushed it (or build without a registry for a local image)."
    else:
        fix = "Check that the registry is reachable from the Docker engine."
    return f"The Docker engine could not pull {reference}: {message}. {fix}"
