"""How requests reach a registry: scheme and TLS per host, the HTTP session, and failures as text.

HTTPS is tried first, verified with the system's CAs or a given bundle; plain HTTP (or
HTTPS without checks) only for loopback hosts or hosts the caller marks insecure. A
loopback host is tried over plain HTTP first (a local registry rarely has TLS, and
HTTPS would load the CA bundle, ~55 ms, for nothing); one that answers "HTTP request
to an HTTPS server" is then spoken to over HTTPS. The first request to a host decides
its scheme, with no extra round trip. Nothing here knows about credentials or the
distribution API.

HTTP sessions (their keep-alive connections and loaded TLS contexts) outlive a
transport: a closed one goes back to a small process-wide pool and the next transport
takes it, so the one-liner path, which makes a client per submit, reconnects nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError, MissingDependencyError, RegistryUnreachableError

__all__ = ["Transport", "ConnectionFailed", "redact", "is_loopback", "short_reason", "requests_module"]

log = logging.getLogger(__name__)


def requests_module():
    try:
        import requests
    except ImportError:
        raise MissingDependencyError("requests", "append", "Talking to an image registry") from None
    return requests


_WARNINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_tls():
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

_POOL: list = []
_POOL_LOCK = threading.Lock()
_POOL_MAX = 4


def _take_session() -> Any:
    with _POOL_LOCK:
        if _POOL:
            return _POOL.pop()
    return requests_module().Session()


def _give_back(session: Any) -> None:
    session.headers.pop("Authorization", None)
    session.cookies.clear()
    with _POOL_LOCK:
        if len(_POOL) < _POOL_MAX:
            _POOL.append(session)
            return
    session.close()


def redact(url: str) -> str:
    """A URL without its query string (upload URLs carry state tokens) or user info."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def short_reason(exc: BaseException) -> str:
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


