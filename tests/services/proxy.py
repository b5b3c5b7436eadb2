"""A TCP proxy on a free loopback port that counts bytes and can cut connections.

Put it between a client and a test registry to measure what the client uploads
(``bytes_up`` in all, ``body_bytes_up`` in request bodies) or to cut a connection part-way through an upload
(``cut_after=N``: the first ``cuts`` connections that send more than N bytes to the
server are closed abruptly), or to stall the answer to one request (``hold=b"PUT /v2/..."``:
the server's answer to the first request holding those bytes is not passed on, ``held`` is
set, and ``release()`` closes that connection). Threads only; ``stop()`` closes everything.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional


class _RequestMeter:
    """Splits one connection's client-to-server bytes into request heads and bodies
    (Content-Length or chunked), so ``body_bytes`` is the payload alone."""

    def __init__(self) -> None:
        self.mode = "head"
        self.buf = b""
        self.remaining = 0
        self.head_bytes = 0
        self.body_bytes = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            if self.mode == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buf = self.buf[: end + 4], self.buf[end + 4:]
                self.head_bytes += len(head)
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    headers[k.strip().lower()] = v.strip().lower()
                if b"chunked" in headers.get(b"transfer-encoding", b""):
                    self.mode = "chunk-size"
                else:
                    self.remaining = int(headers.get(b"content-length", b"0") or 0)
                    self.mode = "body" if self.remaining else "head"
            elif self.mode == "body":
                take = min(self.remaining, len(self.buf))
                self.body_bytes += take
                self.remaining -= take
                self.buf = self.buf[take:]
                if not self.remaining:
                    self.mode = "head"
            elif self.mode == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(self.buf[:end].split(b";")[0] or b"0", 16)
                self.buf = self.buf[end + 2:]
                if size == 0:
                    self.mode = "trailer"
                else:
                    self.remaining, self.mode = size + 2, "chunk-data"  # data + CRLF
            elif self.mode == "chunk-data":
                take = min(self.remaining, len(self.buf))
                self.body_bytes += max(0, min(take, self.remaining - 2))
                self.remaining -= take
                self.buf = self.buf[take:]
                if not self.remaining:
                    self.mode = "chunk-size"
            elif self.mode == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                if not line:
                    self.mode = "head"


class Proxy:
    def __init__(self, upstream: str, *, cut_after: Optional[int] = None, cuts: int = 1,
                 hold: Optional[bytes] = None) -> None:
        host, port = upstream.rsplit(":", 1)
        self.hold = hold
        self.held = threading.Event()
        self._released = threading.Event()
        self._upstream = (host, int(port))
        self.cut_after = cut_after
        self.cuts_left = cuts if cut_after is not None else 0
        self.cuts_done = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._meters: list[_RequestMeter] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()

    @property
    def body_bytes_up(self) -> int:
        """Request-body bytes sent to the server (blobs, manifests), without HTTP framing."""
        with self._lock:
            return sum(m.body_bytes for m in self._meters)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = 0
            self.connections = 0
            self._meters = []

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):  # no Nagle delays: the proxy must not slow small requests
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, server))
            state = {"up": 0, "cut": False, "meter": _RequestMeter(), "hold": False}
            with self._lock:
                self._meters.append(state["meter"])
            threading.Thread(target=self._pump, args=(client, server, True, state), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False, state), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool, state: dict) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self._lock:
                        self.bytes_up += len(data)
                        state["up"] += len(data)
                        state["meter"].feed(data)
                        if self.hold is not None and self.hold in data and not self.held.is_set():
                            state["hold"] = True
                        cut = (self.cuts_left > 0 and self.cut_after is not None and state["up"] > self.cut_after)
                        if cut:
                            self.cuts_left -= 1
                            self.cuts_done += 1
                            state["cut"] = True
                    if cut:
                        for s in (src, dst):
                            try:
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            except OSError:
                                pass
                        break
                else:
                    if state["hold"]:
                        self.held.set()
                        self._released.wait()
                        break
                    with self._lock:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                with self._lock:
                    self._sockets.discard(s)

    def release(self) -> None:
        """End a held answer: its connection is closed, the answer never delivered."""
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._stopped = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
