"""Attacks on the modelcar path (issue 29), each provoked for real against a loopback registry:
a second modelcar() of the same outputs interrupted after the registry took its manifest (the
same bytes as the first's, whatever address reached the registry), one interrupted while another
call finished the same image from the blobs it mounted, deleting one pod's outputs while another
pod's modelcar shares blobs in the repository, deleting the whole repository, outputs whose names
collide (a file that is another's directory, two files under one name), a link to a credential
mounted in the pod, an output rewritten between the layer's digest and its upload, and a crafted
artifact whose modelcar annotation sits on a raw file blob."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from fairing.outputs import Outputs
from fairing.runtime import outputs as runtime_outputs
from tests.services.proxy import Proxy

pytestmark = pytest.mark.xdist_group("docker-engine")

ROOT = Path(__file__).resolve().parents[2]
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def _get(registry, path, method="GET"):
    request = urllib.request.Request(f"http://{registry.address}{path}", method=method, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, (resp.read() if method == "GET" else b"")
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _pullable(registry, image):
    """Every blob of ``image`` (``host/repo@digest``) is in its repository."""
    repo, digest = image.split("/", 1)[1].split("@")
    status, body = _get(registry, f"/v2/{repo}/manifests/{digest}")
    if status != 200:
        return False
    manifest = json.loads(body)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return all(_get(registry, f"/v2/{repo}/blobs/{d}", "HEAD")[0] == 200 for d in blobs)


def _push(registry, repo, tag, files):
    return runtime_outputs.push(f"oci://{registry.address}/{repo}:{tag}", {k: str(v) for k, v in files.items()},
                                environ={"FAIRING_OUTPUTS_INSECURE": "1"})


def _via(proxy, ref):
    return proxy.address + str(ref)[str(ref).index("/"):]


COMPOSE = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from fairing.outputs import Outputs
Outputs(sys.argv[1], insecure=True).modelcar(sys.argv[2])
"""


