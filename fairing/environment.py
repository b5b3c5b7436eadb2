"""The machine fairing runs on, read in one place: environment variables and well-known paths.

Everything else takes these values from here (or as explicit arguments), so a test
points fairing at another world with :func:`use`::

    with environment.use(environment.Environment.from_os({"KUBECONFIG": "/tmp/kc"})):
        ...

=====================  ==========================================================
``kubeconfig``          ``$KUBECONFIG`` (may list several files), else ``~/.kube/config``
``service_account``     ``/var/run/secrets/kubernetes.io/serviceaccount`` (in a pod): ``token``,
                        ``ca.crt``, ``namespace`` (the pod's, :attr:`Environment.pod_namespace`)
``api_server``          ``$KUBERNETES_SERVICE_HOST``:``$KUBERNETES_SERVICE_PORT`` (set in every pod)
``docker_host``         ``$DOCKER_HOST`` [None: the SDK's default socket]
``docker_config``       ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``
``cache_dir``           ``$XDG_CACHE_HOME/fairing``, else ``~/.cache/fairing``
``jobs_dir``            ``<cache_dir>/jobs``: job records (:mod:`fairing.jobs`), local jobs' files
``logs_dir``            ``<cache_dir>/logs``: logs kept with ``keep_logs=True``
``config_dir``          ``$XDG_CONFIG_HOME/fairing``, else ``~/.config/fairing`` (the user's settings)
``fairing_env``         the ``FAIRING_*`` variables (the settings among them: :mod:`fairing.settings`)
``in_job``              ``$FAIRING_RUNTIME`` set: this process is a job fairing started
=====================  ==========================================================

Values are read when asked for (``current()``), so a change of ``os.environ`` is seen
by the next call; nothing is cached at import.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional

__all__ = ["Environment", "current", "use", "DEFAULT_SERVICE_ACCOUNT_DIR", "DEFAULT_DOCKER_SOCKET"]

DEFAULT_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Environment:
    """A snapshot of what fairing reads from the machine. Make one with :meth:`from_os`
    (from ``os.environ``, or a mapping you give) or field by field in a test."""

    home: Path
    kubeconfig_env: Optional[str] = None
    service_account_dir: Path = DEFAULT_SERVICE_ACCOUNT_DIR
    docker_host: Optional[str] = None
    docker_config_dir: Optional[Path] = None
    xdg_cache_home: Optional[Path] = None
    runtime: Optional[str] = None
    #: ``DOCKER_*`` variables (host, TLS), handed to the Docker SDK as its environment.
    docker_env: Mapping[str, str] = field(default_factory=dict)
    xdg_config_home: Optional[Path] = None
    #: ``FAIRING_*`` variables; fairing.settings reads its settings from these.
    fairing_env: Mapping[str, str] = field(default_factory=dict)
    #: ``KUBERNETES_SERVICE_HOST`` and ``_PORT``: where a pod reaches the API server.
    kubernetes_service: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_os(cls, environ: Optional[Mapping[str, str]] = None, *,
                service_account_dir: Path = DEFAULT_SERVICE_ACCOUNT_DIR) -> "Environment":
        env = os.environ if environ is None else environ
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        return cls(
            home=home,
            kubeconfig_env=env.get("KUBECONFIG") or None,
            service_account_dir=service_account_dir,
            docker_host=env.get("DOCKER_HOST") or None,
            docker_config_dir=Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else None,
            xdg_cache_home=Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else None,
            runtime=env.get("FAIRING_RUNTIME") or None,
            docker_env={k: v for k, v in env.items() if k.startswith("DOCKER_")},
            xdg_config_home=Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None,
            fairing_env={k: v for k, v in env.items() if k.startswith("FAIRING_")},
            kubernetes_service={k: env[k] for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT") if k in env},
        )

    # -- Kubernetes ----------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The first kubeconfig file: the first of ``$KUBECONFIG``, else ``~/.kube/config``
        (:class:`fairing.kube.KubeClient` reads every file ``$KUBECONFIG`` lists, merged as
        kubectl merges them: :mod:`fairing.kube.kubeconfig`)."""
        if self.kubeconfig_env:
            return Path(self.kubeconfig_env.split(os.pathsep)[0])
        return self.home / ".kube" / "config"

    @property
    def in_cluster(self) -> bool:
        """True inside a pod with a mounted service-account token."""
        return (self.service_account_dir / "token").is_file()

    @property
    def pod_namespace(self) -> Optional[str]:
        """The service account's ``namespace`` file, as text (stripped; at most 256 bytes are
        read, so a longer file reads as longer than any name), or None outside a pod. It is
        not checked here: :func:`fairing.kube.client.pod_namespace` refuses what is not a
        namespace name. An unreadable file raises OSError."""
        path = self.service_account_dir / "namespace"
        if not path.exists():
            return None
        with path.open("rb") as fh:
            return fh.read(256).decode("ascii", "replace").strip()

    # -- Docker ----------------------------------------------------------------------------

    @property
    def docker_endpoint(self) -> str:
        """Where the Docker SDK connects when no ``base_url`` is given."""
        return self.docker_host or DEFAULT_DOCKER_SOCKET

    @property
    def docker_config(self) -> Path:
        """The Docker CLI's config file (``docker login`` writes credentials there)."""
        return (self.docker_config_dir or self.home / ".docker") / "config.json"

    def docker_sdk_environment(self) -> dict:
        """What ``docker.from_env(environment=...)`` reads: the ``DOCKER_*`` variables, with
        ``DOCKER_HOST`` always set (an empty mapping would make the SDK read ``os.environ``)."""
        return {**self.docker_env, "DOCKER_HOST": self.docker_endpoint}

    def docker_answers(self, base_url: Optional[str] = None) -> bool:
        """True when a Docker-compatible engine answers a ping (at ``base_url``, else ours)."""
        try:
            import docker
        except ImportError:
            return False
        try:
            client = (docker.DockerClient(base_url=base_url, timeout=3) if base_url
                      else docker.from_env(timeout=3, environment=self.docker_sdk_environment()))
            try:
                client.ping()
            finally:
                client.close()
        except Exception:  # no daemon, no permission: not an option here
            return False
        return True

    # -- fairing's own -------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        """Caches that outlive a process: base manifests, layers, local requirements."""
        return (self.xdg_cache_home or self.home / ".cache") / "fairing"

    @property
    def jobs_dir(self) -> Path:
        """Job records, and local jobs' logs, results and exit codes: ``<cache_dir>/jobs``."""
        return self.cache_dir / "jobs"

    @property
    def logs_dir(self) -> Path:
        """Logs kept with ``keep_logs=True``: ``<cache_dir>/logs``."""
        return self.cache_dir / "logs"

    @property
    def config_dir(self) -> Path:
        """The user's fairing configuration directory (XDG): the user settings file lives here."""
        return (self.xdg_config_home or self.home / ".config") / "fairing"

    @property
    def in_job(self) -> bool:
        """True inside a job fairing started (``FAIRING_RUNTIME`` is set)."""
        return bool(self.runtime)


_override: list[Environment] = []


def current() -> Environment:
    """The environment in force: the innermost :func:`use`, else the real one, read now."""
    return _override[-1] if _override else Environment.from_os()


@contextlib.contextmanager
def use(environment: Environment) -> Iterator[Environment]:
    """Make ``environment`` the one fairing reads, inside the ``with`` block."""
    _override.append(environment)
    try:
        yield environment
    finally:
        _override.remove(environment)
