"""Registry credentials: where they come from, read in one place.

A credentials provider is any callable ``provider(registry_host) -> Credential | None``.

* :class:`StaticCredentials` - a username and password given in code.
* :class:`DockerConfigCredentials` - what ``docker login`` stored: ``$DOCKER_CONFIG/config.json``
  (default ``~/.docker/config.json``; in a notebook pod, a Secret mounted at the directory
  ``DOCKER_CONFIG`` names), a regular UTF-8 file of at most 1 MiB whose links stay inside
  its directory (as a mounted Secret's do), looking in ``credHelpers`` (per registry), then
  ``auths`` (inline ``auth`` or ``username``/``password``/``identitytoken``), then
  ``credsStore``; helpers are run as ``docker-credential-<name> get`` with the registry on
  stdin, as the Docker CLI does.
* :func:`anonymous` - never any credentials.

:func:`resolve_credentials` is the one rule every builder, deployer and backend uses
to turn its options into a provider: ``username``/``password`` (both or neither), else
``credentials``, else :class:`DockerConfigCredentials`. :func:`lookup` asks a provider
with its failures explained; :func:`docker_auth_config` and :func:`docker_config_json`
are the two shapes credentials leave in (the Docker API's ``auth_config``, and a
``config.json`` for an image pull secret or Kaniko).

A :class:`Credential` never shows its secret in ``repr`` or ``str``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import ConfigurationError, RegistryAuthError

__all__ = [
    "Credential",
    "CredentialProvider",
    "StaticCredentials",
    "DockerConfigCredentials",
    "anonymous",
    "resolve_credentials",
    "lookup",
    "docker_auth_config",
    "docker_config_json",
]

#: No credentials file comes near this; a bigger one is not what DOCKER_CONFIG should name.
_MAX_CONFIG_BYTES = 1 << 20

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credential:
    """A username and a secret (password or token). ``identity_token`` is an OAuth2
    refresh token (``identitytoken`` in config.json) used instead of a password."""

    username: str
    password: str = field(repr=False)
    identity_token: bool = False

    def __str__(self) -> str:
        return f"Credential(username={self.username!r})"


CredentialProvider = Callable[[str], Optional[Credential]]


def anonymous(host: str) -> Optional[Credential]:
    return None


class StaticCredentials:
    """Fixed credentials, for every registry or only ``host``."""

    def __init__(self, username: str, password: str, *, host: Optional[str] = None) -> None:
        self._credential = Credential(username, password)
        self._host = host

    def __call__(self, host: str) -> Optional[Credential]:
        if self._host is None or _normalise_key(self._host) == _normalise_key(host):
            return self._credential
        return None

    def __repr__(self) -> str:
        return f"StaticCredentials(username={self._credential.username!r}, host={self._host!r})"


def _normalise_key(key: str) -> str:
    """config.json keys come as 'host', 'https://host', 'https://host/v1/'..."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    key = key.split("/", 1)[0]
    if key in _DOCKER_HUB_KEYS or key == "index.docker.io":
        return "docker.io"
    return key.lower()


