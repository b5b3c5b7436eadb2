"""A job's outputs artifact as a KServe modelcar image, run by a real Docker engine the way
KServe runs it (the image's command given as arguments: ``sh -c ...``), and deleted with the
artifact. The artifact is pushed by the job runtime's own code to the loopback registry."""

import json
import urllib.request
import uuid

import pytest

from fairing import ConfigurationError
from fairing.outputs import Outputs
from fairing.runtime import outputs as runtime_outputs

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")


def _tags(registry, repository):
    try:
        with urllib.request.urlopen(f"http://{registry.address}/v2/{repository}/tags/list", timeout=10) as r:
            return json.load(r).get("tags") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def test_an_artifact_becomes_a_modelcar_that_runs_a_shell_over_models(registry, base_image, docker_engine, tmp_path):
    (tmp_path / "model.json").write_text('{"w": 2.5}')
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "acc.txt").write_text("0.97")
    repo = f"e2e/train-outputs/{uuid.uuid4().hex[:8]}"
    ref = runtime_outputs.push(f"oci://{registry.address}/{repo}:outputs",
                               {"model.json": str(tmp_path / "model.json"),
                                "metrics/acc.txt": str(tmp_path / "metrics" / "acc.txt")},
                               result_line="not-a-file", environ={"FAIRING_OUTPUTS_INSECURE": "1"})
    outputs = Outputs(ref, insecure=True)
    image = outputs.modelcar(str(base_image))
    assert str(image).startswith(f"{registry.address}/{repo}:modelcar-") and image.digest.startswith("sha256:")
    assert outputs.modelcar(str(base_image)).digest == image.digest  # the same files make the same image
    try:
        # KServe's modelcar init container and sidecar give the command as the container's arguments
        proc = docker_engine.run("run", "--rm", "--network", "none", str(image), "sh", "-c",
                                 "[ -d /models ] && [ \"$(ls -A /models)\" ] && cd /models && "
                                 "find . -type f | sort && cat model.json", timeout=300)
        assert proc.stdout.split() == ["./metrics/acc.txt", "./model.json", '{"w":', '2.5}']
    finally:
        docker_engine.run("image", "rm", "-f", str(image), check=False)
    assert image.tag in _tags(registry, repo)
    outputs.delete()
    assert [t for t in _tags(registry, repo) if t.startswith("modelcar-")] == []


def test_a_local_directory_is_no_modelcar(tmp_path):
    with pytest.raises(ConfigurationError, match="local directory, not an artifact"):
        Outputs(str(tmp_path)).modelcar("127.0.0.1:1/base:1")
