"""What a registry's answer means: the statuses worth another try, the RegistryError that
explains any other unexpected answer, and what an upload needs of the client that sends it.

Its own module so that :mod:`.client` (which sends requests) and :mod:`.upload` (one
blob's state machine) both read one policy without importing each other.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from ...errors import RegistryAuthError, RegistryError

__all__ = ["RETRY_STATUS", "error_for", "Sender"]

#: Statuses worth another try.
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def error_for(resp: Any, host: str, repository: Optional[str], what: str, *, credential: Any = None) -> RegistryError:
    """The RegistryError that explains an unexpected answer; ``credential``: who asked (a
    401 names the user)."""
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
        who = f"as user {credential.username!r}" if credential else "anonymously"
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


class Sender(Protocol):
    """What a :class:`~.upload.BlobUpload` sends through (a :class:`~.client.RegistryClient`)."""

    transport: Any
    auth: Any
    chunk_size: int
    retries: int
    backoff: float

    def request(self, method: str, host: str, path_or_url: str, **options: Any) -> Any: ...

    def error_for(self, resp: Any, host: str, repository: Optional[str], what: str) -> RegistryError: ...
