"""The Docker builder against a real Docker engine and a real registry: build, push, run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

import fairing
from fairing import BuildError, DockerEngineError, RegistryAuthError, TrainJob
from fairing.backends.docker import docker_backend
from fairing.artifacts import DockerImage
from fairing.builders.docker import DockerBuilder
from fairing.builders.dockerfile import DEFAULT_PIP_ARGS
from fairing.deployers.docker import DockerDeployer
from fairing.events import LogLine, Progress, Stage
from fairing.preprocessors.function import FunctionPreprocessor

from tests.integration.docker_fixtures import *  # noqa: F401,F403
from tests.integration.docker_fixtures import AUTH_PASSWORD, AUTH_USER, registry_digest

ROOT = Path(__file__).resolve().parents[2]
# One worker for the tests that build on the engine: they share its build cache, and one
# test removing the images it made (with their untagged parents) breaks a build beside it.
pytestmark = [pytest.mark.usefixtures("no_docker_temp_files"), pytest.mark.xdist_group("docker-engine")]


def _lines(events) -> list[str]:
    return [e.line for e in events if isinstance(e, LogLine) and not e.source]


def _step_notes(events) -> list[str]:
    return [e.note for e in events if isinstance(e, Progress) and e.task == "docker build"]


def _uploaded(events) -> int:
    return sum(1 for e in events if isinstance(e, Progress) and e.task.startswith("push ") and e.note == "uploaded")


def _build_containers(client, marker: str) -> set:
    """IDs of a build's intermediate containers: those whose command has the failing step's marker (other
    workers' builds run beside this one, so "any new container" would count theirs)."""
    return {c["Id"] for c in client.api.containers(all=True)
            if "dev.fairing.job" not in (c.get("Labels") or {}) and marker in (c.get("Command") or "")}


def _no_new_build_containers(client, before: set, marker: str) -> bool:
    for _ in range(20):  # the engine removes a failed step's container just after it reports the error
        if not _build_containers(client, marker) - before:
            return True
        time.sleep(0.5)
    return False


def test_function_is_built_pushed_pinned_by_digest_and_run_from_the_registry(
        docker_client, registry, base_image, images, job_label):
    events: list = []

    def double(x):
        print("doubling", x, flush=True)
        return {"value": 2 * x, "pid": os.getpid()}

    context = FunctionPreprocessor(double, (21,), {}).context()
    ref = DockerBuilder(base_image, registry.address).build(context, on_event=events.append)
    images.add(ref)
    assert ref.registry == registry.address and ref.repository == "fairing-job"
    assert ref.tag.startswith("fairing-") and ref.digest.startswith("sha256:")
    assert registry_digest(registry, ref.repository, ref.tag) == ref.digest
    notes = _step_notes(events)
    # requirements are installed before the code is copied
    pip = next(i for i, n in enumerate(notes) if "pip install" in n)
    assert pip < next(i for i, n in enumerate(notes) if n.startswith("COPY code/"))

    # forget the local copy, so that the deployer pulls exactly the pushed digest
    docker_client.images.remove(f"{ref.registry}/{ref.repository}:{ref.tag}", force=True)
    handle = DockerDeployer().deploy(ref, name=f"{job_label}-double", on_event=events.append)
    try:
        out = handle.result(120)
    finally:
        handle.delete()
    assert out["value"] == 42 and out["pid"] == 1  # PID 1: it ran in its own container
    assert "doubling 21" in _lines(events)
    assert any(isinstance(e, Stage) and e.name == "pull" and e.status == "finished" for e in events)
    images.add(f"{ref.registry}/{ref.repository}@{ref.digest}")


def test_script_with_requirements_and_cached_resubmits(docker_client, registry, base_image, images, job_label,
                                                       workdir):
    (workdir / "train.py").write_text(textwrap.dedent("""\
        import sys, tomli
        print("tomli", tomli.loads('a = 1')["a"], sys.argv[1:])
    """))
    backend = docker_backend(base_image=base_image, registry=registry.address)
    events: list = []

    def run(label):
        job = TrainJob("train.py", requirements=["tomli==2.0.1"], args=["--epochs", "3"], backend=backend,
                       name=f"{job_label}-{label}", on_event=events.append)
        handle = job.submit()
        try:
            handle.result(120)
        finally:
            handle.delete()
        return handle

    run("first")
    assert "tomli 1 ['--epochs', '3']" in _lines(events)
    tags = [e.detail for e in events if isinstance(e, Stage) and e.name == "docker build" and e.status == "started"]
    assert tags[0].startswith(f"{registry.address}/fairing-train:fairing-")
    images.add(tags[0])

    # one-line change: the requirements layer is reused, only the code layer is pushed
    (workdir / "train.py").write_text((workdir / "train.py").read_text() + "print('second version')\n")
    events.clear()
    run("second")
    assert "second version" in _lines(events)
    notes = _step_notes(events)
    pip = next(i for i, n in enumerate(notes) if "pip install" in n)
    assert notes[pip + 1] == "cached", notes
    assert _uploaded(events) == 1
    images.add([e.detail for e in events if isinstance(e, Stage) and e.name == "docker build"
                and e.status == "started"][0])

    # unchanged: every step cached, nothing uploaded, same digest
    first_digest = [e.detail for e in events if isinstance(e, Stage) and e.name == "push" and e.status == "started"]
    events.clear()
    run("third")
    assert _uploaded(events) == 0
    assert [e.detail for e in events if isinstance(e, Stage) and e.name == "push" and e.status == "started"] \
        == first_digest


def test_notebook_is_built_pushed_and_run(docker_client, registry, base_image, images, job_label, workdir):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# training"),
        nbformat.v4.new_code_cell("answer = 6 * 7"),
        nbformat.v4.new_code_cell("%matplotlib inline\nprint('the answer is', answer)"),
    ]
    nbformat.write(nb, str(workdir / "analysis.ipynb"))
    events: list = []
    backend = docker_backend(base_image=base_image, registry=registry.address)
    job = TrainJob("analysis.ipynb", backend=backend, name=f"{job_label}-nb", on_event=events.append)
    handle = job.submit()
    try:
        handle.result(120)
        assert "the answer is 42" in list(handle.logs(follow=False))
    finally:
        handle.delete()
        pushed = [e.detail for e in events if isinstance(e, Stage) and e.name == "push" and e.status == "started"]
        images.add(pushed[0])
    assert pushed[0].startswith(f"{registry.address}/fairing-analysis:fairing-")
    tag = pushed[0].rsplit(":", 1)[1]
    assert registry_digest(registry, "fairing-analysis", tag).startswith("sha256:")


