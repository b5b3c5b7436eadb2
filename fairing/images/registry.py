"""A small client for the OCI distribution API, on ``requests``.

Why our own code: python-dxf and oras-py were evaluated first. python-dxf stores blobs
and aliases but does not read ``credsStore``/``credHelpers``, pick a platform from an
index, or emit progress; oras-py targets OCI artifacts (annotations, artifact types),
has no image-config model, and neither retries a cut upload. What the append builder
needs is a few dozen lines of HTTP over a maintained client (``requests``), so this module
implements exactly that part of the spec:

* auth: anonymous, ``Basic`` and ``Bearer`` challenges (token requested with the
  repository scopes, cached per host and repository); credentials come from an injected
  provider (:mod:`fairing.images.auth`), never appear in errors or logs;
* transport: HTTPS, verified with the system or a given CA bundle; plain HTTP only for
  loopback hosts or hosts the caller marks insecure (HTTPS is tried first, as Docker does);
* blobs: ``HEAD`` to skip what exists, cross-repository mount, monolithic (``POST`` +
  ``PUT``) or chunked (``PATCH``) upload, a cut upload resumed or restarted;
* manifests: ``HEAD``/``GET``/``PUT`` with Docker schema 2 and OCI media types.

Every failure is a :class:`~fairing.errors.RegistryError` subclass.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import re
import time
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Optional, Union
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from ..errors import MissingDependencyError, RegistryAuthError, RegistryError, RegistryUnreachableError
from .auth import Credential, CredentialProvider, DockerConfigCredentials, StaticCredentials, resolve_credentials
from .manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Descriptor
from .reference import ImageRef

__all__ = ["RegistryClient", "StaticCredentials", "DockerConfigCredentials", "BlobSource"]

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

#: What can be uploaded: bytes, or a file on disk.
BlobSource = Union[bytes, Path]

#: Called as ``on_progress(done, total, note)`` while a blob moves.
ProgressCallback = Callable[[int, Optional[int], str], None]

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def _requests():
    try:
        import requests
    except ImportError:
        raise MissingDependencyError("requests", "append", "Talking to an image registry") from None
    return requests


def redact(url: str) -> str:
    """A URL without its query string (upload URLs carry state tokens) or user info."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` -> ('bearer', {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class _ProgressReader:
    """A file-like body that reports how much was read, at most every ``step`` bytes.

    Deliberately not an ``io`` class: ``requests`` must size it with ``__len__`` alone
    (a ``tell()`` that fails would make it send a chunked body).
    """

    def __init__(self, fh: IO[bytes], total: int, on_progress: Optional[ProgressCallback], start: int = 0,
                 step: int = 1 << 20) -> None:
        self._fh = fh
        self._total = total
        self._on_progress = on_progress
        self._done = start
        self._last = start
        self._step = step
        self._limit = total

    def __len__(self) -> int:
        return self._limit - self._done

    def read(self, n: int = -1) -> bytes:
        remaining = self._limit - self._done
        if remaining <= 0:
            return b""
        n = remaining if n is None or n < 0 else min(n, remaining)
        data = self._fh.read(n)
        self._done += len(data)
        # intermediate events carry no note (renderers redraw a bar); the caller reports the end
        if self._on_progress and self._done - self._last >= self._step and self._done < self._total:
            self._last = self._done
            self._on_progress(self._done, self._total, "")
        return data


