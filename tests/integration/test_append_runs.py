"""Appended images really run: pulled and started by a real Docker engine."""

from __future__ import annotations

import json
import uuid
from urllib.parse import unquote

from fairing.builders.append import AppendBuilder
from fairing.context import BuildContext
from fairing.events import Stage
from fairing.images.python_deps import SITE_DIR

import pytest

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")


def _run(docker_engine, ref, *args: str, env: dict | None = None) -> str:
    """docker run the image (pinned by digest), return its stdout; the image is removed after."""
    env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    try:
        proc = docker_engine.run("run", "--rm", "--network", "none", *env_args, str(ref), *args, timeout=300)
        return proc.stdout
    finally:
        docker_engine.run("image", "rm", "-f", str(ref), check=False)


def _uploaded(requests) -> list[str]:
    return [unquote(r.path.split("digest=", 1)[1]) for r in requests
            if r.method == "PUT" and "/blobs/uploads/" in r.path and "digest=" in r.path]


def test_script_image_runs(registry, base_image, docker_engine, fairing_cache):
    script = (
        "import os, sys, json\n"
        "print(json.dumps({'cwd': os.getcwd(), 'runtime': os.environ.get('FAIRING_RUNTIME'),\n"
        "                  'mode': os.environ.get('MODE'), 'python': sys.version_info[:2],\n"
        "                  'data': open('data/in.txt').read()}))\n"
    )
    ctx = BuildContext(files={"main.py": script.encode(), "data/in.txt": b"42"}, entrypoint=["python3", "main.py"],
                       env={"MODE": "docker"}, workdir="/work")
    with AppendBuilder(base_image, registry.address, repository=f"run/{uuid.uuid4().hex[:8]}",
                       cache_dir=fairing_cache) as builder:
        ref = builder.build(ctx)
    out = json.loads(_run(docker_engine, ref).strip().splitlines()[-1])
    assert out == {"cwd": "/work", "runtime": "1", "mode": "docker", "python": [3, 11], "data": "42"}


def test_requirements_layer_installed_for_image_python_and_cached(registry, base_image, docker_engine, tmp_path):
    repo = f"run/{uuid.uuid4().hex[:8]}"
    script = "import six, sys; print(six.__file__); print(six.__version__)\n"
    ctx = BuildContext(files={"main.py": script.encode()}, entrypoint=["python3", "main.py"],
                       requirements=("six==1.16.0",))
    events = []
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=tmp_path / "cache") as builder:
        ref = builder.build(ctx, on_event=events.append)
        assert any(isinstance(e, Stage) and e.name == "requirements" and e.status == "finished" for e in events)
        lines = _run(docker_engine, ref).strip().splitlines()
        assert lines[-1] == "1.16.0" and lines[-2].startswith(SITE_DIR + "/six.py")

        # a code change: no pip, and the requirements layer is not uploaded again
        events.clear()
        mark = registry.mark()
        changed = ctx.with_files({"main.py": (script + "print('changed')\n").encode()})
        ref2 = builder.build(changed, on_event=events.append)
        assert not any(isinstance(e, Stage) and e.name == "requirements" for e in events)
        reqs = registry.requests(mark)
        assert len(_uploaded(reqs)) == 2  # code layer + config
        assert not [r for r in reqs if "/manifests/deps-" in r.path]  # the requirements tag is not pushed again
        assert len(reqs) <= 8, reqs
        assert _run(docker_engine, ref2).strip().splitlines()[-1] == "changed"

    # another machine (empty local cache) finds the requirements layer in the registry: no pip
    events.clear()
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=tmp_path / "other") as builder:
        ref3 = builder.build(ctx.with_files({"main.py": b"import six; print('third', six.__version__)\n"}),
                             on_event=events.append)
    assert not any(isinstance(e, Stage) and e.name == "requirements" for e in events)
    assert _run(docker_engine, ref3).strip().splitlines()[-1] == "third 1.16.0"


# -- the core payloads (function, script, notebook) through the fairing runtime ----------------


def _job_result(docker_engine, ref):
    """Run the image as a job; the envelope the runtime wrote as the last line of stdout."""
    from fairing.runtime.result import KEY_ENV, decode, new_key

    key = new_key()  # the per-job key a deployer would give the job
    out = _run(docker_engine, ref, env={"FAIRING_RESULT_LOG": "1", KEY_ENV: key.hex()})
    return decode(out, key), out


