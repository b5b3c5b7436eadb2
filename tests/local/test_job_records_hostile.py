"""Job records are trusted only when they should be: a corrupt or planted record is listed by
name, never acted on, and can be deleted; a pid is signalled only while it is the job's;
a kept log is read on an install without the kubernetes package.

Everything here is real: record files on disk, links, processes and signals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fairing
from fairing import JobRecordError, TrainJob
from fairing.deployers.local import process_start_time
from fairing.jobs import jobs_dir
from fairing.jobs.records import _write

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    """fairing's cache for this test only, and a HOME of its own (with a file that must survive)."""
    path = tmp_path_factory.mktemp("cache")
    home = tmp_path_factory.mktemp("home")
    (home / "precious.txt").write_text("mine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(path / "no-such-kubeconfig"))
    yield path
    assert (home / "precious.txt").read_text() == "mine"


@pytest.fixture
def sleeper():
    """A live process that is no job of ours: its own process group, as a job's shim is."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _local_record(name: str, *, pid: int, workdir: str, started=None, exit_code=None) -> dict:
    job_dir = jobs_dir() / name
    job_dir.mkdir(parents=True, exist_ok=True)
    if exit_code is not None:
        (job_dir / "exit").write_text(f"{exit_code}\n")
    record = {"name": name, "backend": "local", "created": time.time(), "image": "", "endpoint": False,
              "origin": {"version": fairing.__version__, "user": "me", "payload": "script", "source": "x.py"},
              "local": {"job_dir": str(job_dir), "workdir": workdir, "pid": pid},
              "result": {"channel": "file", "key_ref": "file:" + str(job_dir / "key")}}
    if started is not None:
        record["local"]["started"] = started
    return record


def _plant(name: str, content: "dict | str") -> Path:
    path = jobs_dir() / name / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _cli(*args: str, env: "dict | None" = None, block_kubernetes: bool = False) -> subprocess.CompletedProcess:
    code = "import sys\n"
    if block_kubernetes:  # a plain install: no kubernetes package to import
        code += "sys.modules['kubernetes'] = None\n"
    code += "from fairing.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_a_corrupt_record_is_listed_by_name_refused_and_deletable(cache):
    path = _plant("broken-1", "{not json")
    (info,) = fairing.jobs()
    assert (info.name, info.phase) == ("broken-1", "Invalid") and "not JSON" in info.problem
    assert not info.done  # `delete --all-finished` leaves it alone
    with pytest.raises(JobRecordError, match="broken-1") as caught:
        fairing.attach("broken-1")
    assert caught.value.job == "broken-1" and caught.value.path == str(path)
    assert "fairing delete broken-1" in str(caught.value)
    fairing.jobs.delete("broken-1")
    assert fairing.jobs() == [] and not path.parent.exists()


@pytest.mark.parametrize("change", [
    {"created": "yesterday"},
    {"local": {"pid": "123"}},
    {"local": {"pid": True}},
    {"local": {"started": "later"}},
    {"name": "someone-else"},
    {"backend": "mainframe"},
    {"origin": ["not", "a", "dict"]},
    {"result": {"channel": "file", "key_ref": "file:/etc/shadow"}},
])
def test_a_record_of_the_wrong_shape_or_types_is_invalid(cache, change):
    workdir = tempfile.mkdtemp(prefix="fairing-local-typed-")
    try:
        record = _local_record("typed", pid=os.getpid(), workdir=workdir, started=1, exit_code=0)
        for key, value in change.items():
            if isinstance(value, dict) and key == "local":
                record["local"].update(value)
            else:
                record[key] = value
        _plant("typed", record)
        (info,) = fairing.jobs()
        assert info.phase == "Invalid" and info.name == "typed"
        with pytest.raises(JobRecordError):
            fairing.attach("typed")
        fairing.jobs.delete("typed")
        assert Path(workdir).is_dir()  # a record that cannot be trusted removes nothing it names
    finally:
        os.rmdir(workdir)


@pytest.mark.parametrize("where", ["/", "HOME", "HOME/fairing-local-planted-x", "TMP/not-fairings"])
def test_delete_never_removes_a_working_directory_that_is_not_fairings(cache, sleeper, where):
    home = Path(os.environ["HOME"])
    tmp = Path(tempfile.gettempdir())
    workdir = {"/": Path("/"), "HOME": home, "HOME/fairing-local-planted-x": home / "fairing-local-planted-x",
               "TMP/not-fairings": Path(tempfile.mkdtemp(prefix="not-fairings-", dir=tmp))}[where]
    workdir.mkdir(exist_ok=True)
    (workdir / "fairing-keep-me").write_text("x") if where != "/" else None
    try:
        _plant("planted", _local_record("planted", pid=sleeper.pid, workdir=str(workdir), exit_code=0))
        (info,) = fairing.jobs()
        assert info.phase == "Invalid" and "working directory" in info.problem
        done = _cli("delete", "--all-finished", env={"XDG_CACHE_HOME": str(cache)})
        assert done.returncode == 0, done.stderr
        assert (jobs_dir() / "planted").exists()  # not finished as far as anyone can tell: left alone
        fairing.jobs.delete("planted")
        assert not (jobs_dir() / "planted").exists()
        assert workdir.is_dir() and (where == "/" or (workdir / "fairing-keep-me").is_file())
        assert sleeper.poll() is None
    finally:
        if where != "/":
            (workdir / "fairing-keep-me").unlink()
        if where in ("HOME/fairing-local-planted-x", "TMP/not-fairings"):
            workdir.rmdir()


@pytest.mark.parametrize("started", ["other", None])
def test_a_reused_pid_is_never_signalled(cache, sleeper, started):
    # a finished job whose pid now belongs to another process: with the recorded start time
    # (which is not the sleeper's), or from a record that did not keep one
    workdir = tempfile.mkdtemp(prefix="fairing-local-reused-")
    recorded = process_start_time(sleeper.pid) - 1 if started == "other" else None
    _plant("reused", _local_record("reused", pid=sleeper.pid, workdir=workdir, started=recorded,
                                   exit_code=None if started == "other" else 0))
    (info,) = fairing.jobs()
    assert info.name == "reused" and info.phase != "Running"  # the live pid is not the job's
    fairing.jobs.delete("reused")
    time.sleep(0.5)
    assert sleeper.poll() is None, "the other process was signalled"
    assert not Path(workdir).exists() and not (jobs_dir() / "reused").exists()  # fairing's own: removed


def test_the_recorded_process_is_still_stopped(cache):
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    workdir = tempfile.mkdtemp(prefix="fairing-local-mine-")
    try:
        _plant("mine", _local_record("mine", pid=proc.pid, workdir=workdir, started=process_start_time(proc.pid)))
        (info,) = fairing.jobs()
        assert info.phase == "Running"
        fairing.jobs.delete("mine")
        assert proc.wait(10) is not None
    finally:
        proc.kill()
        proc.wait()


def test_a_symlinked_record_file_or_directory_is_not_followed(cache, tmp_path):
    workdir = tempfile.mkdtemp(prefix="fairing-local-linked-")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "record.json"
    target.write_text(json.dumps(_local_record("linked", pid=os.getpid(), workdir=workdir, exit_code=0)))
    link = jobs_dir() / "linked" / "record.json"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    (jobs_dir() / "dirlink").symlink_to(elsewhere, target_is_directory=True)
    try:
        infos = {info.name: info for info in fairing.jobs()}
        assert infos["linked"].phase == "Invalid" and "symbolic link" in infos["linked"].problem
        assert infos["dirlink"].phase == "Invalid" and "symbolic link" in infos["dirlink"].problem
        with pytest.raises(JobRecordError, match="linked"):
            fairing.attach("linked")
        fairing.jobs.delete("linked")
        fairing.jobs.delete("dirlink")
        assert target.is_file() and elsewhere.is_dir() and Path(workdir).is_dir()
        assert fairing.jobs() == []
    finally:
        os.rmdir(workdir)


def test_a_corrupt_record_does_not_hide_a_running_job(workdir, cache):
    (workdir / "slow.py").write_text("import time\ntime.sleep(60)\n")
    handle = TrainJob("slow.py").submit()
    try:
        (jobs_dir() / handle.name / "record.json").write_text('{"name": ')
        (info,) = fairing.jobs()
        assert info.name == handle.name and info.phase == "Invalid"
        listed = _cli("list", env={"XDG_CACHE_HOME": str(cache)})
        assert listed.returncode == 0 and handle.name in listed.stdout and "invalid record" in listed.stdout
    finally:
        handle.delete()


def test_listing_while_records_are_written_never_fails(cache):
    workdir = tempfile.mkdtemp(prefix="fairing-local-busy-")
    record = _local_record("busy", pid=os.getpid(), workdir=workdir, started=process_start_time(os.getpid()),
                           exit_code=0)
    path = jobs_dir() / "busy" / "record.json"
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            _write(path, {**record, "created": float(n)})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(200):
            infos = fairing.jobs()
            assert [(i.name, i.phase) for i in infos] in ([], [("busy", "Succeeded")])
    finally:
        stop.set()
        writer.join()
    fairing.jobs.delete("busy")
    assert not Path(workdir).exists()


def test_fairing_logs_reads_a_kept_log_without_the_kubernetes_package(workdir, cache):
    (workdir / "hello.py").write_text("print('kept line')\n")
    handle = TrainJob("hello.py").submit()
    handle.wait(60)
    env = {"XDG_CACHE_HOME": str(cache)}
    deleted = _cli("delete", handle.name, "--keep-logs", env=env, block_kubernetes=True)
    assert deleted.returncode == 0, deleted.stderr
    shown = _cli("logs", handle.name, env=env, block_kubernetes=True)
    assert shown.returncode == 0, shown.stderr
    assert "kept line" in shown.stdout
    unknown = _cli("logs", "no-such-job-here", env=env, block_kubernetes=True)
    assert unknown.returncode != 0 and "no-such-job-here" in unknown.stderr
    assert "pip install" not in unknown.stderr and "kubernetes" not in unknown.stderr.split("No job")[0]
