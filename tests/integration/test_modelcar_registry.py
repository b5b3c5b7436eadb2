"""A modelcar is composed in the registry: the job's runtime pushed its files once more as an image
layer, and the submitter only writes a config and a manifest around it and the base's layers,
mounted. Measured with a byte-counting proxy between the submitter and a loopback registry; the
image is then run by a real Docker engine the way KServe runs it (its command given as arguments,
as KServe's ``uidModelcar``). Hostile cases: an artifact that does not exist, a model layer gone or
lying about its size, an image that is not an outputs artifact, names a layer cannot hold, a huge
file, Ctrl-C while composing: typed errors, and nothing left in the registry."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import tracemalloc
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from fairing import ConfigurationError, RegistryError
from fairing.outputs import Outputs
from fairing.runtime import outputs as runtime_outputs
from tests.services.proxy import Proxy

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")

ROOT = Path(__file__).resolve().parents[2]


def _tags(registry, repository):
    try:
        with urllib.request.urlopen(f"http://{registry.address}/v2/{repository}/tags/list", timeout=10) as r:
            return json.load(r).get("tags") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _has_blob(registry, repository, digest):
    request = urllib.request.Request(f"http://{registry.address}/v2/{repository}/blobs/{digest}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def _job_push(registry, repo, files):
    """What a job's runtime does with its outputs (the same code)."""
    return runtime_outputs.push(f"oci://{registry.address}/{repo}:outputs", {k: str(v) for k, v in files.items()},
                                environ={"FAIRING_OUTPUTS_INSECURE": "1"})