def _square_sum(n, offset=0):
    import sys

    return {"value": sum(i * i for i in range(n)) + offset, "python": "%d.%d" % sys.version_info[:2]}


def test_function_payload_runs_and_returns(registry, base_image, docker_engine, fairing_cache):
    from fairing.preprocessors.function import FunctionPreprocessor

    ctx = FunctionPreprocessor(_square_sum, args=(10,), kwargs={"offset": 1}).context()
    with AppendBuilder(base_image, registry.address, cache_dir=fairing_cache) as builder:
        ref = builder.build(ctx)
    envelope, out = _job_result(docker_engine, ref)
    assert envelope.get("ok"), out
    assert envelope["value"] == {"value": 286, "python": "3.11"}


def test_script_payload_runs(registry, base_image, docker_engine, fairing_cache, tmp_path):
    from fairing.preprocessors.python import PythonPreprocessor

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "numbers.txt").write_text("1\n2\n3\n")
    (tmp_path / "train.py").write_text(
        "import sys\n"
        "total = sum(int(x) for x in open('data/numbers.txt'))\n"
        "print('total', total, 'args', sys.argv[1:])\n"
    )
    ctx = PythonPreprocessor(tmp_path / "train.py", input_files=[tmp_path / "data" / "numbers.txt"],
                             args=["--epochs", "3"], requirements=[]).context()
    with AppendBuilder(base_image, registry.address, cache_dir=fairing_cache) as builder:
        ref = builder.build(ctx)
    assert ref.repository == "fairing-train"
    envelope, out = _job_result(docker_engine, ref)
    assert envelope.get("ok"), out
    assert "total 6 args ['--epochs', '3']" in out


def test_notebook_payload_runs(registry, base_image, docker_engine, fairing_cache, tmp_path):
    import nbformat

    from fairing.preprocessors.notebook import NotebookPreprocessor

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nvalues = [3, 4]"),
        nbformat.v4.new_code_cell("import math\nprint('hypot', math.hypot(*values))"),
    ]
    path = tmp_path / "analysis.ipynb"
    nbformat.write(nb, str(path))
    ctx = NotebookPreprocessor(path, requirements=[]).context()
    with AppendBuilder(base_image, registry.address, cache_dir=fairing_cache) as builder:
        ref = builder.build(ctx)
    envelope, out = _job_result(docker_engine, ref)
    assert envelope.get("ok"), out
    assert "hypot 5.0" in out


def test_failed_requirements_clear_error_and_nothing_left_behind(registry, base_image, tmp_path, monkeypatch):
    import tempfile

    from fairing.errors import BuildError

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # fairing's temp files land here
    ctx = BuildContext(files={"main.py": b"print(1)\n"}, entrypoint=["python3", "main.py"],
                       requirements=("fairing-no-such-package-" + uuid.uuid4().hex[:8],))
    with AppendBuilder(base_image, registry.address, cache_dir=tmp_path / "cache") as builder:
        try:
            builder.build(ctx)
        except BuildError as exc:
            message = str(exc)
        else:
            raise AssertionError("the build should have failed")
    assert "fairing-no-such-package" in message and "wheels" in message
    assert list(scratch.iterdir()) == []
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def test_full_notebook_payload_runs_with_papermill_installed_without_docker(registry, base_image, docker_engine,
                                                                            fairing_cache, tmp_path):
    """papermill and ipykernel (with compiled wheels: pyzmq, tornado...) go into the
    requirements layer for the image's Python; the notebook runs whole, parameters injected."""
    import nbformat

    from fairing.preprocessors.notebook import FullNotebookPreprocessor

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("factor = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("result = 21 * factor\nprint('result', result)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, str(path))
    ctx = FullNotebookPreprocessor(path, parameters={"factor": 2}, requirements=[]).context()
    with AppendBuilder(base_image, registry.address, cache_dir=fairing_cache) as builder:
        ref = builder.build(ctx)
    envelope, out = _job_result(docker_engine, ref)
    assert envelope.get("ok"), out
    executed = envelope["value"]
    outputs = [o.get("text", "") for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("result 42" in "".join(t) if isinstance(t, list) else "result 42" in t for t in outputs), outputs