def test_an_interrupted_second_modelcar_keeps_the_first(registry, base_image, tmp_path):
    (tmp_path / "model.json").write_text('{"w": 3}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _push(registry, repo, "outputs", {"model.json": tmp_path / "model.json"})
    outputs = Outputs(ref, insecure=True)
    first = outputs.modelcar(str(base_image))
    first_ref = f"{registry.address}/{repo}@{first.digest}"
    assert _pullable(registry, first_ref)
    with Proxy(registry.address) as proxy:  # reached by another address: still the same image
        assert Outputs(_via(proxy, ref), insecure=True).modelcar(_via(proxy, base_image)).digest == first.digest
        # another process makes the same modelcar; the registry takes its manifest, the answer never
        # comes, the user presses Ctrl-C: its cleanup must not delete what it did not make
        proxy.hold = f"PUT /v2/{repo}/manifests/modelcar-".encode()
        proc = subprocess.Popen([sys.executable, "-c", COMPOSE, _via(proxy, ref), _via(proxy, base_image)],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proxy.held.wait(120), proc.communicate(timeout=5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            proxy.release()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    assert _pullable(registry, first_ref), "the interrupted second modelcar() deleted the first one's image"
    Outputs(first_ref, insecure=True).delete()
    outputs.delete()
    assert _get(registry, f"/v2/{repo}/manifests/{first.digest}", "HEAD")[0] == 404


def test_deleting_one_index_outputs_keeps_another_index_modelcar(registry, base_image, tmp_path):
    (tmp_path / "a.json").write_text('{"w": "a"}')
    (tmp_path / "b.json").write_text('{"w": "b"}')
    (tmp_path / "shared.bin").write_bytes(b"same in both indexes")
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    # two pods of one job: one repository, a tag each (the runtime appends the pod name)
    ref_a = _push(registry, repo, "outputs-pod-0", {"model.json": tmp_path / "a.json", "shared.bin": tmp_path / "shared.bin"})
    ref_b = _push(registry, repo, "outputs-pod-1", {"model.json": tmp_path / "b.json", "shared.bin": tmp_path / "shared.bin"})
    a, b = Outputs(ref_a, insecure=True), Outputs(ref_b, insecure=True)
    car_a, car_b = a.modelcar(str(base_image)), b.modelcar(str(base_image))
    car_b_ref = f"{registry.address}/{repo}@{car_b.digest}"
    assert _pullable(registry, car_b_ref)
    a.delete()  # index 0's outputs and its modelcar
    assert _get(registry, f"/v2/{repo}/manifests/{car_a.digest}", "HEAD")[0] == 404
    assert _pullable(registry, car_b_ref), "deleting index 0's outputs broke index 1's modelcar"
    assert _pullable(registry, ref_b), "deleting index 0's outputs broke index 1's artifact"
    assert b.download(tmp_path / "back")["shared.bin"].read_bytes() == b"same in both indexes"
    b.delete()
    for digest in (car_b.digest, ref_b.split("@")[1]):
        assert _get(registry, f"/v2/{repo}/manifests/{digest}", "HEAD")[0] == 404
    manifest = json.loads(_get(registry, f"/v2/{base_image.repository}/manifests/{base_image.digest}")[1])
    left = [d["digest"] for d in manifest["layers"] if _get(registry, f"/v2/{repo}/blobs/{d['digest']}", "HEAD")[0] == 200]
    assert left == [], "the base layers mounted for the modelcars outlived both"


def test_an_output_that_is_a_file_and_a_directory_is_refused(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "model").write_bytes(b"weights")
    work = tmp_path / "work"
    (work / "model").mkdir(parents=True)
    (work / "model" / "vocab.txt").write_text("a b c")
    environ = {"FAIRING_OUTPUTS": str(outputs), "FAIRING_OUTPUT_PATHS": json.dumps(["model/vocab.txt"])}
    with pytest.raises(runtime_outputs.OutputsError, match="'model'.*'model/vocab.txt'"):
        runtime_outputs.collect(str(work), environ)


def test_two_different_outputs_under_one_name_are_refused(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "model.bin").write_bytes(b"from FAIRING_OUTPUTS")
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.bin").write_bytes(b"listed in outputs=")
    environ = {"FAIRING_OUTPUTS": str(outputs), "FAIRING_OUTPUT_PATHS": json.dumps(["./model.bin"])}
    with pytest.raises(runtime_outputs.OutputsError, match="two outputs are named 'model.bin'"):
        runtime_outputs.collect(str(work), environ)
    # the same file reached twice under one name is one output
    assert list(runtime_outputs.collect(str(outputs), environ)) == ["model.bin"]


def test_a_link_to_a_mounted_credential_is_not_an_output(registry, tmp_path):
    auth = tmp_path / "fairing-registry"  # as the pod's mounted Secret: ..data/config.json, linked
    (auth / "..data").mkdir(parents=True)
    (auth / "..data" / "config.json").write_text('{"auths": {"r": {"auth": "c2VjcmV0OnRva2Vu"}}}')
    (auth / "config.json").symlink_to("..data/config.json")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "model.json").write_text("{}")
    (outputs / "creds.json").symlink_to(auth / "config.json")  # careless or malicious job code
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    environ = {"FAIRING_OUTPUTS": str(outputs), "FAIRING_OUTPUTS_INSECURE": "1",
               "FAIRING_OUTPUTS_AUTH_FILE": str(auth / "config.json"),
               "FAIRING_OUTPUTS_TARGET": f"oci://{registry.address}/{repo}:outputs"}
    with pytest.raises(runtime_outputs.OutputsError, match="'creds.json'.*a credential mounted in the pod"):
        runtime_outputs.send("x", limit=1000, environ=environ, cwd=str(tmp_path))
    assert _get(registry, f"/v2/{repo}/tags/list")[0] == 404  # nothing pushed: no artifact, no layer


def test_deleting_the_repository_leaves_no_blob_of_its_artifacts_and_modelcars(registry, base_image, tmp_path):
    from fairing.outputs import delete_repository

    (tmp_path / "a.json").write_text('{"w": "a"}')
    (tmp_path / "b.json").write_text('{"w": "b"}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    refs = [_push(registry, repo, "outputs-pod-0", {"model.json": tmp_path / "a.json"}),
            _push(registry, repo, "outputs-pod-1", {"model.json": tmp_path / "b.json"})]
    cars = [Outputs(ref, insecure=True).modelcar(str(base_image)) for ref in refs]
    blobs = set()
    for image in [*refs, *(f"{registry.address}/{repo}@{car.digest}" for car in cars)]:
        manifest = json.loads(_get(registry, f"/v2/{repo}/manifests/{image.split('@')[1]}")[1])
        blobs.update([manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])])
    with Proxy(registry.address) as proxy:
        assert delete_repository(f"{proxy.address}/{repo}", insecure=True) == 4
    assert [d for d in blobs if _get(registry, f"/v2/{repo}/blobs/{d}", "HEAD")[0] == 200] == []