class DockerConfigCredentials:
    """Credentials from a Docker CLI config file (``config_path`` or ``$DOCKER_CONFIG``)."""

    def __init__(self, config_path: "str | os.PathLike[str] | None" = None) -> None:
        self._config_path = Path(config_path) if config_path is not None else None

    @property
    def config_path(self) -> Path:
        """The file read: the one given, else the environment's at the time of the lookup."""
        if self._config_path is not None:
            return self._config_path
        from ..environment import current

        return current().docker_config

    def _load(self) -> dict:
        path = self.config_path
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            return {}
        except (OSError, RuntimeError) as exc:  # a loop of links, a directory we may not enter
            raise ConfigurationError(f"Cannot read the Docker config {path}: {exc}.") from None
        # A Secret mounted as a directory links config.json to ..data/config.json: links within
        # the directory are fine; one that leads out of it is not the file that was mounted there.
        home = path.parent.resolve()
        if home not in real.parents:
            raise ConfigurationError(
                f"The Docker config {path} is a link to a file outside {path.parent}, so fairing does not read it. "
                f"Put the config.json itself there (e.g. mount the Secret at {path.parent}), or point DOCKER_CONFIG "
                "at the directory that holds it.")
        try:
            # O_NONBLOCK: a FIFO put there would block the open itself; fstat then refuses it
            with os.fdopen(os.open(real, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise ConfigurationError(f"The Docker config {path} is not a regular file. Point DOCKER_CONFIG at "
                                             "a directory holding a config.json.")
                raw = fh.read(_MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigurationError(f"Cannot read the Docker config {path}: {exc.strerror}.") from None
        if len(raw) > _MAX_CONFIG_BYTES:
            raise ConfigurationError(
                f"The Docker config {path} is larger than {_MAX_CONFIG_BYTES >> 20} MiB, which no credentials file is. "
                "Check that DOCKER_CONFIG names the right directory, or replace the file (docker login).")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(f"The Docker config {path} is not UTF-8 text. Fix or remove it, or run 'docker "
                                     "login' again.") from None
        try:
            value = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"The Docker config {path} is not valid JSON ({exc.msg} at line {exc.lineno}). "
                "Fix or remove it, or run 'docker login' again."
            ) from None
        if not isinstance(value, dict):
            raise ConfigurationError(f"The Docker config {path} must hold a JSON object.")
        return value

    def __call__(self, host: str) -> Optional[Credential]:
        config = self._load()
        want = _normalise_key(host)
        helpers = config.get("credHelpers") or {}
        for key, helper in helpers.items():
            if _normalise_key(key) == want and helper:
                return _run_helper(helper, host)
        auths = config.get("auths") or {}
        for key, entry in auths.items():
            if _normalise_key(key) != want or not isinstance(entry, dict):
                continue
            cred = _from_auth_entry(entry, key, self.config_path)
            if cred is not None:
                return cred
        store = config.get("credsStore")
        if store:
            return _run_helper(store, host)
        return None

    def __repr__(self) -> str:
        return f"DockerConfigCredentials({str(self.config_path)!r})"


def resolve_credentials(*, username: Optional[str] = None, password: Optional[str] = None,
                        credentials: Optional[CredentialProvider] = None) -> CredentialProvider:
    """The credentials provider for a stage's options: ``username`` and ``password``
    (both or neither) for every registry, else ``credentials``, else what ``docker login``
    stored (:class:`DockerConfigCredentials`)."""
    if (username is None) != (password is None):
        raise ConfigurationError("Give both username= and password=, or neither (to use ~/.docker/config.json).")
    if username is not None:
        if credentials is not None:
            raise ConfigurationError("Give username=/password= or credentials=, not both.")
        return StaticCredentials(username, password)  # type: ignore[arg-type]
    if credentials is not None and not callable(credentials):
        raise ConfigurationError(
            f"credentials must be a provider, a callable host -> Credential | None (e.g. StaticCredentials(user, "
            f"password) from fairing.images.auth), not {type(credentials).__name__}."
        )
    return credentials if credentials is not None else DockerConfigCredentials()


def lookup(provider: CredentialProvider, host: str, *, error: type = RegistryAuthError) -> Optional[Credential]:
    """``provider(host)``, with a failure of the provider itself raised as ``error`` (whose
    message names the host and the exception type, never a secret)."""
    from ..errors import FairingError

    try:
        return provider(host)
    except FairingError:
        raise
    except Exception as exc:
        raise error(f"Looking up credentials for {host} failed: {type(exc).__name__}. Check "
                    "~/.docker/config.json and its credential helpers, or the credentials= you gave.") from None


def docker_auth_config(credential: Optional[Credential]) -> Optional[dict]:
    """The Docker Engine API's ``auth_config`` (``X-Registry-Auth``) for ``credential``."""
    if credential is None:
        return None
    if credential.identity_token:
        return {"identitytoken": credential.password}
    return {"username": credential.username, "password": credential.password}


def docker_config_json(provider: CredentialProvider, hosts: "Iterable[str]", *,
                       error: type = RegistryAuthError) -> Optional[str]:
    """A Docker ``config.json`` with an ``auths`` entry for each of ``hosts`` the provider
    knows (None when it knows none): the content of an image pull secret or of Kaniko's
    ``/kaniko/.docker/config.json``. A failing provider raises ``error``."""
    auths = {}
    for host in sorted(set(hosts)):
        credential = lookup(provider, host, error=error)
        if credential is not None:
            token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
            auths[host] = {"auth": token}
    return json.dumps({"auths": auths}) if auths else None


def _from_auth_entry(entry: dict, key: str, path: Path) -> Optional[Credential]:
    if entry.get("identitytoken"):
        return Credential(entry.get("username") or "<token>", entry["identitytoken"], identity_token=True)
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"]).decode()
            username, sep, password = decoded.partition(":")
        except Exception:
            sep = ""
        if not sep:
            raise ConfigurationError(
                f"The 'auth' entry for {key!r} in {path} is not base64 of 'user:password'. "
                f"Run 'docker login {key}' again."
            )
        return Credential(username, password)
    if entry.get("username") and entry.get("password") is not None:
        return Credential(entry["username"], entry["password"])
    return None


#: A credential helper's name: 'docker-credential-<name>' is looked up on PATH; a '/' in it
#: would make that a path, so a config could run any program.
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _run_helper(helper: str, host: str) -> Optional[Credential]:
    if not isinstance(helper, str) or not _HELPER_NAME.fullmatch(helper):
        raise ConfigurationError(
            f"The Docker config names the credential helper {helper!r} for {host}, which is not a helper's name "
            "(letters, digits, '.', '_', '+', '-'; the program is docker-credential-<name> on PATH). Fix the "
            "credHelpers/credsStore entry, or remove it and run 'docker login' again.")
    program = f"docker-credential-{helper}"
    if shutil.which(program) is None:
        raise RegistryAuthError(
            f"The Docker config names the credential helper {helper!r} for {host}, but {program!r} is not on PATH. "
            f"Install it, or remove it from ~/.docker/config.json and run 'docker login {host}'."
        )
    # the Docker CLI asks helpers about Docker Hub with its legacy key
    server = "https://index.docker.io/v1/" if _normalise_key(host) == "docker.io" else host
    try:
        proc = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(f"The credential helper {program} did not answer within 60 s for {host}.") from None
    if proc.returncode != 0:
        # helpers print 'credentials not found in native keychain' when they have none
        if "not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise RegistryAuthError(
            f"The credential helper {program} failed for {host} (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[:300]}"
        )
    try:
        value = json.loads(proc.stdout)
        username, secret = value["Username"], value["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryAuthError(
            f"The credential helper {program} answered for {host} with something that is not "
            "{'Username': ..., 'Secret': ...} JSON."
        ) from None
    if username == "<token>":
        return Credential(username, secret, identity_token=True)
    return Credential(username, secret)
