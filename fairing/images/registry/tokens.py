"""Authentication with a registry: answering its ``401`` challenge, once per host and repository.

``Basic`` challenges get the provider's username and password; ``Bearer`` challenges a
token from the realm the registry names, requested for the repository's scopes (with an
``identitytoken`` as an OAuth2 refresh token). Tokens are cached per host and
repository. Credentials come from the injected provider and never appear in errors.
"""

from __future__ import annotations

import base64
import logging
import re
import warnings
from typing import Optional
from urllib.parse import urlencode, urlsplit

from ...errors import RegistryAuthError, RegistryUnreachableError
from ..auth import Credential, CredentialProvider
from .transport import Transport, redact, requests_module, short_reason

__all__ = ["Authenticator", "parse_challenge"]

log = logging.getLogger(__name__)

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` -> ('bearer', {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class Authenticator:
    """The ``Authorization`` header for each host and repository, learnt from challenges."""

    def __init__(self, credentials: CredentialProvider, transport: Transport) -> None:
        self._credentials = credentials
        self._transport = transport
        self._basic: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._cred_cache: dict[str, Optional[Credential]] = {}

    def credential(self, host: str) -> Optional[Credential]:
        if host not in self._cred_cache:
            self._cred_cache[host] = self._credentials(host)
        return self._cred_cache[host]

    def header(self, host: str, repository: Optional[str]) -> dict:
        if host in self._basic:
            return {"Authorization": self._basic[host]}
        token = self._tokens.get((host, repository or ""))
        return {"Authorization": f"Bearer {token}"} if token else {}

    def authorize(self, host: str, repository: Optional[str], actions: str, resp) -> None:
        """Answer the challenge in ``resp`` (a 401), so that :meth:`header` has what it asks for."""
        scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        cred = self.credential(host)
        if scheme == "basic":
            if cred is None:
                raise RegistryAuthError(
                    f"The registry {host} requires a login and no credentials were found for it. "
                    f"Run 'docker login {host}', or pass username= and password=.",
                    status=401,
                )
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
        renewing = (host, repository or "") in self._tokens
        log.info("%s a token for %s (%s) from %s", "renewing" if renewing else "fetching", host,
                 " ".join(sorted(set(scopes))) or "no scope", params["realm"])
        token = self._fetch_token(host, params["realm"], params.get("service"), sorted(set(scopes)), cred)
        self._tokens[(host, repository or "")] = token

    def _fetch_token(self, host: str, realm: str, service: Optional[str], scopes: list[str],
                     cred: Optional[Credential]) -> str:
        requests = requests_module()
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
        transport = self._transport
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resp = transport.session.request(
                    method, realm + ("&" if "?" in realm else "?") + urlencode(query), auth=auth, data=body,
                    timeout=transport.timeout, verify=transport.verify(urlsplit(realm).netloc),
                )
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachableError(
                f"Cannot reach the token service {redact(realm)} of {host}: {short_reason(exc)}."
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
