"""Putting one blob into a repository: the distribution API's upload state machine.

``POST`` opens an upload (or mounts the blob from another repository of the same
registry: ``201``); then one ``PUT`` for a small blob, or ``PATCH`` chunks and a closing
``PUT``. A cut connection or a 5xx resumes a chunked upload where the registry says it
stopped (``GET`` on the upload's location), or restarts it; a token that expires
during a long upload is renewed once. All the state of one upload lives in one
:class:`BlobUpload`.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from ...errors import RegistryError, RegistryUnreachableError
from ..reference import ImageRef
from .errors import RETRY_STATUS, Sender
from .transport import ConnectionFailed, short_reason

__all__ = ["BlobUpload", "BlobSource", "ProgressCallback", "RETRY_STATUS"]

#: What can be uploaded: bytes, or a file on disk.
BlobSource = Union[bytes, Path]

#: Called as ``on_progress(done, total, note)`` while a blob moves.
ProgressCallback = Callable[[int, Optional[int], str], None]


class _ProgressReader:
    """A file-like body that reports how much was read, at most every ``step`` bytes.

    Deliberately not an ``io`` class: ``requests`` must size it with ``__len__`` alone
    (a ``tell()`` that fails would make it send a chunked body).
    """

    def __init__(self, fh: IO[bytes], limit: int, total: int, on_progress: Optional[ProgressCallback],
                 start: int = 0, step: int = 1 << 20) -> None:
        self._fh = fh
        self._total = total
        self._on_progress = on_progress
        self._done = start
        self._last = start
        self._step = step
        self._limit = limit

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


class _Interrupted(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _with_query(url: str, **extra: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class BlobUpload:
    """One upload of the blob ``digest`` (``total`` bytes from ``source``) to ``ref``'s repository."""

    def __init__(self, client: Sender, ref: ImageRef, digest: str, source: BlobSource, total: int,
                 on_progress: Optional[ProgressCallback]) -> None:
        self.client = client
        self.ref = ref
        self.digest = digest
        self.source = source
        self.total = total
        self.on_progress = on_progress
        self._host, self._repo = ref.api_host, ref.repository
        self._reauthorized = False

    def run(self, *, mount_from: Optional[str] = None) -> str:
        """``"mounted"`` or ``"uploaded"``; after ``retries`` interrupted attempts, RegistryUnreachableError."""
        start_params: dict = {}
        if mount_from and mount_from != self._repo:
            start_params = {"mount": self.digest, "from": mount_from}
        failures = 0
        while True:
            resp = self.client.request(
                "POST", self._host, f"/v2/{self._repo}/blobs/uploads/", repository=self._repo, actions="pull,push",
                params=start_params or None, headers={"Content-Length": "0"}, ok=(202, 201),
                what=f"starting the upload of blob {self.digest[:19]} to {self.ref.name}",
            )
            resp.close()
            if resp.status_code == 201 and start_params:
                self._report(self.total, "mounted")
                return "mounted"
            start_params = {}
            location = self.location(resp)
            try:
                if self.total <= self.client.chunk_size:
                    self._put_monolithic(location)
                else:
                    self._put_chunked(location)
                self._report(self.total, "uploaded")
                return "uploaded"
            except _Interrupted as exc:
                failures += 1
                if failures > self.client.retries:
                    raise RegistryUnreachableError(
                        f"Uploading blob {self.digest[:19]} ({self.total} bytes) to {self.ref.name} failed {failures} "
                        f"times; the last error: {exc.reason}. Check the network and the registry's logs, then try "
                        "again."
                    ) from None
                self._report(0, f"retrying ({exc.reason})")
                time.sleep(self.client.backoff * failures)

    def _report(self, done: int, note: str) -> None:
        if self.on_progress:
            self.on_progress(done, self.total, note)

    def location(self, resp) -> str:
        """The absolute URL an upload continues at, from a response's ``Location``."""
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"The registry {self._host} started an upload but sent no Location header.")
        return urljoin(self.client.transport.base_url(self._host) + "/", location)

    def _open(self) -> IO[bytes]:
        if isinstance(self.source, (bytes, bytearray)):
            return io.BytesIO(self.source)
        return Path(self.source).open("rb")

    def _send(self, method: str, url: str, headers: dict, body: Any, ok: tuple[int, ...], what: str):
        """One body-carrying request, not retried here: a failure raises _Interrupted."""
        auth = self.client.auth
        hdrs = {**auth.header(self._host, self._repo), **headers}
        try:
            resp = self.client.transport.send(method, url, host=self._host, headers=hdrs, data=body)
        except ConnectionFailed as exc:
            raise _Interrupted(short_reason(exc.cause)) from None
        if resp.status_code in ok:
            return resp
        if resp.status_code in RETRY_STATUS:
            raise _Interrupted(f"HTTP {resp.status_code}")
        if resp.status_code == 401 and not self._reauthorized:
            # a token that expired during a long upload: get a new one and start the upload again
            self._reauthorized = True
            auth.authorize(self._host, self._repo, "pull,push", resp)
            raise _Interrupted("the registry asked to authenticate again")
        raise self.client.error_for(resp, self._host, self._repo, what)

    def _put_monolithic(self, location: str) -> None:
        with self._open() as fh:
            body = _ProgressReader(fh, self.total, self.total, self.on_progress)
            self._send("PUT", _with_query(location, digest=self.digest),
                       {"Content-Type": "application/octet-stream", "Content-Length": str(self.total)}, body, (201,),
                       f"uploading blob {self.digest[:19]}").close()

    def _put_chunked(self, location: str) -> None:
        offset, chunk = 0, self.client.chunk_size
        with self._open() as fh:
            while offset < self.total:
                length = min(chunk, self.total - offset)
                fh.seek(offset)
                body = _ProgressReader(fh, offset + length, self.total, self.on_progress, start=offset)
                try:
                    resp = self._send(
                        "PATCH", location,
                        {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                         "Content-Range": f"{offset}-{offset + length - 1}"},
                        body, (202,), f"uploading a chunk of blob {self.digest[:19]}",
                    )
                except _Interrupted:
                    resumed = self._offset(location)
                    if resumed is None:
                        raise
                    offset, location = resumed
                    continue
                resp.close()
                location = self.location(resp)
                offset += length
        self._send("PUT", _with_query(location, digest=self.digest), {"Content-Length": "0"}, b"", (201,),
                   f"finishing the upload of blob {self.digest[:19]}").close()

    def _offset(self, location: str) -> Optional[tuple[int, str]]:
        """Where an interrupted chunked upload stands (None: restart it)."""
        try:
            resp = self.client.transport.send("GET", location, host=self._host,
                                              headers=self.client.auth.header(self._host, self._repo))
        except ConnectionFailed:
            return None
        if resp.status_code != 204:
            return None
        m = re.match(r"^(?:bytes=)?0-(\d+)$", resp.headers.get("Range", ""))
        return (int(m.group(1)) + 1 if m else 0), self.location(resp)
