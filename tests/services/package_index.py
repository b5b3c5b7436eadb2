"""A real PEP 503 package index on loopback that demands basic-auth credentials.

``start_index(user, token)`` serves, from a thread, ``/simple/<project>/`` pages and
the wheel files of the projects given (default: one pure-Python wheel made here,
``fairing-demo-pkg 1.0``, whose module returns a constant). A request without the
right ``Authorization`` header gets 401, so an install that succeeds proves pip got
the credentials. ``handle.requests`` lists (path, authorised) pairs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEMO_PROJECT = "fairing-demo-pkg"
DEMO_VERSION = "1.0"


def make_wheel(project: str = DEMO_PROJECT, version: str = DEMO_VERSION, value: str = "demo-ok") -> tuple[str, bytes]:
    """(file name, bytes) of a minimal pure-Python wheel; the same inputs give the same bytes."""
    module = project.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VALUE = {value!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: fairing-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    ) + f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"{module}-{version}-py3-none-any.whl", buf.getvalue()


@dataclass
class PackageIndex:
    server: ThreadingHTTPServer
    user: str
    token: str
    wheels: dict  # file name -> bytes
    requests: list = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.server.server_address[0]

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def public_url(self) -> str:
        """The index URL without credentials."""
        return f"http://{self.host}:{self.port}/simple/"

    @property
    def url(self) -> str:
        """The index URL with the credentials in it, as a user writes it in requirements.txt."""
        return f"http://{self.user}:{self.token}@{self.host}:{self.port}/simple/"

    def sha256(self, file_name: str) -> str:
        return hashlib.sha256(self.wheels[file_name]).hexdigest()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_index(user: str, token: str, wheels: dict | None = None, host: str = "127.0.0.1") -> PackageIndex:
    """``host``: the address to listen on (the node's, for pods of the test cluster)."""
    wheels = dict(wheels) if wheels is not None else dict([make_wheel()])
    expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
    handle: PackageIndex

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the tests read handle.requests instead
            pass

        def do_HEAD(self) -> None:  # uv asks before it downloads
            self._head = True
            self.do_GET()

        def do_GET(self) -> None:
            authorised = self.headers.get("Authorization") == expected
            handle.requests.append((self.path, authorised))
            if not authorised:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test index"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts[:1] == ["simple"] and len(parts) == 2:
                links = "".join(
                    f'<a href="/files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a>\n'
                    for name, data in wheels.items() if name.split("-")[0] == parts[1].replace("-", "_")
                )
                self._send(200, f"<html><body>\n{links}</body></html>".encode(), "text/html")
            elif parts[:1] == ["files"] and len(parts) == 2 and parts[1] in wheels:
                self._send(200, wheels[parts[1]], "application/octet-stream")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not getattr(self, "_head", False):
                self.wfile.write(body)

    server = ThreadingHTTPServer((host, 0), Handler)
    handle = PackageIndex(server, user, token, wheels)
    threading.Thread(target=server.serve_forever, name="test-package-index", daemon=True).start()
    return handle


def main() -> None:
    """``python -m tests.services.package_index HOST USER TOKEN``: serve until killed; the first
    line of stdout is JSON with the port and the demo wheel's name and sha256 (for a server
    started where another network namespace's pods reach it)."""
    import json
    import sys
    import time

    host, user, token = sys.argv[1:4]
    index = start_index(user, token, host=host)
    wheel = next(iter(index.wheels))
    print(json.dumps({"port": index.port, "wheel": wheel, "sha256": index.sha256(wheel)}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