def test_a_modelcar_interrupted_while_another_call_finishes_the_same_keeps_its_blobs(registry, base_image,
                                                                                       tmp_path):
    (tmp_path / "model.json").write_text('{"w": 4}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _push(registry, repo, "outputs", {"model.json": tmp_path / "model.json"})
    # process B mounts the base's first layer; the registry's answer never comes...
    with Proxy(registry.address, hold=b"mount=sha256") as proxy:
        proc = subprocess.Popen([sys.executable, "-c", COMPOSE, _via(proxy, ref), _via(proxy, base_image)],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proxy.held.wait(120), proc.communicate(timeout=5)
            # ...meanwhile A makes the same modelcar (finding that layer already there), then B is interrupted
            outputs = Outputs(ref, insecure=True)
            car = outputs.modelcar(str(base_image))
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            proxy.release()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    assert _pullable(registry, f"{registry.address}/{repo}@{car.digest}"), "B's cleanup broke A's modelcar"
    outputs.delete()
    assert _get(registry, f"/v2/{repo}/manifests/{car.digest}", "HEAD")[0] == 404


def test_an_output_rewritten_between_the_layer_digest_and_its_upload_never_completes_it(registry, tmp_path):
    model = tmp_path / "model.bin"
    model.write_bytes(b"a" * 4096)
    produce = runtime_outputs.modelcar_layer({"model.bin": str(model)})
    before = b"".join(produce())  # the runtime's first read: the digest
    body = runtime_outputs._Replay(produce, "sha256:" + hashlib.sha256(before).hexdigest())
    model.write_bytes(b"b" * 4096)  # the job's code rewrites it: same size, so the size check cannot see it
    registry_client = runtime_outputs.Registry(registry.address, insecure=True)
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    resp = registry_client._open("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
    location = resp.headers["Location"] + ("&" if "?" in resp.headers["Location"] else "?") + "digest=" + body.digest
    resp.close()
    # the second read (the upload) stops before its last bytes, with the reason, whatever the registry checks
    with pytest.raises(runtime_outputs.OutputsError, match="changed while they were sent"):
        registry_client._open("PUT", location, data=body, headers={"Content-Length": str(len(before))})
    assert _get(registry, f"/v2/{repo}/blobs/{body.digest}", "HEAD")[0] == 404


def test_a_modelcar_annotation_on_a_file_blob_is_no_model_layer(registry, base_image, tmp_path):
    from fairing import ConfigurationError

    (tmp_path / "model.json").write_text('{"w": 5}')
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = _push(registry, repo, "outputs", {"model.json": tmp_path / "model.json"})
    manifest = Outputs(ref, insecure=True).manifest()
    # a crafted artifact: the annotation moved to the raw file blob (not a tar: an image of it never starts)
    layers = [dict(d, annotations={**d["annotations"], runtime_outputs.MODELCAR_ANNOTATION: "models"})
              if d["mediaType"] == runtime_outputs.FILE_TYPE else d
              for d in manifest["layers"] if d["mediaType"] != runtime_outputs.MODELCAR_TYPE]
    crafted = runtime_outputs.Registry(registry.address, insecure=True).put_manifest(
        repo, "crafted", dict(manifest, layers=layers))
    with pytest.raises(ConfigurationError, match="holds no modelcar layer"):
        Outputs(f"{registry.address}/{repo}@{crafted}", insecure=True).modelcar(str(base_image))
    assert not any(t.startswith("modelcar-") for t in json.loads(_get(registry, f"/v2/{repo}/tags/list")[1])["tags"])
    Outputs(f"{registry.address}/{repo}@{crafted}", insecure=True).delete()
    Outputs(ref, insecure=True).delete()
