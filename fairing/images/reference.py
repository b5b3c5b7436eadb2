"""Image references parsed once into a value: registry, repository, tag, digest.

Follows the grammar of the distribution project's ``reference`` package: the first
path component is a registry host when it contains ``.`` or ``:`` or is ``localhost``;
otherwise the registry is Docker Hub (``docker.io``), where one-component names live
under ``library/``. So ``python:3.11`` is ``docker.io/library/python:3.11``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from ..errors import ConfigurationError

__all__ = ["ImageRef", "DOCKER_HUB", "RegistryPrefix", "parse_registry"]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
#: Where Docker Hub's API actually lives.
_DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])"
    r"(?::[0-9]+)?$"
)

_EXAMPLE = "Examples of valid names: 'python:3.11', 'ghcr.io/org/app:v1', 'localhost:5000/team/app@sha256:<64 hex>'."


def _bad(name: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{name!r} is not a valid image reference: {why}. {_EXAMPLE}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference. ``str(ref)`` gives the canonical full name.

    ``tag`` and ``digest`` may both be set (``repo:tag@sha256:...``); the digest wins
    when pulling. A reference with neither means ``latest``.
    """

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    def __post_init__(self) -> None:
        name = f"{self.registry}/{self.repository}"
        if not self.registry or not _HOST.match(self.registry):
            raise _bad(name, f"the registry host {self.registry!r} is malformed")
        if not self.repository:
            raise _bad(name, "the repository path is empty")
        if len(name) > 255:
            raise _bad(name, "the name is longer than 255 characters")
        for comp in self.repository.split("/"):
            if not _COMPONENT.match(comp):
                raise _bad(
                    name,
                    f"the path component {comp!r} must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
                )
        if self.tag is not None and not _TAG.match(self.tag):
            raise _bad(f"{name}:{self.tag}", f"the tag {self.tag!r} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
        if self.digest is not None and not _DIGEST.match(self.digest):
            raise _bad(f"{name}@{self.digest}", f"the digest {self.digest!r} must look like 'sha256:<64 hex digits>'")

    @classmethod
    def parse(cls, name: str) -> "ImageRef":
        """Parse ``[registry/]repository[:tag][@digest]`` with Docker Hub defaults."""
        if isinstance(name, ImageRef):
            return name
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"An image reference must be a non-empty string, got {name!r}. {_EXAMPLE}")
        if name != name.strip() or any(c.isspace() for c in name):
            raise _bad(name, "it contains whitespace")
        rest, digest = name, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
            if not tag:
                raise _bad(name, "the tag after ':' is empty")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, rest
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = "library/" + repository
        if any(c.isupper() for c in repository):
            raise _bad(name, "the repository path must be lowercase")
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    # -- derived values -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the registry API: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's lives at registry-1.docker.io)."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    def with_tag(self, tag: str) -> "ImageRef":
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "ImageRef":
        """The same name and tag, pinned to ``digest``."""
        return replace(self, digest=digest)

    def with_repository(self, repository: str) -> "ImageRef":
        return replace(self, repository=repository, tag=None, digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


@dataclass(frozen=True)
class RegistryPrefix:
    """Where a builder pushes: a registry ``host`` and a repository ``prefix`` under it
    (``''``: none). See :func:`parse_registry`."""

    host: str
    prefix: str

    def join(self, name: str) -> str:
        """The repository path ``name`` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def ref(self, name: str) -> "ImageRef":
        """The reference of repository ``name`` under the prefix (validated)."""
        return ImageRef(self.host, self.join(name))


def parse_registry(registry: str) -> RegistryPrefix:
    """The one parser of a builder's ``registry`` option, ``host[:port][/path]``: a bare
    ``myuser`` (no dot, colon or ``localhost`` in its first part) is Docker Hub's namespace
    ``myuser``, as ``docker push myuser/x`` reads it. Raises ConfigurationError when it
    cannot name a registry."""
    if registry is not None and not isinstance(registry, str):
        raise ConfigurationError(f"registry must be one string, e.g. 'localhost:5000/team'; got "
                                 f"{type(registry).__name__} {registry!r}.")
    text = (registry or "").strip().rstrip("/")
    if not text:
        raise ConfigurationError("registry must name where to push, e.g. 'localhost:5000' or 'ghcr.io/my-org'.")
    probe = ImageRef.parse(f"{text}/x")  # validates "host[/path]"
    if probe.registry == DOCKER_HUB and not text.startswith(("docker.io", "index.docker.io")):
        return RegistryPrefix(DOCKER_HUB, text)  # 'myuser' means Docker Hub's namespace 'myuser'
    return RegistryPrefix(probe.registry, probe.repository[: -len("/x")] if probe.repository != "x" else "")
