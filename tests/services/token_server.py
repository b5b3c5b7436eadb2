"""A real bearer-token service for the test registry (the Docker token auth flow).

``start_token_server(users)`` serves ``GET /token?service=...&scope=...`` on a free
loopback port, checks HTTP Basic credentials against ``users``, and answers
``{"token": JWT}`` signed RS256 by a key whose self-signed certificate (``.ca_path``)
the registry trusts (``auth.token.rootcertbundle``; the certificate travels in the
JWT's ``x5c`` header). Valid users get the scopes they ask for; anonymous callers get
a token with no access; wrong passwords get 401. ``.requests`` counts token requests.

Use with ``start_registry(token=server)``.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    server: ThreadingHTTPServer
    thread: threading.Thread
    ca_path: Path
    users: dict
    service: str = "fairing-test-registry"
    issuer: str = "fairing-test-issuer"
    requests: list = field(default_factory=list)

    @property
    def realm(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/token"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_token_server(users: dict, directory: Path) -> TokenServer:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fairing test token signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "token-signer.pem"
    ca_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            ts: TokenServer = holder["ts"]
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            ts.requests.append(self.path)
            user = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                try:
                    u, _, p = base64.b64decode(header[6:]).decode().partition(":")
                except Exception:
                    u, p = "", None
                if users.get(u) != p:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
                    return
                user = u
            access = []
            if user is not None:
                for scope in " ".join(query.get("scope", [])).split():
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
            t = int(time.time())
            claims = {"iss": ts.issuer, "sub": user or "", "aud": query.get("service", [ts.service])[0],
                      "exp": t + 300, "nbf": t - 10, "iat": t, "jti": uuid.uuid4().hex, "access": access}
            head = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            signing_input = f"{_b64url(json.dumps(head).encode())}.{_b64url(json.dumps(claims).encode())}"
            sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": f"{signing_input}.{_b64url(sig)}", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="token-server")
    ts = TokenServer(server=server, thread=thread, ca_path=ca_path, users=dict(users))
    holder["ts"] = ts
    thread.start()
    return ts
