"""A small client for the OCI distribution API, on ``requests``.

Why our own code: python-dxf and oras-py were evaluated first. python-dxf stores blobs
and aliases but does not read ``credsStore``/``credHelpers``, pick a platform from an
index, or emit progress; oras-py targets OCI artifacts (annotations, artifact types),
has no image-config model, and neither retries a cut upload. What the append builder
needs is a few dozen lines of HTTP over a maintained client (``requests``), so this
package implements exactly that part of the spec, one concern a module:

* :mod:`.transport` - HTTPS, verified with the system or a given CA bundle; plain HTTP
  only for loopback hosts or hosts the caller marks insecure (HTTPS is tried first, as
  Docker does);
* :mod:`.tokens` - anonymous, ``Basic`` and ``Bearer`` challenges (token requested with
  the repository scopes, cached per host and repository); credentials come from an
  injected provider (:mod:`fairing.images.auth`), never appear in errors or logs;
* :mod:`.upload` - a blob's upload: monolithic (``POST`` + ``PUT``) or chunked
  (``PATCH``), a cut upload resumed or restarted;
* :mod:`.client` - :class:`RegistryClient`: requests with retries and typed errors;
  manifests (``HEAD``/``GET``/``PUT``, Docker schema 2 and OCI media types); blobs
  (``HEAD`` to skip what exists, cross-repository mount, upload, download).

Every failure is a :class:`~fairing.errors.RegistryError` subclass.
"""

from ..auth import DockerConfigCredentials, StaticCredentials
from .client import RegistryClient
from .tokens import parse_challenge
from .transport import redact
from .upload import BlobSource

__all__ = ["RegistryClient", "StaticCredentials", "DockerConfigCredentials", "BlobSource", "parse_challenge",
           "redact"]
