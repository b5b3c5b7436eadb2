"""RegistryClient: the distribution API (manifests and blobs) over one transport and one authenticator.

Each request goes through :meth:`RegistryClient.request`: the ``Authorization`` header
(:mod:`.tokens`), the scheme and TLS choice (:mod:`.transport`), retries of 5xx and
lost connections, and registry errors turned into :class:`~fairing.errors.RegistryError`
subclasses that carry the registry's code (``MANIFEST_UNKNOWN``, ``DENIED``...). Blob
uploads are :class:`.upload.BlobUpload`; :meth:`RegistryClient.mount_blob` asks for a
cross-repository mount alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterable, Optional

from ...errors import RegistryError, RegistryUnreachableError
from ..auth import CredentialProvider, resolve_credentials
from ..manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Descriptor
from ..reference import ImageRef
from .tokens import Authenticator
from .transport import ConnectionFailed, Transport, redact, short_reason
from .errors import RETRY_STATUS, error_for
from .upload import BlobSource, BlobUpload, ProgressCallback

__all__ = ["RegistryClient", "MANIFEST_ACCEPT"]

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))


class RegistryClient:
    """Talks to one or more registries.

    Options (defaults in brackets):

    * ``credentials`` - a provider ``host -> Credential | None``
      [:class:`~fairing.images.auth.DockerConfigCredentials`, i.e. what ``docker login`` stored].
    * ``insecure`` - ``True`` or a collection of hosts that may be reached over plain HTTP
      (or HTTPS without certificate checks) [``False``: only loopback hosts may fall back to HTTP].
    * ``ca_bundle`` - a PEM file of CAs to trust for HTTPS [the system's].
    * ``session`` - a ``requests.Session`` to send through [a new one].
    * ``chunk_size`` - blobs larger than this are uploaded in ``PATCH`` chunks of this size
      [64 MiB]; smaller ones in one ``PUT``.
    * ``retries`` - how many times a failed upload or a 5xx/connection error is retried [3].
    * ``timeout`` - (connect, read) seconds [(10, 300)].
    * ``backoff`` - seconds before the first retry, growing linearly [0.5].

    Several threads may send through one client at once (the append builder uploads blobs
    side by side): a token challenge answered by one thread serves the others.
    """

    def __init__(
        self,
        *,
        credentials: Optional[CredentialProvider] = None,
        insecure: "bool | Iterable[str]" = False,
        ca_bundle: "str | Path | None" = None,
        session: Any = None,
        chunk_size: int = 64 << 20,
        retries: int = 3,
        timeout: tuple[float, float] = (10.0, 300.0),
        backoff: float = 0.5,
    ) -> None:
        self.transport = Transport(insecure=insecure, ca_bundle=ca_bundle, session=session, timeout=timeout)
        self.auth = Authenticator(resolve_credentials(credentials=credentials), self.transport)
        self._auth_lock = threading.Lock()
        self.chunk_size = chunk_size
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        host: str,
        path_or_url: str,
        *,
        repository: Optional[str] = None,
        actions: str = "pull",
        headers: Optional[dict] = None,
        data: Any = None,
        params: Optional[dict] = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        allow: tuple[int, ...] = (),
        what: str = "",
        retry: bool = True,
    ):
        """Send one request with auth and retries; statuses in ``ok`` or ``allow`` are returned,
        anything else raises. ``data`` must be bytes (or None) when ``retry`` is true."""
        transport = self.transport
        url = path_or_url if "://" in path_or_url else transport.base_url(host) + path_or_url
        attempt = 0
        authed_again = False
        while True:
            hdrs = {**self.auth.header(host, repository), **(headers or {})}
            try:
                resp = transport.send_first(method, url, host=host, headers=hdrs, data=data, stream=stream,
                                            params=params)
                url = transport.base_url(host) + path_or_url if "://" not in path_or_url else url
            except ConnectionFailed as exc:
                if retry and attempt < self.retries:
                    attempt += 1
                    log.info("%s %s: %s; retry %d of %d", method, redact(url), short_reason(exc.cause), attempt,
                             self.retries)
                    time.sleep(self.backoff * attempt)
                    continue
                verb = "Lost the connection to" if host in transport.scheme else "Cannot connect to"
                raise RegistryUnreachableError(
                    f"{verb} the registry at {host} while {what or method + ' ' + redact(url)}: "
                    f"{short_reason(exc.cause)}. Check the address, and that the registry is running and reachable "
                    "from here."
                ) from None
            if resp.status_code == 401 and not authed_again:
                authed_again = True
                log.info("%s %s: 401; answering the registry's authentication challenge", method, redact(url))
                with self._auth_lock:  # blobs upload side by side: one token request for all of them
                    if self.auth.header(host, repository) == {k: v for k, v in hdrs.items() if k == "Authorization"}:
                        self.auth.authorize(host, repository, actions, resp)
                resp.close()
                continue
            if resp.status_code in RETRY_STATUS and retry and attempt < self.retries:
                attempt += 1
                log.info("%s %s: HTTP %d; retry %d of %d", method, redact(url), resp.status_code, attempt,
                         self.retries)
                resp.close()
                time.sleep(self.backoff * attempt)
                continue
            if resp.status_code in ok or resp.status_code in allow:
                return resp
            raise self.error_for(resp, host, repository, what or f"{method} {redact(url)}")

    def error_for(self, resp, host: str, repository: Optional[str], what: str) -> RegistryError:
        """The RegistryError that explains an unexpected answer."""
        return error_for(resp, host, repository, what, credential=self.auth.credential(host))

    # -- manifests ------------------------------------------------------------------------

    def head_manifest(self, ref: ImageRef, *, actions: str = "pull") -> Optional[Descriptor]:
        """The descriptor of ``ref``'s manifest, or None when the registry does not have it.
        ``actions="pull,push"`` asks a token service for push rights at once (saves a
        round trip when a push follows)."""
        resp = self.request(
            "HEAD", ref.api_host, f"/v2/{ref.repository}/manifests/{ref.reference}", repository=ref.repository,
            actions=actions, headers={"Accept": MANIFEST_ACCEPT}, allow=(404,), what=f"looking up {ref}",
        )
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            return None  # some registries omit it on HEAD; the caller falls back to GET
        return Descriptor(
            media_type=resp.headers.get("Content-Type", "").split(";")[0],
            digest=digest,
            size=int(resp.headers.get("Content-Length") or 0),
        )

    def get_manifest(self, ref: ImageRef) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of ``ref``'s manifest or index."""
        resp = self.request(
            "GET", ref.api_host, f"/v2/{ref.repository}/manifests/{ref.reference}", repository=ref.repository,
            headers={"Accept": MANIFEST_ACCEPT}, allow=(404,), what=f"fetching the manifest of {ref}",
        )
        if resp.status_code == 404:
            raise RegistryError(
                f"The image {ref} does not exist in the registry (MANIFEST_UNKNOWN). Check the name and tag, "
                "or push it first.", status=404, code="MANIFEST_UNKNOWN",
            )
        data = resp.content
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ref.digest and ref.digest != digest:
            raise RegistryError(f"The registry sent a manifest for {ref} whose digest is {digest}: refusing it.")
        media_type = resp.headers.get("Content-Type", "").split(";")[0]
        try:
            media_type = json.loads(data).get("mediaType") or media_type
        except ValueError:
            raise RegistryError(f"The manifest of {ref} is not JSON.") from None
        return data, media_type, digest

    def put_manifest(self, ref: ImageRef, data: bytes, media_type: str) -> str:
        """Upload a manifest under ``ref``'s tag (or digest); returns its digest."""
        resp = self.request(
            "PUT", ref.api_host, f"/v2/{ref.repository}/manifests/{ref.reference}", repository=ref.repository,
            actions="pull,push", headers={"Content-Type": media_type}, data=data, ok=(201, 200, 202),
            what=f"pushing the manifest of {ref}",
        )
        resp.close()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, ref: ImageRef, digest: str) -> bool:
        resp = self.request(
            "HEAD", ref.api_host, f"/v2/{ref.repository}/blobs/{digest}", repository=ref.repository,
            actions="pull,push", allow=(404,), what=f"checking blob {digest[:19]} in {ref.name}",
        )
        return resp.status_code == 200

    def get_blob(self, ref: ImageRef, digest: str) -> bytes:
        """A (small) blob, checked against its digest."""
        resp = self.request(
            "GET", ref.api_host, f"/v2/{ref.repository}/blobs/{digest}", repository=ref.repository,
            allow=(404,), what=f"fetching blob {digest[:19]} of {ref.name}",
        )
        if resp.status_code == 404:
            raise RegistryError(f"The blob {digest} of {ref.name} does not exist (BLOB_UNKNOWN).", status=404,
                                code="BLOB_UNKNOWN")
        data = resp.content
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"The blob {digest} of {ref.name} arrived corrupted (digest mismatch).")
        return data

    def download_blob(self, ref: ImageRef, digest: str, fh: IO[bytes]) -> int:
        """Stream a blob into ``fh`` (checked against its digest); returns its size."""
        resp = self.request(
            "GET", ref.api_host, f"/v2/{ref.repository}/blobs/{digest}", repository=ref.repository, stream=True,
            what=f"downloading blob {digest[:19]} of {ref.name}",
        )
        h = hashlib.sha256()
        size = 0
        with resp:
            for chunk in resp.iter_content(1 << 20):
                h.update(chunk)
                fh.write(chunk)
                size += len(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"The blob {digest} of {ref.name} arrived corrupted (digest mismatch).")
        return size

    def upload_blob(
        self,
        ref: ImageRef,
        digest: str,
        source: BlobSource,
        *,
        size: Optional[int] = None,
        mount_from: Optional[str] = None,
        check_exists: bool = True,
        on_progress: Optional[ProgressCallback] = None,
    ) -> str:
        """Make the blob ``digest`` exist in ``ref``'s repository.

        Returns how: ``"skipped"`` (already there), ``"mounted"`` (from repository
        ``mount_from`` on the same registry) or ``"uploaded"``. A cut connection or a 5xx
        resumes a chunked upload where the registry says it stopped, or restarts it.
        """
        if isinstance(source, (bytes, bytearray)):
            total = len(source)
        else:
            total = Path(source).stat().st_size
        if size is not None and size != total:
            raise RegistryError(f"Blob {digest} is {total} bytes, not the {size} its descriptor says.")
        if check_exists and self.has_blob(ref, digest):
            if on_progress:
                on_progress(total, total, "skipped")
            return "skipped"
        return BlobUpload(self, ref, digest, source, total, on_progress).run(mount_from=mount_from)

    def mount_blob(self, ref: ImageRef, digest: str, from_repository: str) -> bool:
        """Ask the registry to mount ``digest`` from ``from_repository`` (same registry) into
        ``ref``'s repository, without a ``HEAD`` first (mounting a blob the repository has
        also answers 201). False when the registry does not mount; the upload it opened
        instead is cancelled."""
        resp = self.request(
            "POST", ref.api_host, f"/v2/{ref.repository}/blobs/uploads/", repository=ref.repository,
            actions="pull,push", params={"mount": digest, "from": from_repository},
            headers={"Content-Length": "0"}, ok=(201,), allow=(202,),
            what=f"mounting blob {digest[:19]} from {from_repository} into {ref.repository}",
        )
        resp.close()
        if resp.status_code == 201:
            return True
        location = resp.headers.get("Location")
        if location:
            try:
                self.request("DELETE", ref.api_host, location, repository=ref.repository, actions="pull,push",
                             ok=(204, 200, 202), allow=(404, 405), what="cancelling an unused upload",
                             retry=False).close()
            except RegistryError:
                pass  # it expires on its own
        return False
