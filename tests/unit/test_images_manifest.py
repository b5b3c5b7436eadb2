"""Manifests, indexes, platform choice and the appended config, as plain values."""

import json

import pytest

from fairing.errors import ConfigurationError, RegistryError
from fairing.images.manifest import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Descriptor,
    LayerSpec,
    Platform,
    append_layers,
    build_index,
    build_manifest,
    canonical_json,
    config_media_type,
    layer_media_type,
    select_platform,
    sha256_digest,
)
from fairing.images.python_deps import pip_platform_tags, python_version_of, requirements_key

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")

BASE = {
    "architecture": "amd64",
    "os": "linux",
    "container_config": {"Hostname": "x"},
    "config": {"Env": ["PATH=/usr/bin", "PYTHONPATH=/base", "KEEP=1"], "Cmd": ["python3"], "Labels": {"a": "1"}},
    "rootfs": {"type": "layers", "diff_ids": [D1]},
    "history": [{"created_by": "base"}],
}


def test_canonical_json_is_stable():
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_build_manifest_shape():
    data = build_manifest(Descriptor("cfg", D1, 10), [Descriptor(DOCKER_LAYER_GZIP, D2, 20)], media_type=DOCKER_MANIFEST)
    value = json.loads(data)
    assert value["schemaVersion"] == 2 and value["mediaType"] == DOCKER_MANIFEST
    assert value["config"] == {"mediaType": "cfg", "digest": D1, "size": 10}
    assert value["layers"][0]["digest"] == D2
    assert layer_media_type(DOCKER_MANIFEST) == DOCKER_LAYER_GZIP and "oci" in layer_media_type(OCI_MANIFEST)
    assert "docker" in config_media_type(DOCKER_MANIFEST) and "oci" in config_media_type(OCI_MANIFEST)


def test_append_layers_returns_new_config_and_leaves_base_alone():
    before = json.dumps(BASE, sort_keys=True)
    out = append_layers(
        BASE,
        [LayerSpec(Descriptor(DOCKER_LAYER_GZIP, D2, 1), D2, "deps"), LayerSpec(Descriptor(DOCKER_LAYER_GZIP, D3, 1), D3, "code")],
        env={"FAIRING_RUNTIME": "1", "PYTHONPATH": ".fairing:/opt/fairing/python", "PATH": "/x"},
        entrypoint=["python3", "-m", "fairing_runtime"],
        workdir="/app",
        labels={"b": "2"},
    )
    assert json.dumps(BASE, sort_keys=True) == before
    cfg = out["config"]
    assert cfg["Entrypoint"] == ["python3", "-m", "fairing_runtime"] and "Cmd" not in cfg
    assert cfg["WorkingDir"] == "/app"
    assert cfg["Env"] == ["PATH=/x", "PYTHONPATH=.fairing:/opt/fairing/python:/base", "KEEP=1", "FAIRING_RUNTIME=1"]
    assert cfg["Labels"] == {"a": "1", "b": "2"}
    assert out["rootfs"]["diff_ids"] == [D1, D2, D3]
    assert [h["created_by"] for h in out["history"]] == ["base", "deps", "code"]
    assert "container_config" not in out and out["created"] == "1970-01-01T00:00:00Z"


def test_append_layers_rejects_non_image_config():
    with pytest.raises(RegistryError, match="rootfs"):
        append_layers({"config": {}}, [])


INDEX = {
    "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": DOCKER_MANIFEST, "digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": DOCKER_MANIFEST, "digest": D3, "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    ]
}


def test_select_platform():
    assert select_platform(INDEX, Platform.parse("linux/amd64")).digest == D2
    assert select_platform(INDEX, Platform.parse("linux/arm64/v8")).digest == D1
    assert select_platform(INDEX, Platform.parse("linux/arm/v7")).digest == D3
    with pytest.raises(ConfigurationError, match=r"linux/s390x.*linux/amd64, linux/arm/v7, linux/arm64"):
        select_platform(INDEX, Platform.parse("linux/s390x"))
    assert json.loads(build_index([Descriptor(DOCKER_MANIFEST, D1, 1, platform={"os": "linux"})]))["manifests"][0]["platform"]


@pytest.mark.parametrize("bad", ["amd64", "linux/", "a/b/c/d", ""])
def test_bad_platform(bad):
    with pytest.raises(ConfigurationError, match="platform must look like"):
        Platform.parse(bad)


def test_python_version_of_and_requirements_key():
    assert python_version_of({"config": {"Env": ["PYTHON_VERSION=3.12.4"]}}) == "3.12"
    assert python_version_of({"config": {"Labels": {"org.python.version": "3.10"}}}) == "3.10"
    assert python_version_of({"config": {"Env": ["PATH=/bin"]}}) is None
    amd = Platform.parse("linux/amd64")
    assert requirements_key(["b", "a"], "3.11", amd) != requirements_key(["a", "b"], "3.11", amd)  # order is pip's
    assert requirements_key(["a"], "3.11", amd) != requirements_key(["a"], "3.12", amd)
    assert requirements_key(["a"], "3.11", amd) != requirements_key(["a"], "3.11", Platform.parse("linux/arm64"))
    tags = pip_platform_tags(amd)
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert not any(t.startswith("manylinux_2_31") for t in tags)
    with pytest.raises(ConfigurationError):
        pip_platform_tags(Platform.parse("windows/amd64"))
