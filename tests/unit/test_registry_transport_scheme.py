"""The registry transport finds a host's scheme once, even when its first requests come
from several threads at once (the append builder uploads blobs side by side), against a
real plain-HTTP server on loopback that the transport is told is an insecure remote host."""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fairing.images.registry.transport import Transport


class _Plain(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def plain_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_concurrent_first_requests_to_an_insecure_plain_http_host_all_succeed(plain_server):
    host = "registry.example:5000"  # not loopback: HTTPS is tried first, then plain HTTP (insecure)
    for _ in range(5):  # the race needs the threads to meet in the first request; try a few transports
        transport = Transport(insecure=[host])
        barrier = threading.Barrier(8)

        def first_request(_):
            barrier.wait()
            return transport.send_first("GET", f"https://{plain_server}/v2/", host=host, headers={}).status_code

        try:
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(first_request, range(8))) == [200] * 8
            assert transport.scheme == {host: "http"}
            # a URL made before the scheme was known goes over the scheme found
            assert transport.send_first("GET", f"https://{plain_server}/v2/", host=host, headers={}).status_code == 200
        finally:
            transport.close()
