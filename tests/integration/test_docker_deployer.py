"""The local Docker backend against a real Docker engine: run, resources, failures, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fairing import DeployError, JobFailedError, JobTimeoutError
from fairing.builders.docker import DockerBuilder
from fairing.deployers.docker import DockerDeployer
from fairing.preprocessors.function import FunctionPreprocessor

from tests.integration.docker_fixtures import *  # noqa: F401,F403
from tests.integration.docker_fixtures import fairing_containers

ROOT = Path(__file__).resolve().parents[2]
# One worker for the tests that build on the engine: they share its build cache, and one
# test removing the images it made (with their untagged parents) breaks a build beside it.
pytestmark = [pytest.mark.usefixtures("no_docker_temp_files"), pytest.mark.xdist_group("docker-engine")]


def _image(base_image, images, func, *args, **kwargs):
    image = DockerBuilder(base_image).build(FunctionPreprocessor(func, args, kwargs).context())
    images.add(image)
    return image


def test_env_entrypoint_logs_and_resources(docker_client, base_image, images, job_label):
    def job(n):
        import os, time
        for i in range(n):
            print("line", i, flush=True)
        time.sleep(2)
        return {"env": os.environ.get("FROM_DEPLOYER"), "runtime": os.environ.get("FAIRING_RUNTIME"),
                "cwd": os.getcwd()}

    image = _image(base_image, images, job, 3)
    deployer = DockerDeployer(cpu="500m", memory="256Mi", env={"FROM_DEPLOYER": "yes"})
    handle = deployer.deploy(image, name=f"{job_label}-res")
    try:
        attrs = docker_client.api.inspect_container(handle.container_id)
        assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
        assert attrs["HostConfig"]["Memory"] == 256 * 2**20
        assert attrs["Config"]["Labels"]["dev.fairing.job"] == f"{job_label}-res"
        assert attrs["Config"]["Entrypoint"] == ["python3", "-m", "fairing_runtime"]  # the image's own
        env = "\n".join(attrs["Config"]["Env"])
        assert "FAIRING_RESULT_KEY=" not in env and handle.result_key.hex() not in env  # a file, not an env var
        assert handle.status().phase in ("Pending", "Running")
        assert list(handle.logs(follow=True)) == ["line 0", "line 1", "line 2"]
        out = handle.result(60)
        assert out == {"env": "yes", "runtime": "1", "cwd": "/app"}
        assert handle.status().phase == "Succeeded" and handle.status().exit_code == 0
    finally:
        handle.delete()
    assert not fairing_containers(docker_client, job_label)
    handle.delete()  # idempotent


def test_gpu_request_is_mapped_and_fails_clearly_without_gpus(docker_client, base_image, images, job_label):
    deployer = DockerDeployer(gpus=2)
    request = deployer.host_config()["device_requests"][0]
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    assert DockerDeployer(gpus="all").host_config()["device_requests"][0]["Count"] == -1
    image = _image(base_image, images, lambda: 1)
    with pytest.raises(DeployError) as err:  # this machine has no GPU runtime
        deployer.deploy(image, name=f"{job_label}-gpu")
    assert "NVIDIA Container Toolkit" in str(err.value)
    assert not fairing_containers(docker_client, job_label)


def test_remote_exception_and_exit_code(docker_client, base_image, images, job_label):
    def fails():
        raise ValueError("bad learning rate")

    handle = DockerDeployer().deploy(_image(base_image, images, fails), name=f"{job_label}-exc")
    try:
        with pytest.raises(ValueError, match="bad learning rate"):
            handle.result(60)
        assert handle.status().exit_code == 1
    finally:
        handle.delete()

    def exits():
        import os
        print("about to die", flush=True)
        os._exit(7)

    handle = DockerDeployer().deploy(_image(base_image, images, exits), name=f"{job_label}-exit")
    try:
        with pytest.raises(JobFailedError) as err:
            handle.result(60)
        assert err.value.exit_code == 7 and "about to die" in str(err.value)
    finally:
        handle.delete()


def test_out_of_memory_is_reported(docker_client, base_image, images, job_label):
    def hog():
        blocks = []
        for _ in range(200):
            blocks.append(bytearray(10 * 2**20))
        return len(blocks)

    image = _image(base_image, images, hog)
    handle = DockerDeployer(memory="64Mi").deploy(image, name=f"{job_label}-oom")
    try:
        with pytest.raises(JobFailedError, match="memory limit of 64 MiB"):
            handle.result(60)
    finally:
        handle.delete()


def test_timeout_stops_and_removes_the_container(docker_client, base_image, images, job_label):
    def sleeper():
        import time
        print("sleeping", flush=True)
        time.sleep(300)

    handle = DockerDeployer().deploy(_image(base_image, images, sleeper), name=f"{job_label}-slow")
    start = time.monotonic()
    with pytest.raises(JobTimeoutError) as err:
        handle.result(3)
    assert time.monotonic() - start < 30
    assert "sleeping" in str(err.value)
    assert not fairing_containers(docker_client, job_label)


def test_ctrl_c_leaves_no_container(docker_client, base_image, images, job_label, tmp_path):
    script = tmp_path / "submit.py"
    script.write_text(textwrap.dedent(f"""\
        import sys, time
        import fairing

        def show(event):
            if isinstance(event, fairing.events.LogLine) and not event.source:
                print(event.line, flush=True)

        def forever():
            import time
            print("job started", flush=True)
            time.sleep(600)

        fairing.TrainJob(forever, backend="docker", base_image={str(base_image)!r}, name="{job_label}-ctrl-c",
                         on_event=show).run()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    built = []
    try:
        deadline = time.monotonic() + 240
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.strip() == "job started":
                break
            assert time.monotonic() < deadline, "the job did not start"
        assert seen and seen[-1].strip() == "job started", "".join(seen)
        running = fairing_containers(docker_client, job_label)
        assert running, "no fairing container while the job runs"
        built = [c.image.id for c in running]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in out
    assert not fairing_containers(docker_client, job_label)
    for image_id in built:
        docker_client.images.remove(image_id, force=True)


def test_missing_image_raises_image_pull_error(docker_client, registry, job_label):
    from fairing import ImagePullError

    with pytest.raises(ImagePullError) as err:
        DockerDeployer().deploy(f"{registry.address}/fairing-tests/no-such-image:v1", name=f"{job_label}-pull")
    assert "could not pull" in str(err.value) and "Check the name" in str(err.value)
    assert not fairing_containers(docker_client, job_label)


def test_fairing_style_one_liner_with_docker(docker_client, base_image, images):
    """config.set_builder('docker') + set_deployer('docker'), by name, as in Kubeflow Fairing."""
    from fairing import config

    events: list = []
    config.reset()
    try:
        config.set_builder("docker", base_image=str(base_image))
        config.set_deployer("docker", cpu=1, memory="512Mi")
        config.set_options(on_event=events.append)

        def add(a, b):
            return a + b

        assert config.fn(add)(2, 3) == 5
    finally:
        config.reset()
        built = [e.detail for e in events if type(e).__name__ == "Stage" and e.name == "docker build"
                 and e.status == "started"]
        for name in built:
            images.add(name)
    started = [e.detail for e in events if type(e).__name__ == "Stage" and e.name == "run" and e.status == "started"]
    short_id = started[0].split()[1]
    assert not docker_client.api.containers(all=True, filters={"id": short_id})  # removed after the call