def _base_layers(registry, base_image):
    request = urllib.request.Request(f"http://{registry.address}/v2/{base_image.repository}/manifests/"
                                     f"{base_image.digest}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                                        "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return [layer["digest"] for layer in json.load(r)["layers"]]


def _via(proxy, ref):
    return proxy.address + str(ref)[str(ref).index("/"):]


def _modelcar_bytes(registry, base_image, tmp_path, size):
    """The bytes the submitter exchanged with the registry to make the modelcar of a model of ``size``."""
    model = tmp_path / f"model-{size}.bin"
    model.write_bytes(os.urandom(size))  # incompressible
    (tmp_path / "model.json").write_text('{"w": 2.5}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _job_push(registry, repo, {"model.bin": model, "model.json": tmp_path / "model.json"})
    with Proxy(registry.address) as proxy:
        image = Outputs(_via(proxy, ref), insecure=True).modelcar(_via(proxy, base_image))
        moved = proxy.bytes_up + proxy.bytes_down
    return ref, f"{registry.address}/{repo}@{image.digest}", moved, hashlib.sha256(model.read_bytes()).hexdigest()


def _delete(registry, *refs):
    """The modelcar (its manifest and blobs, the model layer too), then the artifact."""
    repos = set()
    for ref in refs:
        Outputs(ref, insecure=True).delete()
        repos.add(ref.split("/", 1)[1].split("@")[0])
    assert all(_tags(registry, repo) == [] for repo in repos)


def test_the_modelcar_of_a_large_model_costs_the_submitter_a_few_kilobytes(registry, base_image, docker_engine,
                                                                          tmp_path):
    small_ref, small_image, small_moved, _ = _modelcar_bytes(registry, base_image, tmp_path, 1 << 10)
    ref, image, moved, model_sha = _modelcar_bytes(registry, base_image, tmp_path, 24 << 20)
    try:
        assert moved < 64 << 10, moved  # a 24 MiB model: manifests, configs and HEADs only
        assert abs(moved - small_moved) < 4 << 10, (moved, small_moved)  # and the same for a 1 KiB one
        # KServe's init container and sidecar: the command as arguments, as uidModelcar (1010)
        proc = docker_engine.run("run", "--rm", "--network", "none", "--user", "1010", image, "sh", "-c",
                                 "[ -d /models ] && [ \"$(ls -A /models)\" ] && cd /models && "
                                 "find . -type f | sort && cat model.json && echo && sha256sum model.bin", timeout=300)
        assert proc.stdout.split() == ["./model.bin", "./model.json", '{"w":', '2.5}', model_sha, "model.bin"]
    finally:
        docker_engine.run("image", "rm", "-f", image, check=False)
        _delete(registry, image, ref, small_image, small_ref)


def test_an_artifact_that_does_not_exist_is_a_registry_error(registry, base_image):
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    with pytest.raises(RegistryError) as info:
        Outputs(f"{registry.address}/{repo}@sha256:{'0' * 64}", insecure=True).modelcar(str(base_image))
    assert info.value.status == 404
    assert _tags(registry, repo) == []


def test_a_model_layer_gone_or_lying_about_its_size_leaves_nothing(registry, base_image, tmp_path):
    (tmp_path / "model.json").write_text('{"w": 1}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _job_push(registry, repo, {"model.json": tmp_path / "model.json"})
    outputs = Outputs(ref, insecure=True)
    manifest = outputs.manifest()
    layer = next(d for d in manifest["layers"] if d["mediaType"] == runtime_outputs.MODELCAR_TYPE)

    # a manifest whose model layer says it is 1 TiB (the blob is a few KB): refused before anything is made
    lying = dict(manifest, layers=[dict(d, size=1 << 40) if d is layer else d for d in manifest["layers"]])
    registry_client = runtime_outputs.Registry(registry.address, insecure=True)
    lying_digest = registry_client.put_manifest(repo, "lying", lying)
    with pytest.raises(RegistryError, match="is corrupt"):
        Outputs(f"{registry.address}/{repo}@{lying_digest}", insecure=True).modelcar(str(base_image))

    urllib.request.urlopen(urllib.request.Request(
        f"http://{registry.address}/v2/{repo}/blobs/{layer['digest']}", method="DELETE"), timeout=10).close()
    with pytest.raises(RegistryError, match="not in the repository") as info:
        outputs.modelcar(str(base_image))
    assert info.value.code == "BLOB_UNKNOWN"
    assert sorted(_tags(registry, repo)) == ["lying", "outputs"]  # no modelcar tag
    assert not any(_has_blob(registry, repo, d) for d in _base_layers(registry, base_image))  # nothing mounted
    Outputs(f"{registry.address}/{repo}@{lying_digest}", insecure=True).delete()
    outputs.delete()


def test_an_image_that_is_not_an_outputs_artifact_is_refused(registry, base_image):
    with pytest.raises(ConfigurationError, match="not a fairing job's outputs artifact"):
        Outputs(str(base_image), insecure=True).modelcar(str(base_image))
    assert not any(t.startswith("modelcar-") for t in _tags(registry, base_image.repository))


def test_names_a_layer_cannot_hold_get_no_modelcar_layer(registry, base_image, tmp_path):
    (tmp_path / "m").write_text("1")
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _job_push(registry, repo, {"weights/.wh.model": tmp_path / "m", "model.json": tmp_path / "m"})
    outputs = Outputs(ref, insecure=True)
    assert sorted(outputs.files()) == ["model.json", "weights/.wh.model"]  # still the job's outputs
    with pytest.raises(ConfigurationError, match="'.wh.'"):
        outputs.modelcar(str(base_image))
    assert _tags(registry, repo) == ["outputs"]
    outputs.delete()


def test_the_layer_of_a_large_file_is_streamed_not_held(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # 256 MiB, sparse: the tar is read, never kept
        fh.truncate(256 << 20)
    produce = runtime_outputs.modelcar_layer({"big.bin": str(big)})
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in produce())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 512 * 2 + (256 << 20) + 1024  # the headers of models/ and the file, the file, the end
    assert peak < 8 << 20, peak
    big.write_bytes(b"shrunk")  # a file that changes between the digest and the upload
    with pytest.raises(runtime_outputs.OutputsError, match="changed while it was sent"):
        sum(len(chunk) for chunk in produce())


COMPOSE = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a test worker may ignore it)
from fairing.outputs import Outputs
Outputs(sys.argv[1], insecure=True).modelcar(sys.argv[2])
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_composing_leaves_nothing(registry, base_image, tmp_path, signum):
    (tmp_path / "model.json").write_text('{"w": 1}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _job_push(registry, repo, {"model.json": tmp_path / "model.json"})
    outputs = Outputs(ref, insecure=True)
    layer = next(d for d in outputs.manifest()["layers"] if d["mediaType"] == runtime_outputs.MODELCAR_TYPE)
    # the registry takes the modelcar's manifest; its answer never comes; the user presses Ctrl-C
    with Proxy(registry.address, hold=f"PUT /v2/{repo}/manifests/modelcar-".encode()) as proxy:
        proc = subprocess.Popen([sys.executable, "-c", COMPOSE, _via(proxy, ref), _via(proxy, base_image)],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proxy.held.wait(120), proc.communicate(timeout=5)
            assert any(t.startswith("modelcar-") for t in _tags(registry, repo))  # it was made...
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=120)
        finally:
            proxy.release()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if signum == signal.SIGINT:
        assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    else:  # fairing's handler cleaned up, then the process ended by SIGTERM as the default would
        assert proc.returncode == -signal.SIGTERM, (proc.returncode, err)
    assert _tags(registry, repo) == ["outputs"]  # ...and removed again, with what it mounted
    assert not any(_has_blob(registry, repo, d) for d in _base_layers(registry, base_image))
    assert _has_blob(registry, repo, layer["digest"])  # the artifact's own layer stays
    assert outputs.download(tmp_path / "back")["model.json"].read_text() == '{"w": 1}'
    outputs.delete()