def test_local_build_without_registry_returns_the_image_id(docker_client, base_image, images, job_label):
    context = FunctionPreprocessor(lambda: "local", (), {}).context()
    image = DockerBuilder(base_image).build(context)
    images.add(image)
    assert isinstance(image, DockerImage) and image.id.startswith("sha256:")
    assert docker_client.images.get(image.id).id == image.id
    handle = DockerDeployer().deploy(image, name=f"{job_label}-local")
    try:
        assert handle.result(60) == "local"
    finally:
        handle.delete()


def test_user_dockerfile_is_the_environment(docker_client, registry, base_image, images, job_label, tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "marker.txt").write_text("copied from the Dockerfile's context\n")
    (env_dir / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base_image}
        ARG FLAVOUR=plain
        COPY marker.txt /opt/marker.txt
        RUN echo "built with $FLAVOUR" > /opt/step.txt
    """))

    events: list = []

    @fairing.train(backend="docker", dockerfile=str(env_dir / "Dockerfile"), registry=registry.address,
                   build_args={"FLAVOUR": "spicy"}, repository="team/with-dockerfile", on_event=events.append)
    def read_env():
        return open("/opt/marker.txt").read().strip(), open("/opt/step.txt").read().strip(), os.getcwd()

    try:
        assert read_env() == ("copied from the Dockerfile's context", "built with spicy", "/app")
    finally:
        for e in events:
            if isinstance(e, Stage) and e.name == "push" and e.status == "started":
                images.add(e.detail)
    assert any(isinstance(e, Stage) and e.name == "docker build" and "your Dockerfile" in e.detail for e in events)


def test_failing_pip_step_raises_with_its_output(docker_client, base_image, images, job_label):
    marker = f"--log=/tmp/fairing-failing-pip-{job_label}.log"  # names this build's step container
    before = _build_containers(docker_client, marker)
    context = FunctionPreprocessor(lambda: 1, (), {}, requirements=["fairing-no-such-package-zq==9.9.9"]).context()
    with pytest.raises(BuildError) as err:
        DockerBuilder(base_image, pip_args=(*DEFAULT_PIP_ARGS, marker)).build(context)
    images.add_cache(err.value)  # the cache of the steps that succeeded
    message = str(err.value)
    assert "pip install" in message and "step 4/" in message
    assert "fairing-no-such-package-zq" in message and "No matching distribution" in message  # the step's output
    assert "Check the requirements" in message
    assert _no_new_build_containers(docker_client, before, marker)  # no intermediate container left


def test_a_secret_in_a_user_dockerfiles_directory_is_refused_before_the_engine_sees_it(docker_client, tmp_path):
    token = "ghp_" + "Q7u2" * 9
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text(f"ok\ntoken {token}\n")
    (tmp_path / "ignored.txt").write_text(f"{token}\n")
    (tmp_path / ".dockerignore").write_text("# what the SDK leaves out is not sent, so not scanned\nignored.txt\n")
    events: list = []
    context = FunctionPreprocessor(lambda: 1, (), {}).context()
    with pytest.raises(fairing.SecretInContextError) as err:
        DockerBuilder(dockerfile=tmp_path / "Dockerfile").build(context, on_event=events.append)
    message = str(err.value)
    assert "sub/notes.txt" in message and "line 2" in message and "ignored.txt" not in message
    assert token not in message and all(token not in str(e) for e in events)
    assert Stage("docker build", "failed", "SecretInContextError") in events
    assert not [e for e in events if isinstance(e, Progress)]  # the engine ran no step


def test_failing_run_step_of_a_user_dockerfile(docker_client, base_image, images, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo preparing && echo 'output-before-failure-123' && exit 3\nRUN echo never\n")
    before = _build_containers(docker_client, "output-before-failure-123")
    context = FunctionPreprocessor(lambda: 1, (), {}).context()
    with pytest.raises(BuildError) as err:
        DockerBuilder(dockerfile=tmp_path / "Dockerfile").build(context)
    images.add_cache(err.value)
    message = str(err.value)
    assert "step 2/3" in message and "non-zero code: 3" in message
    assert "output-before-failure-123" in message and "preparing" in message
    assert "Fix that step" in message and f"docker run --rm -it --entrypoint sh {err.value.cache_image}" in message
    assert _no_new_build_containers(docker_client, before, "output-before-failure-123")


def test_push_denied_and_credentials_never_leak(docker_client, tls_registry, base_image, images, job_label):
    context = FunctionPreprocessor(lambda: "authed", (), {}).context()
    events: list = []
    # no credentials at all
    with pytest.raises(RegistryAuthError) as err:
        DockerBuilder(base_image, tls_registry.address).build(context, on_event=events.append)
    assert "docker login" in str(err.value) and tls_registry.address in str(err.value)
    # wrong password
    with pytest.raises(RegistryAuthError) as err:
        DockerBuilder(base_image, tls_registry.address, username=AUTH_USER,
                      password=AUTH_PASSWORD + "-wrong").build(context, on_event=events.append)
    assert AUTH_PASSWORD not in str(err.value)
    # the right one
    builder = DockerBuilder(base_image, tls_registry.address, username=AUTH_USER, password=AUTH_PASSWORD)
    ref = builder.build(context, on_event=events.append)
    images.add(ref)
    assert ref.digest.startswith("sha256:")
    inspected = json.dumps(docker_client.images.get(f"{ref.name}:{ref.tag}").attrs)
    history = json.dumps(docker_client.api.history(f"{ref.name}:{ref.tag}"))
    for text in (repr(builder), repr(events), inspected, history):
        assert AUTH_PASSWORD not in text


def test_engine_not_running(tmp_path):
    context = FunctionPreprocessor(lambda: 1, (), {}).context()
    missing = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(DockerEngineError) as err:
        DockerBuilder("python:3.11", base_url=missing).build(context)
    assert "not running" in str(err.value) and "no-docker.sock" in str(err.value)
    assert isinstance(err.value, BuildError)
    with pytest.raises(DockerEngineError) as err:
        DockerDeployer(base_url=missing).deploy("python:3.11")
    assert "Start it" in str(err.value)
    assert isinstance(err.value, fairing.DeployError)


def test_permission_denied_on_the_socket(tmp_path):
    """A socket this process may not open: root without CAP_DAC_OVERRIDE, socket owned by nobody."""
    import socket

    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        sock.listen(1)
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        os.chmod(tmp_path, 0o755)
        code = textwrap.dedent(f"""\
            from fairing.builders.docker import DockerBuilder
            from fairing.preprocessors.function import FunctionPreprocessor
            from fairing import DockerEngineError
            try:
                DockerBuilder("python:3.11", base_url="unix://{path}").build(
                    FunctionPreprocessor(print, (), {{}}).context())
            except DockerEngineError as exc:
                print("RAISED", exc)
        """)
        proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c",
                               code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    finally:
        sock.close()
    assert "RAISED Permission denied on the Docker socket" in proc.stdout, proc.stdout + proc.stderr
    assert "docker' group" in proc.stdout


def test_docker_sdk_is_an_optional_extra():
    code = textwrap.dedent("""\
        import sys
        sys.modules["docker"] = None  # as if not installed
        import fairing
        from fairing.builders.docker import DockerBuilder
        from fairing.deployers.docker import DockerDeployer
        from fairing.preprocessors.function import FunctionPreprocessor
        for call in (lambda: DockerBuilder("python:3.11").build(FunctionPreprocessor(print, (), {}).context()),
                     lambda: DockerDeployer().deploy("python:3.11")):
            try:
                call()
            except fairing.MissingDependencyError as exc:
                print("RAISED", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert proc.stdout.count("RAISED") == 2, proc.stdout + proc.stderr
    assert "pip install 'fairing-ml[docker]'" in proc.stdout


def test_docker_login_credentials_push_and_pull(docker_client, tls_registry, base_image, images, job_label, tmp_path,
                                                monkeypatch):
    """What `docker login` stores in config.json is used to push and to pull, and is never shown."""
    import base64

    config = tmp_path / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {tls_registry.address: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    events: list = []

    def whoami():
        import os
        return sorted(k for k in os.environ if "PASS" in k.upper() or "AUTH" in k.upper())

    backend = docker_backend(base_image=base_image, registry=tls_registry.address, repository="private/whoami")
    ref = backend.builder.build(FunctionPreprocessor(whoami, (), {}).context(), on_event=events.append)
    images.add(ref)
    docker_client.images.remove(f"{ref.name}:{ref.tag}", force=True)  # so that the run pulls it, logged in
    handle = backend.deployer.deploy(ref, name=f"{job_label}-private", on_event=events.append)
    try:
        assert handle.result(60) == []
        env = json.dumps(docker_client.api.inspect_container(handle.container_id)["Config"]["Env"])
    finally:
        handle.delete()
    images.add(f"{ref.name}@{ref.digest}")
    assert any(isinstance(e, Stage) and e.name == "pull" and e.status == "finished" for e in events)
    for text in (repr(events), env, repr(backend.builder), repr(backend.deployer)):
        assert AUTH_PASSWORD not in text and token not in text


def test_ctrl_c_during_a_build_leaves_no_container(docker_client, base_image, images, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo long-step-started && sleep 120\n")
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(f"""\
        from fairing.builders.docker import DockerBuilder
        from fairing.preprocessors.function import FunctionPreprocessor

        def show(event):
            if getattr(event, "line", "") == "long-step-started":
                print("STARTED", flush=True)

        DockerBuilder(dockerfile={str(tmp_path / "Dockerfile")!r}).build(
            FunctionPreprocessor(print, (), {{}}).context(), on_event=show)
    """))
    before = _build_containers(docker_client, "long-step-started")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.strip() == "STARTED":
                break
        assert seen and seen[-1].strip() == "STARTED", "".join(seen)
        assert _build_containers(docker_client, "long-step-started") - before, "no build container while the step runs"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in out
    assert _no_new_build_containers(docker_client, before, "long-step-started")


def test_full_notebook_with_papermill_in_a_container(docker_client, base_image, images, job_label, workdir):
    """--full-notebook: papermill and ipykernel are installed in the image; parameters are injected."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("rate = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('rate is', rate)\nresult = rate * 10\nresult")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(workdir / "sweep.ipynb"))
    events: list = []
    job = TrainJob("sweep.ipynb", full_notebook=True, parameters={"rate": 7},
                   backend=docker_backend(base_image=base_image), name=f"{job_label}-pm", on_event=events.append)
    handle = job.submit()
    try:
        executed = handle.result(300)
    finally:
        handle.delete()
        images.add([e.detail for e in events if isinstance(e, Stage) and e.name == "docker build"
                    and e.status == "started"][0].rsplit(" ", 1)[-1])
    def text(output) -> str:
        value = output.get("text") or output.get("data", {}).get("text/plain", "")
        return "".join(value) if isinstance(value, list) else value

    outputs = [text(o) for c in executed["cells"] for o in c.get("outputs", [])]
    assert "rate is 7\n" in outputs and "70" in outputs


def test_cache_removed_mid_build_is_rebuilt(docker_client, base_image, images):
    """Removing the previous image while a re-submit commits its code step removes the cached
    parent of that step ('unknown parent image ID'): the builder builds once more."""
    import threading

    def context(marker: str):
        files = {f"data/f{i}.bin": os.urandom(8000) for i in range(3000)}  # a COPY that takes a moment
        files["main.py"] = f"print({marker!r})\n".encode()
        return fairing.BuildContext(files=files, entrypoint=("python3", "main.py"))

    builder = DockerBuilder(base_image, repository="fairing-race")
    first = builder.build(context("a"))
    removers: list = []

    def remove_first_during_copy(event):
        if isinstance(event, Progress) and event.note.startswith("COPY code/") and not removers:
            removers.append(threading.Thread(target=docker_client.images.remove, args=(first.name,),
                                             kwargs={"force": True}))
            removers[0].start()

    events: list = []
    second = builder.build(context("b"), on_event=lambda e: (events.append(e), remove_first_during_copy(e)))
    removers[0].join(60)
    images.add(second)
    images.add(first)
    assert any(isinstance(e, Stage) and "again: its cache was removed" in e.detail for e in events)
    assert docker_client.images.get(second.id).id == second.id
