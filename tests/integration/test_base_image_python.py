"""The base image's Python is found from its files when its config does not say, and a
function for another Python is refused before anything is uploaded (a real registry,
its requests counted; a real Docker engine runs the result)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import uuid

import pytest

from fairing import PythonMismatchError
from fairing.builders.append import AppendBuilder
from fairing.deployers.docker import DockerDeployer
from fairing.images import ImageRef
from fairing.images.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, build_manifest, canonical_json
from fairing.images.registry import RegistryClient
from fairing.preprocessors.function import FunctionPreprocessor

from tests.integration.docker_fixtures import docker_client  # noqa: F401  (a fixture)

# with the other tests that remove images from the engine (see test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")


def _push(registry, repository: str, config: dict, layer: "bytes | tuple") -> ImageRef:
    """Push a one-layer image (``layer``: gzipped bytes, or (path, digest, size)) with ``config``."""
    ref = ImageRef.parse(f"{registry.address}/{repository}:latest")
    with RegistryClient() as client:
        if isinstance(layer, bytes):
            digest, size = "sha256:" + hashlib.sha256(layer).hexdigest(), len(layer)
            client.upload_blob(ref, digest, layer)
        else:
            path, digest, size = layer
            client.upload_blob(ref, digest, path, size=size)
        config_bytes = canonical_json(config)
        config_desc = Descriptor(DOCKER_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
        client.upload_blob(ref, config_desc.digest, config_bytes)
        manifest = build_manifest(config_desc, [Descriptor(DOCKER_LAYER_GZIP, digest, size)], media_type=DOCKER_MANIFEST)
        return ref.with_digest(client.put_manifest(ref, manifest, DOCKER_MANIFEST))


def _python37_layer() -> tuple[bytes, str]:
    """A layer that holds a Python 3.7 (its files' names are all that matter here)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("usr/", "usr/lib/", "usr/lib/python3.7/", "usr/bin/"):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        data = b"#!/bin/false\n"
        info = tarfile.TarInfo("usr/bin/python3.7")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, "python3.7"
        tar.addfile(link)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def _config(diff_id: str, env: list[str]) -> dict:
    return {"architecture": "amd64", "os": "linux", "config": {"Env": env, "Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]}}


def _triple(x):
    return 3 * x


def test_a_function_for_another_python_is_refused_before_any_upload(registry, tmp_path):
    layer, diff_id = _python37_layer()
    base = _push(registry, f"py37/{uuid.uuid4().hex[:8]}", _config(diff_id, ["PATH=/usr/bin"]), layer)
    context = FunctionPreprocessor(_triple, (2,)).context()
    target = f"jobs/{uuid.uuid4().hex[:8]}"
    with AppendBuilder(base, registry.address, repository=target, cache_dir=tmp_path / "cache") as builder:
        mark = registry.mark()
        with pytest.raises(PythonMismatchError) as info:
            builder.build(context)
        requests = registry.requests(mark)
        err = info.value
        assert (err.image, err.submitter) == ("3.7", "3.11")
        assert "has Python 3.7, but this function was pickled with Python 3.11" in str(err)
        assert "Use a base image with Python 3.11" in str(err)
        assert not [r for r in requests if r.method in ("POST", "PUT", "PATCH")], requests  # nothing uploaded
        assert not [r for r in requests if target in r.path], requests  # the target was not even looked at
        layer_reads = [r for r in requests if r.method == "GET" and "/blobs/" in r.path]
        assert len(layer_reads) == 2  # the config, then the layer's files

        # cached by digest: a second try reads no layer
        mark = registry.mark()
        with pytest.raises(PythonMismatchError):
            builder.build(context)
        assert not [r for r in registry.requests(mark) if "/blobs/" in r.path]


def test_a_base_image_without_python_metadata_builds_and_runs_a_function(registry, docker_client, tmp_path):
    from tests.services.base_image import IMAGE_ENV, base_config, base_layer

    debian = base_layer()
    config = base_config(debian)
    config["config"]["Env"] = [e for e in IMAGE_ENV if not e.startswith("PYTHON_VERSION=")]
    base = _push(registry, f"nometa/{uuid.uuid4().hex[:8]}", config, (debian.path, debian.digest, debian.size))

    with AppendBuilder(base, registry.address, repository=f"jobs/{uuid.uuid4().hex[:8]}",
                       cache_dir=tmp_path / "cache") as builder:  # no python_version=
        image = builder.build(FunctionPreprocessor(_triple, (14,)).context())
    handle = DockerDeployer().deploy(image)
    try:
        assert handle.result(120) == 42
    finally:
        handle.delete()
        docker_client.images.remove(str(image), force=True)


def test_the_one_liner_with_append_and_settings_from_the_environment(registry, base_image, docker_client, tmp_path,
                                                                    monkeypatch, capsys):
    """Kubeflow Fairing's one-liner, with the registry and base image from FAIRING_* instead
    of arguments, deployed to a local Docker engine; the job's prints show here."""
    import warnings

    from fairing import config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAIRING_REGISTRY", f"{registry.address}/one-liner")
    monkeypatch.setenv("FAIRING_BASE_IMAGE", str(base_image))

    def train():
        print("Training a model ...", flush=True)
        return "done"

    config.reset()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config.set_builder("append", push=True)
            config.set_deployer("docker")
        remote_train = config.fn(train)
        assert remote_train() == "done"
    finally:
        config.reset()
    assert "Training a model ...\n" in capsys.readouterr().out
    assert any("push= is Kubeflow Fairing's option" in str(w.message) for w in caught)
    leftovers = docker_client.images.list(name=f"{registry.address}/one-liner/fairing-job")
    for image in leftovers:
        docker_client.images.remove(image.id, force=True)


def _tar_entry(name: str, data: bytes = b"", *, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = len(data)
    return info.tobuf(format=tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512)


def _estargz_layer(files: list[bytes], toc: dict) -> tuple[bytes, str]:
    """An eStargz layer: the files' gzip member, the TOC's member, the 51-byte footer."""
    import json
    import struct

    body = gzip.compress(b"".join(files), mtime=0)
    toc_json = json.dumps(toc).encode()
    toc_member = gzip.compress(_tar_entry("stargz.index.json", toc_json) + b"\0" * 1024, mtime=0)
    extra = b"SG" + struct.pack("<H", 22) + b"%016xSTARGZ" % len(body)
    footer = (b"\x1f\x8b\x08\x04" + b"\0" * 4 + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
              + b"\x01\x00\x00\xff\xff" + b"\0" * 8)
    assert len(footer) == 51
    raw = gzip.decompress(body + toc_member + footer)
    return body + toc_member + footer, "sha256:" + hashlib.sha256(raw).hexdigest()


def test_an_estargz_layer_is_read_by_two_ranged_requests(registry, tmp_path):
    import os

    from fairing.images.base_python import ESTARGZ_TOC
    from fairing.images.manifest import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST

    noise = os.urandom(2 << 20)  # 2 MiB that must not be downloaded
    layer, diff_id = _estargz_layer(
        [_tar_entry("opt/weights.bin", noise), _tar_entry("usr/bin/python3.7", b"#!"),
         _tar_entry("usr/bin/python3", link="python3.7")],
        {"version": 1, "entries": [{"name": "opt/weights.bin", "type": "reg", "size": len(noise)},
                                   {"name": "usr/bin/python3.7", "type": "reg", "size": 2},
                                   {"name": "usr/bin/python3", "type": "symlink", "linkName": "python3.7"}]})
    ref = ImageRef.parse(f"{registry.address}/estargz/{uuid.uuid4().hex[:8]}:latest")
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config_bytes = canonical_json(_config(diff_id, ["PATH=/usr/bin"]))
    config_desc = Descriptor(OCI_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
    with RegistryClient() as client:
        client.upload_blob(ref, digest, layer)
        client.upload_blob(ref, config_desc.digest, config_bytes)
        manifest = build_manifest(config_desc, [Descriptor(OCI_LAYER_GZIP, digest, len(layer),
                                                           annotations={ESTARGZ_TOC: "sha256:" + "0" * 64})],
                                  media_type=OCI_MANIFEST)
        base = ref.with_digest(client.put_manifest(ref, manifest, OCI_MANIFEST))

    with AppendBuilder(base, registry.address, repository=f"jobs/{uuid.uuid4().hex[:8]}",
                       cache_dir=tmp_path / "cache") as builder:
        mark = registry.mark()
        with pytest.raises(PythonMismatchError, match="has Python 3.7"):
            builder.build(FunctionPreprocessor(_triple, (1,)).context())
    layer_reads = [r for r in registry.requests(mark) if r.method == "GET" and digest in r.path]
    assert [r.status for r in layer_reads] == [206, 206], layer_reads
    assert sum(r.size for r in layer_reads) < 10_000  # the footer and the TOC, not the 2 MiB