class RegistryClient:
    """Talks to one or more registries.

    Options (defaults in brackets):

    * ``credentials`` - a provider ``host -> Credential | None``
      [:class:`DockerConfigCredentials`, i.e. what ``docker login`` stored].
    * ``insecure`` - ``True`` or a collection of hosts that may be reached over plain HTTP
      (or HTTPS without certificate checks) [``False``: only loopback hosts may fall back to HTTP].
    * ``ca_bundle`` - a PEM file of CAs to trust for HTTPS [the system's].
    * ``session`` - a ``requests.Session`` to send through [a new one].
    * ``chunk_size`` - blobs larger than this are uploaded in ``PATCH`` chunks of this size
      [64 MiB]; smaller ones in one ``PUT``.
    * ``retries`` - how many times a failed upload or a 5xx/connection error is retried [3].
    * ``timeout`` - (connect, read) seconds [(10, 300)].
    * ``backoff`` - seconds before the first retry, growing linearly [0.5].

    One client serves one thread at a time (it caches schemes and tokens per host).
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
        requests = _requests()
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self._credentials = resolve_credentials(credentials=credentials)
        self._insecure_all = insecure is True
        self._insecure_hosts = set() if isinstance(insecure, bool) else {h.lower() for h in insecure}
        self._verify: Any = str(ca_bundle) if ca_bundle else True
        if ca_bundle and not Path(ca_bundle).is_file():
            from ..errors import ConfigurationError

            raise ConfigurationError(f"ca_bundle {str(ca_bundle)!r} is not a file; give the path of a PEM file of CA certificates.")
        self.chunk_size = chunk_size
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self._scheme: dict[str, str] = {}
        self._basic: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._cred_cache: dict[str, Optional[Credential]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _insecure(self, host: str) -> bool:
        return self._insecure_all or host.lower() in self._insecure_hosts

    def _credential(self, host: str) -> Optional[Credential]:
        if host not in self._cred_cache:
            self._cred_cache[host] = self._credentials(host)
        return self._cred_cache[host]

    def _send(self, method: str, url: str, *, host: str, headers: dict, data: Any = None, stream: bool = False,
              params: Optional[dict] = None):
        requests = _requests()
        verify: Any = False if self._insecure(host) else self._verify
        with warnings.catch_warnings():
            if verify is False:
                warnings.simplefilter("ignore")
            try:
                return self._session.request(
                    method, url, headers=headers, data=data, stream=stream, params=params,
                    timeout=self.timeout, verify=verify, allow_redirects=True,
                )
            except requests.exceptions.SSLError as exc:
                if host in self._scheme:
                    raise RegistryUnreachableError(
                        f"TLS with {host} failed: {_short(exc)}. If the registry uses a private CA, pass "
                        f"ca_bundle='/path/to/ca.pem'."
                    ) from None
                raise
            except requests.exceptions.ConnectionError as exc:
                raise _ConnectionFailed(url, exc) from None
            except requests.exceptions.Timeout as exc:
                raise _ConnectionFailed(url, exc) from None

    def _base_url(self, host: str) -> str:
        """The scheme and host; HTTPS unless this host was found (or marked) to speak plain HTTP."""
        return f"{self._scheme.get(host, 'https')}://{host}"

    def _send_first(self, method: str, url: str, *, host: str, headers: dict, data: Any, stream: bool,
                    params: Optional[dict]):
        """Send; the first request to a host also decides its scheme (no extra round trip):
        a loopback or insecure host that fails TLS or refuses HTTPS is retried over plain HTTP."""
        requests = _requests()
        if host in self._scheme or not url.startswith("https://"):
            return self._send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
        may_plain = self._insecure(host) or _is_loopback(host)
        try:
            resp = self._send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
            self._scheme[host] = "https"
            return resp
        except requests.exceptions.SSLError as exc:
            untrusted = "certificate verify failed" in str(exc).lower()
            if untrusted:
                raise RegistryUnreachableError(
                    f"TLS with {host} failed: {_short(exc)}. If the registry uses a private CA, pass "
                    f"ca_bundle='/path/to/ca.pem' (or add the CA to the system's trust store)."
                ) from None
            if not may_plain:
                raise RegistryUnreachableError(
                    f"TLS with {host} failed: {_short(exc)}. If it serves plain HTTP, mark it insecure=['{host}']."
                ) from None
        except _ConnectionFailed:
            if not may_plain:
                raise
        self._scheme[host] = "http"
        url = "http://" + url[len("https://"):]
        try:
            return self._send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
        except _ConnectionFailed:
            del self._scheme[host]
            raise

    def _auth_header(self, host: str, repository: Optional[str]) -> dict:
        if host in self._basic:
            return {"Authorization": self._basic[host]}
        token = self._tokens.get((host, repository or ""))
        return {"Authorization": f"Bearer {token}"} if token else {}

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
        url = path_or_url if "://" in path_or_url else self._base_url(host) + path_or_url
        attempt = 0
        authed_again = False
        while True:
            hdrs = {**self._auth_header(host, repository), **(headers or {})}
            try:
                resp = self._send_first(method, url, host=host, headers=hdrs, data=data, stream=stream, params=params)
                url = self._base_url(host) + path_or_url if "://" not in path_or_url else url
            except _ConnectionFailed as exc:
                if retry and attempt < self.retries:
                    attempt += 1
                    time.sleep(self.backoff * attempt)
                    continue
                verb = "Lost the connection to" if host in self._scheme else "Cannot connect to"
                raise RegistryUnreachableError(
                    f"{verb} the registry at {host} while {what or method + ' ' + redact(url)}: "
                    f"{_short(exc.cause)}. Check the address, and that the registry is running and reachable from here."
                ) from None
            if resp.status_code == 401 and not authed_again:
                authed_again = True
                self._authorize(host, repository, actions, resp)
                resp.close()
                continue
            if resp.status_code in _RETRY_STATUS and retry and attempt < self.retries:
                attempt += 1
                resp.close()
                time.sleep(self.backoff * attempt)
                continue
            if resp.status_code in ok or resp.status_code in allow:
                return resp
            raise self._error(resp, host, repository, what or f"{method} {redact(url)}")

    def _error(self, resp, host: str, repository: Optional[str], what: str) -> RegistryError:
        code = message = None
        try:
            errors = resp.json().get("errors") or []
            if errors:
                code = errors[0].get("code")
                message = errors[0].get("message")
        except Exception:
            pass
        detail = f"{resp.status_code}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        if resp.status_code == 401:
            cred = self._credential(host)
            who = f"as user {cred.username!r}" if cred else "anonymously"
            return RegistryAuthError(
                f"The registry {host} refused access {who} while {what} ({detail}). "
                f"Check the username and password (or run 'docker login {host}').",
                status=401, code=code,
            )
        if resp.status_code == 403:
            return RegistryAuthError(
                f"The registry {host} denied {what} ({detail}). The credentials are valid but lack permission "
                f"for repository {repository!r}: ask for push access or choose another repository.",
                status=403, code=code,
            )
        return RegistryError(f"The registry {host} answered {detail} while {what}.", status=resp.status_code, code=code)

    def _authorize(self, host: str, repository: Optional[str], actions: str, resp) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        cred = self._credential(host)
        if scheme == "basic":
            if cred is None:
                raise RegistryAuthError(
                    f"The registry {host} requires a login and no credentials were found for it. "
                    f"Run 'docker login {host}', or pass username= and password=.",
                    status=401,
                )
            import base64

            self._basic[host] = "Basic " + base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(
                f"The registry {host} answered 401 with an authentication scheme fairing does not support "
                f"({scheme or 'none'}).", status=401,
            )
        scopes = []
        if params.get("scope"):
            scopes.extend(params["scope"].split(" "))
        if repository:
            scopes.append(f"repository:{repository}:{actions}")
        token = self._fetch_token(host, params["realm"], params.get("service"), sorted(set(scopes)), cred)
        self._tokens[(host, repository or "")] = token

    def _fetch_token(self, host: str, realm: str, service: Optional[str], scopes: list[str],
                     cred: Optional[Credential]) -> str:
        requests = _requests()
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        query.extend(("scope", s) for s in scopes)
        auth = None
        method, body = "GET", None
        if cred is not None and cred.identity_token:
            method = "POST"
            body = {"grant_type": "refresh_token", "refresh_token": cred.password, "service": service or "",
                    "scope": " ".join(scopes), "client_id": "fairing"}
        elif cred is not None:
            auth = (cred.username, cred.password)
        realm_host = urlsplit(realm).netloc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resp = self._session.request(
                    method, realm + ("&" if "?" in realm else "?") + urlencode(query), auth=auth, data=body,
                    timeout=self.timeout, verify=False if self._insecure(realm_host) else self._verify,
                )
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachableError(
                f"Cannot reach the token service {redact(realm)} of {host}: {_short(exc)}."
            ) from None
        if resp.status_code in (401, 403):
            who = f"user {cred.username!r}" if cred else "anonymous access"
            raise RegistryAuthError(
                f"The token service of {host} refused {who} for {' '.join(scopes) or 'access'} "
                f"({resp.status_code}). Check the username and password (or run 'docker login {host}').",
                status=resp.status_code,
            )
        if resp.status_code != 200:
            raise RegistryAuthError(f"The token service of {host} answered {resp.status_code}.", status=resp.status_code)
        try:
            value = resp.json()
            return value.get("token") or value["access_token"]
        except (ValueError, KeyError):
            raise RegistryAuthError(f"The token service of {host} answered without a token.") from None

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
        repo, host = ref.repository, ref.api_host
        if check_exists and self.has_blob(ref, digest):
            if on_progress:
                on_progress(total, total, "skipped")
            return "skipped"
        start_params: dict = {}
        if mount_from and mount_from != repo:
            start_params = {"mount": digest, "from": mount_from}
        failures = 0
        while True:
            resp = self.request(
                "POST", host, f"/v2/{repo}/blobs/uploads/", repository=repo, actions="pull,push",
                params=start_params or None, headers={"Content-Length": "0"}, ok=(202, 201),
                what=f"starting the upload of blob {digest[:19]} to {ref.name}",
            )
            resp.close()
            if resp.status_code == 201 and start_params:
                if on_progress:
                    on_progress(total, total, "mounted")
                return "mounted"
            start_params = {}
            location = self._location(resp, host)
            self._reauthorized = False
            try:
                if total <= self.chunk_size:
                    self._put_monolithic(host, repo, location, digest, source, total, on_progress)
                else:
                    self._put_chunked(host, repo, location, digest, source, total, on_progress)
                if on_progress:
                    on_progress(total, total, "uploaded")
                return "uploaded"
            except _UploadInterrupted as exc:
                failures += 1
                if failures > self.retries:
                    raise RegistryUnreachableError(
                        f"Uploading blob {digest[:19]} ({total} bytes) to {ref.name} failed {failures} times; the last "
                        f"error: {exc.reason}. Check the network and the registry's logs, then try again."
                    ) from None
                if on_progress:
                    on_progress(0, total, f"retrying ({exc.reason})")
                time.sleep(self.backoff * failures)

    def _location(self, resp, host: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"The registry {host} started an upload but sent no Location header.")
        return urljoin(self._base_url(host) + "/", location)

    @staticmethod
    def _with_query(url: str, **extra: str) -> str:
        parts = urlsplit(url)
        query = parts.query + ("&" if parts.query else "") + urlencode(extra)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    def _open(self, source: BlobSource) -> IO[bytes]:
        if isinstance(source, (bytes, bytearray)):
            return io.BytesIO(source)
        return Path(source).open("rb")

    def _body_send(self, method: str, url: str, host: str, repo: str, headers: dict, body: Any, ok: tuple[int, ...],
                   what: str):
        """One body-carrying request, not retried here: a failure raises _UploadInterrupted."""
        hdrs = {**self._auth_header(host, repo), **headers}
        try:
            resp = self._send(method, url, host=host, headers=hdrs, data=body)
        except _ConnectionFailed as exc:
            raise _UploadInterrupted(_short(exc.cause)) from None
        if resp.status_code in ok:
            return resp
        if resp.status_code in _RETRY_STATUS:
            raise _UploadInterrupted(f"HTTP {resp.status_code}")
        if resp.status_code == 401 and not getattr(self, "_reauthorized", False):
            # a token that expired during a long upload: get a new one and start the upload again
            self._reauthorized = True
            self._authorize(host, repo, "pull,push", resp)
            raise _UploadInterrupted("the registry asked to authenticate again")
        raise self._error(resp, host, repo, what)

    def _put_monolithic(self, host, repo, location, digest, source, total, on_progress) -> None:
        with self._open(source) as fh:
            body = _ProgressReader(fh, total, on_progress)
            resp = self._body_send(
                "PUT", self._with_query(location, digest=digest), host, repo,
                {"Content-Type": "application/octet-stream", "Content-Length": str(total)}, body, (201,),
                f"uploading blob {digest[:19]}",
            )
            resp.close()

    def _put_chunked(self, host, repo, location, digest, source, total, on_progress) -> None:
        offset = 0
        with self._open(source) as fh:
            while offset < total:
                length = min(self.chunk_size, total - offset)
                fh.seek(offset)
                body = _ProgressReader(fh, offset + length, on_progress, start=offset)
                body._total = total
                try:
                    resp = self._body_send(
                        "PATCH", location, host, repo,
                        {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                         "Content-Range": f"{offset}-{offset + length - 1}"},
                        body, (202,), f"uploading a chunk of blob {digest[:19]}",
                    )
                except _UploadInterrupted:
                    resumed = self._upload_offset(host, repo, location)
                    if resumed is None:
                        raise
                    offset, location = resumed
                    continue
                resp.close()
                location = self._location(resp, host)
                offset += length
        resp = self._body_send(
            "PUT", self._with_query(location, digest=digest), host, repo, {"Content-Length": "0"}, b"", (201,),
            f"finishing the upload of blob {digest[:19]}",
        )
        resp.close()

    def _upload_offset(self, host: str, repo: str, location: str) -> Optional[tuple[int, str]]:
        """Where an interrupted chunked upload stands (None: restart it)."""
        try:
            resp = self._send("GET", location, host=host, headers=self._auth_header(host, repo))
        except _ConnectionFailed:
            return None
        if resp.status_code != 204:
            return None
        rng = resp.headers.get("Range", "")
        m = re.match(r"^(?:bytes=)?0-(\d+)$", rng)
        new_location = self._location(resp, host)
        return (int(m.group(1)) + 1 if m else 0), new_location


class _ConnectionFailed(Exception):
    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = url
        self.cause = cause


class _UploadInterrupted(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _short(exc: BaseException) -> str:
    """A one-line reason, without URLs' query strings."""
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^(\]'\")]+)", text)
    if m:
        return f"the server's certificate is not trusted ({m.group(1).strip()})"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "the server does not speak TLS"
    m = re.search(r"(Connection refused|Name or service not known|Temporary failure in name resolution|timed out|"
                  r"Connection reset by peer|Broken pipe|Connection aborted|RemoteDisconnected|No route to host)", text)
    if m:
        return m.group(1)
    text = re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\")]*", r"\1", text)
    return text[:200]
