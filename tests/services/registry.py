"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8).

``start_registry()`` runs ``docker-registry serve CONFIG`` on a free loopback port with
its storage in a temporary directory, waits until ``/v2/`` answers, and returns a
:class:`Registry` handle. Two flavours:

* plain HTTP, anonymous (``start_registry()``);
* TLS with a self-signed CA generated here (with ``cryptography``) and htpasswd basic
  auth (``start_registry(tls=True, users={"alice": "secret"})``); ``handle.ca_path``
  is the CA to trust;
* bearer-token auth against a real token service (``start_registry(token=server)``,
  see ``token_server.py``).

The registry's access log (one line per HTTP request) goes to ``handle.access_log``;
``handle.requests()`` parses it, ``handle.mark()`` + ``handle.requests(since=mark)``
counts what one step sent. ``handle.stop()`` kills the process and deletes everything.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

_ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    size: int


@dataclass
class Registry:
    address: str  # host:port
    root: Path
    process: subprocess.Popen
    tls: bool = False
    ca_path: Optional[Path] = None
    users: dict = field(default_factory=dict)

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def request_log_lines(self) -> list[str]:
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if _ACCESS.search(line)]

    def requests(self, since: int = 0) -> list[Request]:
        """The HTTP requests the registry served (after ``since`` = an earlier ``mark()``)."""
        out = []
        for line in self.request_log_lines()[since:]:
            m = _ACCESS.search(line)
            out.append(Request(m.group(1), m.group(2), int(m.group(3)), 0 if m.group(4) == "-" else int(m.group(4))))
        return out

    def mark(self) -> int:
        """A position in the request log; flushes by waiting briefly for the log to settle."""
        time.sleep(0.2)
        return len(self.request_log_lines())

    def bytes_uploaded(self, since: int = 0) -> int:
        """Bytes the registry received in blob and manifest bodies (from its storage sizes
        is not possible, so from Content-Length of PUT/PATCH as the client declared)."""
        raise NotImplementedError("use a counting proxy; the access log records response sizes only")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def make_ca_and_cert(directory: Path, hostnames=("localhost",), ips=("127.0.0.1",)) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate it signed; returns (ca, cert, key) paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fairing test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def _htpasswd(users: dict, path: Path) -> None:
    if shutil.which("htpasswd") is None:
        raise RuntimeError("htpasswd is not installed; the TLS test registry needs it: apt-get install -y apache2-utils")
    lines = []
    for user, password in users.items():
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True).stdout
        lines.append(out.strip())
    path.write_text("\n".join(lines) + "\n")


def start_registry(*, tls: bool = False, users: Optional[dict] = None, token=None, timeout: float = 20.0) -> Registry:
    """Start a registry on a free loopback port; see the module docstring."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        raise RuntimeError(
            "The test registry needs Debian's docker-registry package, which is not installed: "
            "apt-get install -y docker-registry"
        )
    root = Path(tempfile.mkdtemp(prefix="fairing-registry-"))
    try:
        port = free_port()
        storage = root / "storage"
        storage.mkdir()
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{port}",
            f"  secret: {os.urandom(16).hex()}",
        ]
        ca_path = None
        if tls:
            ca_path, cert, key = make_ca_and_cert(root)
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if token is not None:  # a tests.services.token_server.TokenServer
            lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {token.service}",
                      f"    issuer: {token.issuer}", f"    rootcertbundle: {token.ca_path}"]
        elif users:
            _htpasswd(users, root / "htpasswd")
            lines += ["auth:", "  htpasswd:", "    realm: fairing-test", f"    path: {root / 'htpasswd'}"]
        config = root / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        access = open(root / "access.log", "wb")
        errors = open(root / "registry.log", "wb")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=access, stderr=errors,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        access.close()
        errors.close()
        handle = Registry(address=f"127.0.0.1:{port}", root=root, process=proc, tls=tls, ca_path=ca_path,
                          users=dict(users or {}))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    ctx = ssl.create_default_context(cafile=str(ca_path)) if tls else None
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = (root / "registry.log").read_text(errors="replace")[-2000:]
            handle.stop()
            raise RuntimeError(f"docker-registry exited with {proc.returncode} at start:\n{log}")
        try:
            urllib.request.urlopen(f"{handle.url}/v2/", timeout=2, context=ctx)
            break
        except urllib.error.HTTPError:
            break  # 401: it is up
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"docker-registry did not answer on {handle.address} within {timeout} s")
            time.sleep(0.1)
    return handle
