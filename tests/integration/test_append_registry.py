"""AppendBuilder and the registry client against a real registry (Debian's docker-registry)."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from urllib.parse import unquote

import pytest

from fairing.builders.append import AppendBuilder
from fairing.context import BuildContext
from fairing.errors import ConfigurationError, RegistryAuthError, RegistryError, RegistryUnreachableError
from fairing.events import Progress, Stage
from fairing.images import ImageRef
from fairing.images.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    Descriptor,
    build_index,
    canonical_json,
    sha256_digest,
)
from fairing.artifacts import RegistryImage
from fairing.images.registry import RegistryClient, StaticCredentials
from tests.services.proxy import Proxy
from tests.services.registry import free_port

from .conftest import TLS_USERS


def _context(line: str = "print('hello from fairing')", n_extra: int = 3) -> BuildContext:
    files = {"main.py": (line + "\n").encode()}
    for i in range(n_extra):
        files[f"data/file{i}.txt"] = f"data {i}\n".encode() * 100
    return BuildContext(files=files, entrypoint=["python3", "main.py"], env={"MODE": "test"})


def _diff_id(ctx: BuildContext) -> str:
    """The code layer's diff_id is the context's own digest under its workdir."""
    assert ctx.digest(prefix=ctx.workdir) == sha256_digest(ctx.tar_bytes(prefix=ctx.workdir))
    return ctx.digest(prefix=ctx.workdir)


def _uploaded_digests(requests) -> list[str]:
    """Digests of blobs whose upload was completed (PUT .../blobs/uploads/...?digest=...)."""
    out = []
    for r in requests:
        if r.method == "PUT" and "/blobs/uploads/" in r.path and "digest=" in r.path:
            out.append(unquote(r.path.split("digest=", 1)[1].split("&", 1)[0]))
    return out


def _manifest(registry, ref: ImageRef) -> dict:
    with RegistryClient(insecure=True) as client:
        data, _mt, digest = client.get_manifest(ref)
        assert digest == ref.digest
        value = json.loads(data)
        config = json.loads(client.get_blob(ref, value["config"]["digest"]))
    return {"manifest": value, "config": config}


def _repo() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


def test_new_image_pushed_with_config(registry, base_image, fairing_cache):
    events = []
    with AppendBuilder(base_image, registry.address, repository=_repo(), cache_dir=fairing_cache) as builder:
        ref = builder.build(_context(), on_event=events.append)
    assert ref.pinned and ref.registry == registry.address and ref.tag.startswith("fairing-")
    got = _manifest(registry, ref)
    manifest, config = got["manifest"], got["config"]
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert len(manifest["layers"]) == 2  # base + code
    cfg = config["config"]
    assert cfg["Entrypoint"] == ["python3", "main.py"] and "Cmd" not in cfg
    assert cfg["WorkingDir"] == "/app"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["FAIRING_RUNTIME"] == "1" and env["MODE"] == "test" and env["PYTHON_VERSION"] == "3.11"
    assert cfg["Labels"]["org.opencontainers.image.base.digest"] == base_image.digest
    assert len(config["rootfs"]["diff_ids"]) == 2 and len(config["history"]) == 2
    assert config["rootfs"]["diff_ids"][-1] == _diff_id(_context())
    notes = {e.note for e in events if isinstance(e, Progress)}
    assert {"uploaded", "mounted"} <= notes
    # the pipeline (submit) reports "build"; the builder reports its parts, each once
    assert [(e.name, e.status) for e in events if isinstance(e, Stage)] == [("push", "started"), ("push", "finished")]
    assert isinstance(ref, RegistryImage)


def test_same_context_same_digest_and_unchanged_resubmit_uploads_nothing(registry, base_image, fairing_cache, tmp_path):
    repo = _repo()
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=fairing_cache) as builder:
        first = builder.build(_context())
    # a new builder (a new process, say) with an empty local cache: same digest, no blob uploaded
    mark = registry.mark()
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=tmp_path / "c") as builder:
        again = builder.build(_context())
    assert again == first
    reqs = registry.requests(mark)
    assert _uploaded_digests(reqs) == []
    assert not [r for r in reqs if r.method in ("PUT", "PATCH", "POST")], reqs
    # same builder again, warm cache: at most 2 requests (here: 1, the base is pinned)
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=fairing_cache) as builder:
        builder.build(_context())
        mark = registry.mark()
        builder.build(_context())
    reqs = registry.requests(mark)
    assert len(reqs) <= 2, reqs


def test_unchanged_resubmit_by_tag_makes_one_request(registry, base_image, fairing_cache):
    """The base tag's digest is remembered for base_max_age seconds (across builders and
    processes): an unchanged re-submit only asks whether the image is there. With
    base_max_age=0 the tag is looked up again at every build."""
    by_tag = base_image.with_tag("3.11-bookworm")
    by_tag = ImageRef(by_tag.registry, by_tag.repository, tag="3.11-bookworm")
    repo = _repo()
    with AppendBuilder(by_tag, registry.address, repository=repo, cache_dir=fairing_cache) as builder:
        builder.build(_context())
    mark = registry.mark()
    with AppendBuilder(by_tag, registry.address, repository=repo, cache_dir=fairing_cache) as builder:
        builder.build(_context())
    reqs = registry.requests(mark)
    assert [(r.method, r.path.split("/manifests/")[0]) for r in reqs] == [("HEAD", f"/v2/{repo}")], reqs
    mark = registry.mark()
    with AppendBuilder(by_tag, registry.address, repository=repo, cache_dir=fairing_cache, base_max_age=0) as builder:
        builder.build(_context())
    reqs = registry.requests(mark)
    assert [r.method for r in reqs] == ["HEAD", "HEAD"] and "3.11-bookworm" in reqs[0].path, reqs


def test_one_line_change_uploads_only_code_layer(registry, base_image, fairing_cache):
    repo = _repo()
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=fairing_cache) as builder:
        first = builder.build(_context("print(1)"))
        mark = registry.mark()
        second = builder.build(_context("print(2)"))
    assert second.digest != first.digest
    reqs = registry.requests(mark)
    got = _manifest(registry, second)
    code_layer = got["manifest"]["layers"][-1]["digest"]
    config = got["manifest"]["config"]["digest"]
    assert sorted(_uploaded_digests(reqs)) == sorted([code_layer, config])
    assert not [r for r in reqs if "mount=" in r.path]
    assert got["manifest"]["layers"][0] == _manifest(registry, first)["manifest"]["layers"][0]


def test_cross_repository_mount(registry, base_image, fairing_cache):
    mark = registry.mark()
    with AppendBuilder(base_image, registry.address, repository=_repo(), cache_dir=fairing_cache) as builder:
        ref = builder.build(_context())
    reqs = registry.requests(mark)
    base_layer = _manifest(registry, ref)["manifest"]["layers"][0]["digest"]
    mounts = [r for r in reqs if r.method == "POST" and "mount=" in r.path]
    assert len(mounts) == 1 and mounts[0].status == 201
    assert base_layer.replace(":", "%3A") in mounts[0].path or base_layer in unquote(mounts[0].path)
    assert base_layer not in _uploaded_digests(reqs)


def _push_arm64_variant_and_index(registry, base_image) -> ImageRef:
    """An index with the amd64 base and an 'arm64' image (same layer, arm64 config)."""
    with RegistryClient(insecure=True) as client:
        data, _mt, _d = client.get_manifest(base_image)
        amd = json.loads(data)
        config = json.loads(client.get_blob(base_image, amd["config"]["digest"]))
        config["architecture"] = "arm64"
        config["variant"] = "v8"
        cfg_bytes = canonical_json(config)
        cfg_digest = sha256_digest(cfg_bytes)
        client.upload_blob(base_image, cfg_digest, cfg_bytes)
        arm = dict(amd, config=dict(amd["config"], digest=cfg_digest, size=len(cfg_bytes)))
        arm_bytes = canonical_json(arm)
        arm_digest = client.put_manifest(base_image.with_digest(sha256_digest(arm_bytes)), arm_bytes, DOCKER_MANIFEST)
        index = build_index(
            [
                Descriptor(DOCKER_MANIFEST, arm_digest, len(arm_bytes), platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
                Descriptor(DOCKER_MANIFEST, base_image.digest, len(data), platform={"os": "linux", "architecture": "amd64"}),
            ],
            media_type=DOCKER_MANIFEST_LIST,
        )
        ref = ImageRef(base_image.registry, base_image.repository, tag="multiarch")
        digest = client.put_manifest(ref, index, DOCKER_MANIFEST_LIST)
    return ref, digest, arm_digest


def test_platform_chosen_from_multi_arch_index(registry, base_image, fairing_cache):
    index_ref, _index_digest, arm_digest = _push_arm64_variant_and_index(registry, base_image)
    with AppendBuilder(index_ref, registry.address, repository=_repo(), cache_dir=fairing_cache) as builder:
        amd = builder.build(_context())
    with AppendBuilder(index_ref, registry.address, repository=_repo(), platform="linux/arm64",
                       cache_dir=fairing_cache) as builder:
        arm = builder.build(_context())
    amd_cfg = _manifest(registry, amd)["config"]
    arm_cfg = _manifest(registry, arm)["config"]
    assert amd_cfg["architecture"] == "amd64" and arm_cfg["architecture"] == "arm64"
    assert amd_cfg["config"]["Labels"]["org.opencontainers.image.base.digest"] == base_image.digest
    assert arm_cfg["config"]["Labels"]["org.opencontainers.image.base.digest"] == arm_digest
    with AppendBuilder(index_ref, registry.address, platform="linux/s390x", cache_dir=fairing_cache) as builder:
        with pytest.raises(ConfigurationError, match=r"no variant for platform linux/s390x.*amd64.*arm64"):
            builder.build(_context())


def test_tls_basic_auth_push(tls_registry, tls_base_image, fairing_cache, caplog):
    import logging

    (user, password), = TLS_USERS.items()
    events = []
    caplog.set_level(logging.DEBUG)
    with AppendBuilder(tls_base_image, tls_registry.address, repository=_repo(), username=user, password=password,
                       ca_bundle=str(tls_registry.ca_path), cache_dir=fairing_cache) as builder:
        ref = builder.build(_context(), on_event=events.append)
        builder.build(_context("print('again')"))  # no callback: events go to the 'fairing' logger
        assert password not in repr(builder) and password not in repr(builder.client.auth.__dict__.get("_credentials"))
    assert ref.pinned
    with RegistryClient(credentials=StaticCredentials(user, password), ca_bundle=str(tls_registry.ca_path)) as client:
        assert client.head_manifest(ref).digest == ref.digest
        manifest = json.loads(client.get_manifest(ref)[0])
        config = client.get_blob(ref, manifest["config"]["digest"])
        code = client.get_blob(ref, manifest["layers"][-1]["digest"])
    # credentials never in events, logs, the config or the layer
    assert password not in repr(events) and password not in caplog.text
    assert password.encode() not in config and password.encode() not in gzip.decompress(code)
    assert "fairing" in caplog.text or caplog.records  # the logger fallback did receive events


def test_credentials_from_docker_config(tls_registry, tls_base_image, fairing_cache, tmp_path, monkeypatch):
    import base64

    (user, password), = TLS_USERS.items()
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {tls_registry.address: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    ))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with AppendBuilder(tls_base_image, tls_registry.address, repository=_repo(), ca_bundle=str(tls_registry.ca_path),
                       cache_dir=fairing_cache) as builder:
        assert builder.build(_context()).pinned


def test_wrong_credentials_clear_auth_error(tls_registry, tls_base_image, fairing_cache):
    (user, _password), = TLS_USERS.items()
    secret = "definitely-wrong-" + uuid.uuid4().hex
    with AppendBuilder(tls_base_image, tls_registry.address, repository=_repo(), username=user, password=secret,
                       ca_bundle=str(tls_registry.ca_path), cache_dir=fairing_cache) as builder:
        with pytest.raises(RegistryAuthError) as info:
            builder.build(_context())
    message = str(info.value)
    assert "refused" in message and user in message and secret not in message
    assert info.value.status == 401


def test_missing_credentials_clear_auth_error(tls_registry, tls_base_image, fairing_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # empty: no credentials anywhere
    with AppendBuilder(tls_base_image, tls_registry.address, repository=_repo(), ca_bundle=str(tls_registry.ca_path),
                       cache_dir=fairing_cache) as builder:
        with pytest.raises(RegistryAuthError, match="requires a login"):
            builder.build(_context())


def test_untrusted_tls_certificate_clear_error(tls_registry, tls_base_image, fairing_cache):
    (user, password), = TLS_USERS.items()
    with AppendBuilder(tls_base_image, tls_registry.address, username=user, password=password,
                       cache_dir=fairing_cache) as builder:
        with pytest.raises(RegistryUnreachableError, match="certificate is not trusted.*ca_bundle="):
            builder.build(_context())


def test_unreachable_registry_clear_error(base_image, fairing_cache):
    dead = f"127.0.0.1:{free_port()}"
    with AppendBuilder(f"{dead}/some/base:1", dead, cache_dir=fairing_cache) as builder:
        builder.client.backoff = 0.05
        with pytest.raises(RegistryUnreachableError, match=f"Cannot connect to the registry at {dead}.*Connection refused"):
            builder.build(_context())


def test_cut_upload_is_retried_and_succeeds(registry, base_image, fairing_cache):
    big = os.urandom(3 << 20)  # incompressible: the code layer is ~3 MiB
    ctx = BuildContext(files={"main.py": b"print('big')\n", "blob.bin": big}, entrypoint=["python3", "main.py"])
    with Proxy(registry.address, cut_after=1 << 20, cuts=1) as proxy:
        events = []
        with AppendBuilder(ImageRef(proxy.address, base_image.repository, digest=base_image.digest), proxy.address,
                           repository=_repo(), cache_dir=fairing_cache) as builder:
            builder.client.backoff = 0.05
            ref = builder.build(ctx, on_event=events.append)
        assert proxy.cuts_done == 1
    assert any(isinstance(e, Progress) and e.note.startswith("retrying") for e in events)
    got = _manifest(registry, ImageRef(registry.address, ref.repository, digest=ref.digest))
    assert got["config"]["rootfs"]["diff_ids"][-1] == _diff_id(ctx)


def test_chunked_upload_cut_resumes(registry, base_image):
    data = os.urandom(5 << 20)
    digest = sha256_digest(data)
    with Proxy(registry.address, cut_after=3 << 20, cuts=1) as proxy:
        ref = ImageRef(proxy.address, _repo())
        seen = []
        with RegistryClient(insecure=True, chunk_size=1 << 20, backoff=0.05) as client:
            how = client.upload_blob(ref, digest, data, on_progress=lambda d, t, n: seen.append(n))
            assert how == "uploaded" and proxy.cuts_done == 1
            assert client.has_blob(ref, digest)
            assert client.get_blob(ref, digest) == data
    assert any(n.startswith("retrying") for n in seen)


def test_progress_events_per_blob(registry):
    """Bytes as they go (no note: a renderer redraws one bar), then one final note."""
    data = os.urandom(4 << 20)
    digest = sha256_digest(data)
    ref = ImageRef(registry.address, _repo())
    events = []
    with RegistryClient(insecure=True) as client:
        assert client.upload_blob(ref, digest, data, on_progress=lambda *e: events.append(e)) == "uploaded"
        assert client.upload_blob(ref, digest, data, on_progress=lambda *e: events.append(e)) == "skipped"
    middle = [e for e in events[:-2] if not e[2]]
    assert len(middle) >= 3 and [e[0] for e in middle] == sorted(e[0] for e in middle)
    assert all(total == len(data) for _done, total, _note in events)
    assert events[-2] == (len(data), len(data), "uploaded") and events[-1] == (len(data), len(data), "skipped")


def test_bearer_token_auth(token_registry, base_image, fairing_cache):
    """Token challenges with repository scopes: push to one repository, mount from another."""
    from tests.services.base_image import push_base_image

    from .conftest import TOKEN_USERS

    (user, password), = TOKEN_USERS.items()
    base = push_base_image(token_registry.address, username=user, password=password)
    before = len(token_registry.token.requests)
    mark = token_registry.mark()
    with AppendBuilder(base, token_registry.address, repository=_repo(), username=user, password=password,
                       cache_dir=fairing_cache) as builder:
        ref = builder.build(_context())
        builder.build(_context("print('again')"))
    reqs = token_registry.requests(mark)
    assert ref.pinned
    assert [r for r in reqs if r.method == "POST" and "mount=" in r.path and r.status == 201], "\n".join(f"{r.method} {r.path[:90]} {r.status}" for r in reqs)
    scopes = " ".join(unquote(r) for r in token_registry.token.requests[before:])
    assert f"repository:{ref.repository}:pull,push" in scopes and f"repository:{base.repository}:pull" in scopes
    # tokens are reused: far fewer token requests than registry requests
    assert len(token_registry.token.requests) - before <= 4, token_registry.token.requests[before:]

    with AppendBuilder(base, token_registry.address, username=user, password="wrong-" + password,
                       cache_dir=fairing_cache) as builder:
        with pytest.raises(RegistryAuthError, match="token service.*refused user 'bob'") as info:
            builder.build(_context())
    assert password not in str(info.value)


def test_oci_base_gives_oci_image(registry, base_image, fairing_cache):
    """A base with OCI media types gives an OCI manifest, config and layers."""
    from fairing.images.manifest import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, build_manifest

    with RegistryClient(insecure=True) as client:
        docker = json.loads(client.get_manifest(base_image)[0])
        layer = docker["layers"][0]
        config = docker["config"]
        oci = build_manifest(Descriptor(OCI_CONFIG, config["digest"], config["size"]),
                             [Descriptor(OCI_LAYER_GZIP, layer["digest"], layer["size"])], media_type=OCI_MANIFEST)
        oci_ref = ImageRef(base_image.registry, base_image.repository, tag="oci")
        client.put_manifest(oci_ref, oci, OCI_MANIFEST)
    with AppendBuilder(oci_ref, registry.address, repository=_repo(), cache_dir=fairing_cache) as builder:
        ref = builder.build(_context())
    manifest = _manifest(registry, ref)["manifest"]
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["config"]["mediaType"] == OCI_CONFIG
    assert {l["mediaType"] for l in manifest["layers"]} == {OCI_LAYER_GZIP}


def test_base_from_another_registry_is_copied(registry, base_image, tls_registry, fairing_cache):
    """Base on the plain registry, target on the TLS one: the base layer is streamed across."""
    (user, password), = TLS_USERS.items()
    events = []
    with AppendBuilder(base_image, tls_registry.address, repository=_repo(), username=user, password=password,
                       ca_bundle=str(tls_registry.ca_path), cache_dir=fairing_cache) as builder:
        ref = builder.build(_context(), on_event=events.append)
    base_events = [e for e in events if isinstance(e, Progress) and e.task.startswith("base")]
    assert base_events[-1].note in ("uploaded", "skipped")
    with RegistryClient(credentials=StaticCredentials(user, password), ca_bundle=str(tls_registry.ca_path)) as client:
        manifest = json.loads(client.get_manifest(ref)[0])
        assert client.has_blob(ref, manifest["layers"][0]["digest"])


def test_client_mount_and_fallback(registry):
    data = os.urandom(1 << 16)
    digest = sha256_digest(data)
    a, b, c = (ImageRef(registry.address, _repo()) for _ in range(3))
    with RegistryClient(insecure=True) as client:
        assert client.upload_blob(a, digest, data) == "uploaded"
        mark = registry.mark()
        assert client.upload_blob(b, digest, data, mount_from=a.repository) == "mounted"
        assert not _uploaded_digests(registry.requests(mark))
        # mounting from a repository that lacks the blob: the registry opens an upload instead
        other = os.urandom(1 << 10)
        assert client.upload_blob(c, sha256_digest(other), other, mount_from=a.repository) == "uploaded"
        assert client.get_blob(c, sha256_digest(other)) == other


def test_insecure_registry_with_self_signed_certificate(tls_registry, tls_base_image, fairing_cache):
    """insecure=[host]: HTTPS without certificate checks (Kubeflow Fairing's 'insecure registry' SSL errors)."""
    (user, password), = TLS_USERS.items()
    with AppendBuilder(tls_base_image, tls_registry.address, repository=_repo(), username=user, password=password,
                       insecure=[tls_registry.address], cache_dir=fairing_cache) as builder:
        assert builder.build(_context()).pinned
        assert builder.client.transport.scheme[tls_registry.address] == "https"


def test_missing_base_image_clear_error(registry, fairing_cache):
    with AppendBuilder(f"{registry.address}/no/such-base:1", registry.address, cache_dir=fairing_cache) as builder:
        with pytest.raises(RegistryError, match="does not exist.*MANIFEST_UNKNOWN") as info:
            builder.build(_context())
    assert info.value.status == 404
