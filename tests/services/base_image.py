"""A real Debian bookworm + python3 base image, built without Docker and without pulling.

Nothing can be pulled from public registries on the test machines, so the harness makes
its own base image:

1. ``mmdebstrap --variant=minbase --include=python3,python3-pip,ca-certificates bookworm``
   writes a root filesystem tar (Debian packages come from the apt mirror). The host CA
   bundle named by ``$PIP_CERT`` (else ``$SSL_CERT_FILE``, else Debian's default bundle)
   replaces the image's ``/etc/ssl/certs/ca-certificates.crt``, so ``pip`` inside a
   container trusts the same TLS interception proxy the host does.
2. The tar is gzipped reproducibly and cached under ``~/.cache/fairing-tests/`` keyed by
   a hash of the recipe (this file's RECIPE and the CA bundle), so it is built once per
   machine (about 1-2 minutes) and reused by every later run.
3. :func:`push_base_image` pushes it as a single-layer image (Docker schema 2 media types,
   linux/amd64, ``PYTHON_VERSION=3.11``) to any registry with fairing's own registry
   client: no Docker needed.

Used by the append-builder tests, the Docker-builder tests and the cluster tests::

    from tests.services.base_image import push_base_image
    ref = push_base_image("127.0.0.1:5000", repository="fairing-tests/python", insecure=True)
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: What goes into the root filesystem; changing it changes the cache key.
RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["ca-certificates", "python3", "python3-pip"],
    "mirror": "http://deb.debian.org/debian",
    "python_version": "3.11",
    "version": 2,
}

CACHE_DIR = Path(os.environ.get("FAIRING_TESTS_CACHE", Path.home() / ".cache" / "fairing-tests"))

#: The image config's environment. pip must trust the host's CA bundle inside containers.
IMAGE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHON_VERSION=3.11",
    "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
    "PIP_BREAK_SYSTEM_PACKAGES=1",
    "PIP_DISABLE_PIP_VERSION_CHECK=1",
]


def _ca_bundle() -> Path:
    for var in ("PIP_CERT", "SSL_CERT_FILE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return Path("/etc/ssl/certs/ca-certificates.crt")


def _cache_key() -> str:
    h = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
    ca = _ca_bundle()
    if ca.is_file():
        h.update(ca.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BaseLayer:
    """The cached, gzipped root filesystem and its identities."""

    path: Path  # the .tar.gz
    digest: str  # sha256 of the gzipped blob
    diff_id: str  # sha256 of the uncompressed tar
    size: int


def _build_rootfs(target: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError(
            "mmdebstrap is not installed, so the test base image cannot be built. "
            "Install it with: apt-get install -y mmdebstrap"
        )
    ca = _ca_bundle()
    cmd = [
        "mmdebstrap",
        "--variant=" + RECIPE["variant"],
        "--include=" + ",".join(RECIPE["include"]),
        "--customize-hook=cp " + str(ca) + ' "$1/etc/ssl/certs/ca-certificates.crt"',
        # a smaller image: no apt lists, docs or caches
        "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* \"$1\"/usr/share/doc/* "
        "\"$1\"/usr/share/man/* \"$1\"/usr/share/locale/*",
        RECIPE["suite"],
        str(target),
        RECIPE["mirror"],
    ]
    env = dict(os.environ, SOURCE_DATE_EPOCH="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"mmdebstrap failed (exit {proc.returncode}) building the test base image:\n{proc.stderr[-4000:]}"
        )


def base_layer() -> BaseLayer:
    """The cached layer, building it first if needed (safe across concurrent processes)."""
    key = _cache_key()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / f"debian-bookworm-python3-{key}.tar.gz"
    meta = out.with_suffix(".json")
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out.is_file() and meta.is_file()):
            with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
                raw = Path(tmp) / "rootfs.tar"
                _build_rootfs(raw)
                diff = hashlib.sha256()
                gz_path = Path(tmp) / "rootfs.tar.gz"
                with raw.open("rb") as src, open(gz_path, "wb") as dst:
                    with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
                        while chunk := src.read(1 << 20):
                            diff.update(chunk)
                            gz.write(chunk)
                blob = hashlib.sha256()
                with gz_path.open("rb") as fh:
                    while chunk := fh.read(1 << 20):
                        blob.update(chunk)
                info = {
                    "digest": "sha256:" + blob.hexdigest(),
                    "diff_id": "sha256:" + diff.hexdigest(),
                    "size": gz_path.stat().st_size,
                }
                os.replace(gz_path, out)
                meta.write_text(json.dumps(info))
    info = json.loads(meta.read_text())
    return BaseLayer(path=out, digest=info["digest"], diff_id=info["diff_id"], size=info["size"])


def base_config(layer: BaseLayer) -> dict:
    """The image config of the base image (fixed 'created' for a stable digest)."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": list(IMAGE_ENV),
            "Cmd": ["python3"],
            "Labels": {"org.opencontainers.image.description": "fairing test base: Debian bookworm + python3"},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "mmdebstrap " + json.dumps(RECIPE, sort_keys=True)}],
    }


def push_base_image(
    registry: str,
    *,
    repository: str = "fairing-tests/python",
    tag: str = "3.11-bookworm",
    insecure: bool = False,
    ca_bundle: str | None = None,
    username: str | None = None,
    password: str | None = None,
):
    """Push the base image to ``registry``; returns its :class:`fairing.images.ImageRef`
    pinned by digest (the tag is set too). Nothing is uploaded when it is already there."""
    from fairing.images import ImageRef
    from fairing.images.registry import RegistryClient, StaticCredentials
    from fairing.images.manifest import Descriptor, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, build_manifest, canonical_json

    layer = base_layer()
    config_bytes = canonical_json(base_config(layer))
    ref = ImageRef.parse(f"{registry}/{repository}:{tag}")
    creds = StaticCredentials(username, password) if username else None
    client = RegistryClient(insecure=insecure, ca_bundle=ca_bundle, credentials=creds)
    try:
        config_desc = Descriptor(DOCKER_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
        layer_desc = Descriptor(DOCKER_LAYER_GZIP, layer.digest, layer.size)
        manifest = build_manifest(config_desc, [layer_desc], media_type=DOCKER_MANIFEST)
        client.upload_blob(ref, config_desc.digest, config_bytes)
        client.upload_blob(ref, layer.digest, layer.path, size=layer.size)
        digest = client.put_manifest(ref, manifest, DOCKER_MANIFEST)
        return ref.with_digest(digest)
    finally:
        client.close()


if __name__ == "__main__":  # build the cache: python -m tests.services.base_image
    print(base_layer())
