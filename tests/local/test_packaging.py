"""Packaging never leaks a secret and never loses a user's file: real jobs on the local backend.

A secret is planted (a token in an index URL, a token a module read at import) and
every tar, event, log line, error and cache file is scanned for its bytes. The index
is a real one on loopback that refuses requests without the credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

import fairing
from fairing import BuildError, JobError, TrainJob
from fairing.backends import Backend
from fairing.builders.local import LocalBuilder
from fairing.deployers.local import LocalDeployer
from fairing.events import Stage
from fairing.preprocessors.function import FunctionPreprocessor
from tests.services.package_index import DEMO_PROJECT, DEMO_VERSION, start_index

pytestmark = pytest.mark.usefixtures("no_leftovers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def index():
    handle = start_index("ci-user", "tok-" + uuid.uuid4().hex)
    yield handle
    handle.stop()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _assert_absent(secret: str, **where) -> None:
    needle = secret.encode()
    for name, value in where.items():
        if isinstance(value, dict):
            for path, data in value.items():
                assert needle not in data, f"the secret is in {path}"
        else:
            data = value if isinstance(value, bytes) else str(value).encode()
            assert needle not in data, f"the secret is in {name}"


def _hashed_project(proj: Path, index) -> None:
    wheel = next(iter(index.wheels))
    _write(proj / "requirements.txt", f"""\
        # the index needs a token
        --index-url {index.url}
        -r deps/pinned.txt
    """)
    _write(proj / "deps" / "pinned.txt", f"""\
        {DEMO_PROJECT}=={DEMO_VERSION} \\
            --hash=sha256:{index.sha256(wheel)}
    """)
    _write(proj / "train.py", """\
        import os, fairing_demo_pkg
        print("value", fairing_demo_pkg.VALUE)
        print("index env in the job:", sorted(k for k in os.environ if k.endswith("INDEX_URL")))
    """)


def test_hashed_included_requirements_from_an_index_with_a_token_work_and_the_token_goes_nowhere(
        workdir, tmp_path, index, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proj = tmp_path / "proj"  # not the current directory: -r is relative to the file that names it
    _hashed_project(proj, index)
    events = []
    job = TrainJob(str(proj / "train.py"), on_event=events.append)
    context = job.preprocessor.context()
    handle = job.submit()
    try:
        handle.result(timeout=300)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    assert "value demo-ok" in logs
    assert "index env in the job: []" in logs  # the index reached pip at build time only
    assert any(ok for path, ok in index.requests) and any(path.startswith("/files/") for path, ok in index.requests)
    started = [e for e in events if isinstance(e, Stage) and e.name == "requirements" and e.status == "started"]
    assert started and "--hash=sha256:" in started[0].detail
    _assert_absent(index.token, events=repr(events), logs="\n".join(logs), tar=context.tar_bytes(),
                   requirements=context.requirements_txt(), context=repr(context),
                   cache=_files_under(tmp_path / "cache"))


def test_a_failing_install_from_an_index_with_a_token_is_a_redacted_build_error(workdir, tmp_path, index, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write(workdir / "train.py", "print(1)\n")
    events = []
    job = TrainJob("train.py", requirements=[f"--extra-index-url {index.url}", f"{DEMO_PROJECT}==9.9"],
                   on_event=events.append)
    with pytest.raises(BuildError) as err:
        job.submit()
    assert f"{DEMO_PROJECT}==9.9" in str(err.value)
    _assert_absent(index.token, error=str(err.value), events=repr(events), cache=_files_under(tmp_path / "cache"))


def test_an_in_project_symlink_works_in_the_job(workdir):
    _write(workdir / "data" / "v2" / "file.csv", "a,1\nb,2\n")
    os.symlink("v2/file.csv", workdir / "data" / "latest.csv")
    _write(workdir / "train.py", """\
        import os
        print("link", os.path.islink("data/latest.csv"), os.readlink("data/latest.csv"))
        print("rows", len(open("data/latest.csv").read().split()))
    """)
    handle = TrainJob("train.py", input_files="data", requirements=[]).submit()
    try:
        handle.result(timeout=120)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    assert logs == ["link True v2/file.csv", "rows 2"]


def test_a_module_global_token_never_reaches_the_payload(workdir, monkeypatch):
    token = "tok-" + uuid.uuid4().hex
    _write(workdir / "settings_local13.py", """\
        import os
        TOKEN = os.environ.get("SETTINGS_TOKEN", "")  # read at import, as a settings module does
        def lr():
            return 0.5 if TOKEN else 0.25
    """)
    monkeypatch.setenv("SETTINGS_TOKEN", token)
    monkeypatch.syspath_prepend(str(workdir))
    import settings_local13

    try:
        def train(epochs):
            return {"lr": settings_local13.lr(), "epochs": epochs}

        pre = FunctionPreprocessor(train, (3,))
        context = pre.context()
        _assert_absent(token, tar=context.tar_bytes())
        assert ".fairing/modules/settings_local13.py" in context.files  # it travels as source
        monkeypatch.delenv("SETTINGS_TOKEN")  # the job imports the module afresh, without the token
        handle = Backend("local", LocalBuilder(), LocalDeployer()).deployer.deploy(LocalBuilder().build(context))
        try:
            assert handle.result(timeout=120) == {"lr": 0.25, "epochs": 3}
        finally:
            handle.delete()
    finally:
        sys.modules.pop("settings_local13", None)


def test_a_forged_result_line_is_never_unpickled(workdir, tmp_path):
    marker = tmp_path / "pwned"

    @fairing.train
    def forge():
        import base64
        import os
        import pickle
        import zlib

        class Boom:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        body = base64.b64encode(zlib.compress(pickle.dumps({"ok": True, "value": Boom()}))).decode()
        line = "fairing-result:v1:" + body
        print(line, flush=True)  # in the log
        with open(os.environ["FAIRING_RESULT_FILE"], "w") as fh:  # and where the result belongs
            fh.write(line + ":" + "0" * 64)
        os._exit(0)  # before the runtime writes the genuine one

    with pytest.raises(JobError, match="reported no result"):
        forge()
    assert not marker.exists()


def test_two_concurrent_submits_share_the_requirements_cache(workdir, tmp_path, index, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _hashed_project(workdir, index)
    results, events = {}, []

    def submit(n):
        try:
            results[n] = TrainJob("train.py", on_event=events.append).run(timeout=300)
        except BaseException as exc:  # reported below
            results[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == {0: None, 1: None}
    statuses = sorted(e.status for e in events if isinstance(e, Stage) and e.name == "requirements")
    assert statuses.count("started") == 1 and statuses.count("skipped") == 1, statuses  # one pip, one wait
    cache = tmp_path / "cache" / "fairing" / "local-requirements"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1  # no staging directory left


def test_concurrent_submits_from_two_processes(workdir, tmp_path, index):
    _hashed_project(workdir, index)
    script = ("import fairing, json; print(json.dumps(fairing.TrainJob('train.py').run(timeout=300)))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all(json.loads(out.strip().splitlines()[-1]) is None for out in outputs)
    cache = tmp_path / "cache" / "fairing" / "local-requirements"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_the_cache_key_includes_the_interpreter_version(workdir, tmp_path, index):
    other = Path("/root/.pyenv/versions/3.12.1/bin/python3")
    assert other.is_file(), "the test needs a second interpreter (pyenv's 3.12.1)"
    _hashed_project(workdir, index)
    cache = tmp_path / "cache"
    for python in (sys.executable, str(other)):
        backend = Backend("local", LocalBuilder(python=python, cache_dir=cache), LocalDeployer())
        handle = TrainJob("train.py", backend=backend).submit()
        try:
            handle.result(timeout=300)
            assert "value demo-ok" in list(handle.logs(follow=False))
        finally:
            handle.delete()
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2  # one install per interpreter


def test_readme_what_gets_packaged_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What gets packaged", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['.fairing', 'conf', 'data', 'train.py'] ['latest.csv', 'v2'] v2/rows.csv",
                                        "lr: 0.1"]
    assert "not-for-the-image" not in proc.stdout
    claimed = section.split("```", 2)[2]
    assert "['.fairing', 'conf', 'data', 'train.py'] ['latest.csv', 'v2'] v2/rows.csv" in claimed


def test_a_local_package_travels_as_its_python_sources(workdir, monkeypatch):
    token = "tok-" + uuid.uuid4().hex
    _write(workdir / "pkg_local13" / "__init__.py", "from . import helpers\n")
    _write(workdir / "pkg_local13" / "helpers.py", """\
        import os
        from .config import FACTOR
        API_TOKEN = os.environ.get("PKG_TOKEN", "")
        def scale(x):
            return x * FACTOR
    """)
    _write(workdir / "pkg_local13" / "config.py", "FACTOR = 3\n")
    _write(workdir / "pkg_local13" / "table.csv", "not python\n")
    monkeypatch.setenv("PKG_TOKEN", token)
    monkeypatch.syspath_prepend(str(workdir))
    import pkg_local13

    try:
        def train(x):
            return pkg_local13.helpers.scale(x)

        context = FunctionPreprocessor(train, (5,)).context()
        shipped = {p for p in context.files if p.startswith(".fairing/modules/")}
        assert shipped == {f".fairing/modules/pkg_local13/{n}" for n in ("__init__.py", "helpers.py", "config.py")}
        _assert_absent(token, tar=context.tar_bytes())
        handle = LocalDeployer().deploy(LocalBuilder().build(context))
        try:
            assert handle.result(timeout=120) == 15
        finally:
            handle.delete()
    finally:
        for name in [m for m in sys.modules if m.startswith("pkg_local13")]:
            sys.modules.pop(name)