class ConnectionFailed(Exception):
    """No HTTP answer (refused, reset, timed out); ``cause`` is the transport's exception."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.url = url
        self.cause = cause


class Transport:
    """Sends requests to registry hosts. ``insecure``: True or hosts allowed plain HTTP or
    unchecked TLS; ``ca_bundle``: PEM CAs to trust; ``session``: a ``requests.Session``
    [a new one, closed by :meth:`close`]; ``timeout``: (connect, read) seconds."""

    def __init__(self, *, insecure: "bool | Iterable[str]" = False, ca_bundle: "str | Path | None" = None,
                 session: Any = None, timeout: tuple[float, float] = (10.0, 300.0)) -> None:
        if ca_bundle and not Path(ca_bundle).is_file():
            raise ConfigurationError(
                f"ca_bundle {str(ca_bundle)!r} is not a file; give the path of a PEM file of CA certificates.")
        self.session = session if session is not None else _take_session()
        self._owns_session = session is None
        self._insecure_all = insecure is True
        self._insecure_hosts = set() if isinstance(insecure, bool) else {h.lower() for h in insecure}
        self._verify: Any = str(ca_bundle) if ca_bundle else True
        self.timeout = timeout
        #: The scheme each host was found to speak ("https" or "http").
        self.scheme: dict[str, str] = {}
        # One thread finds a host's scheme; the others (parallel blob uploads) wait for it,
        # or a thread's failed HTTPS try would be judged against another's finding.
        self._scheme_lock = threading.Lock()

    def close(self) -> None:
        if self._owns_session and self.session is not None:
            _give_back(self.session)
            self.session = None

    def insecure(self, host: str) -> bool:
        return self._insecure_all or host.lower() in self._insecure_hosts

    def verify(self, host: str) -> Any:
        """What ``requests`` checks the host's certificate against (False: nothing)."""
        return False if self.insecure(host) else self._verify

    def base_url(self, host: str) -> str:
        """The scheme and host; HTTPS unless this host was found (or marked) to speak plain HTTP."""
        return f"{self.scheme.get(host, 'https')}://{host}"

    def send(self, method: str, url: str, *, host: str, headers: dict, data: Any = None, stream: bool = False,
             params: Optional[dict] = None, auth: Any = None):
        """One request; no answer raises :class:`ConnectionFailed`."""
        requests = requests_module()
        if self.session is None:  # used again after close(): take a session again
            self.session, self._owns_session = _take_session(), True
        verify = self.verify(host)
        # unchecked TLS warns; warnings.catch_warnings is process-wide, so requests that need it
        # go one at a time (only HTTPS to a host marked insecure; plain HTTP never warns)
        quiet = verify is False and url.startswith("https://")
        with _quiet_tls() if quiet else contextlib.nullcontext():
            try:
                return self.session.request(
                    method, url, headers=headers, data=data, stream=stream, params=params, auth=auth,
                    timeout=self.timeout, verify=verify, allow_redirects=True,
                )
            except requests.exceptions.SSLError as exc:
                if host in self.scheme:
                    raise RegistryUnreachableError(
                        f"TLS with {host} failed: {short_reason(exc)}. If the registry uses a private CA, pass "
                        f"ca_bundle='/path/to/ca.pem'."
                    ) from None
                raise
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise ConnectionFailed(url, exc) from None

    def send_first(self, method: str, url: str, *, host: str, headers: dict, data: Any = None,
                   stream: bool = False, params: Optional[dict] = None):
        """Send; the first request to a host also decides its scheme: a loopback or insecure
        host that fails TLS or refuses HTTPS is retried over plain HTTP."""
        if not url.startswith("https://"):
            return self.send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
        known = self.scheme.get(host)
        if known is None:
            with self._scheme_lock:
                known = self.scheme.get(host)  # found by another thread meanwhile?
                if known is None:
                    return self._discover(method, url, host=host, headers=headers, data=data, stream=stream,
                                          params=params)
        if known == "http":  # a URL made before the scheme was known
            url = "http://" + url[len("https://"):]
        return self.send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)

    def _discover(self, method: str, url: str, *, host: str, headers: dict, data: Any, stream: bool,
                  params: Optional[dict]):
        requests = requests_module()
        may_plain = self.insecure(host) or is_loopback(host)
        if is_loopback(host):
            plain = "http://" + url[len("https://"):]
            try:
                resp = self.send(method, plain, host=host, headers=headers, data=data, stream=stream, params=params)
            except ConnectionFailed:
                resp = None
            # a TLS server answers plain HTTP with 400 ("HTTP request to an HTTPS server"; no body
            # for HEAD): try HTTPS, and come back to HTTP below if that fails too
            if resp is not None and resp.status_code != 400:
                self.scheme[host] = "http"
                log.debug("%s (loopback) answers plain HTTP", host)
                return resp
            if resp is not None:
                resp.close()
        try:
            resp = self.send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
            self.scheme[host] = "https"
            log.debug("%s answers HTTPS", host)
            return resp
        except requests.exceptions.SSLError as exc:
            if "certificate verify failed" in str(exc).lower():
                raise RegistryUnreachableError(
                    f"TLS with {host} failed: {short_reason(exc)}. If the registry uses a private CA, pass "
                    f"ca_bundle='/path/to/ca.pem' (or add the CA to the system's trust store)."
                ) from None
            if not may_plain:
                raise RegistryUnreachableError(
                    f"TLS with {host} failed: {short_reason(exc)}. If it serves plain HTTP, mark it insecure=['{host}']."
                ) from None
        except ConnectionFailed:
            if not may_plain:
                raise
        log.info("%s: HTTPS failed; falling back to plain HTTP (an insecure or loopback registry)", host)
        self.scheme[host] = "http"
        url = "http://" + url[len("https://"):]
        try:
            return self.send(method, url, host=host, headers=headers, data=data, stream=stream, params=params)
        except ConnectionFailed:
            del self.scheme[host]
            raise
