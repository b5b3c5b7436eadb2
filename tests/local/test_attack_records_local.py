"""Attacks on the job records (issue 25 item 4), for real: hostile record files, names,
pids and kept logs; the CLI must answer with a ``fairing: error:`` line, never hang, never
signal or remove what is not fairing's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import fairing
from fairing.deployers.local import process_start_time
from fairing.jobs import jobs_dir, logs_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "c"
    tmp = tmp_path / "t"
    path.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("KUBECONFIG", str(path / "no-such-kubeconfig"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    yield path
    monkeypatch.setattr(tempfile, "tempdir", None)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _record(name: str, *, pid: int, workdir: str, started=None) -> dict:
    job_dir = jobs_dir() / name
    job_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "backend": "local", "created": time.time(), "image": "", "endpoint": False,
              "local": {"job_dir": str(job_dir), "workdir": workdir, "pid": pid, "started": started},
              "result": {"channel": "file", "key_ref": "file:" + str(job_dir / "key")}}
    return record


def _plant(name: str, content: "dict | str | bytes") -> Path:
    path = jobs_dir() / name / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    code = "import sys\nfrom fairing.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _clean_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "fairing: error:" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("content", [
    "[1, 2]", "1" * 5000, "NaN", "\ufeff{}", "{}".encode("utf-16"), b"\xff\xfe\x00{", "x" * ((1 << 20) + 1),
    "[" * 200000 + "]" * 200000, '{"a":' * 100000 + "1" + "}" * 100000,
], ids=["list", "hugeint", "nan", "bom", "utf16", "badutf8", "over1mib", "deep-list", "deep-dict"])
def test_a_hostile_record_file_is_listed_invalid_and_deletable(cache, content):
    _plant("bad", content)
    (info,) = fairing.jobs()
    assert info.name == "bad" and info.phase == "Invalid" and info.problem
    listed = _cli("list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr and "bad" in listed.stdout, listed.stderr[-1500:]
    with pytest.raises(fairing.JobRecordError):
        fairing.attach("bad")
    fairing.jobs.delete("bad")
    assert not (jobs_dir() / "bad").exists()


def test_a_record_that_is_a_fifo_does_not_hang_list(cache):
    path = jobs_dir() / "fifo" / "record.json"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    listed = _cli("list")  # opening a FIFO for reading blocks until a writer comes
    assert listed.returncode == 0 and "fifo" in listed.stdout, listed.stderr[-1500:]
    (info,) = fairing.jobs()
    assert info.phase == "Invalid"
    fairing.jobs.delete("fifo")
    assert not path.parent.exists()


@pytest.mark.parametrize("command", ["status", "delete", "logs", "attach"])
def test_a_name_too_long_for_a_file_is_a_clean_error(cache, command):
    proc = _cli(command, "x" * 300)
    _clean_error(proc)


def test_a_name_with_a_nul_byte_is_a_configuration_error(cache):
    for call in (fairing.attach, fairing.jobs.delete):
        with pytest.raises(fairing.FairingError):
            call("a\x00b")


def test_a_record_without_a_start_time_never_signals_a_live_foreign_process(cache, sleeper):
    # no exit file yet: a record that did not keep the start time (planted, or cut short)
    # must not make `fairing delete` SIGTERM the group of whatever process has that pid now
    workdir = tempfile.mkdtemp(prefix="fairing-local-nostart-")
    _plant("nostart", _record("nostart", pid=sleeper.pid, workdir=workdir, started=None))
    fairing.jobs()
    proc = _cli("delete", "nostart")
    assert proc.returncode == 0, proc.stderr[-1500:]
    time.sleep(0.5)
    assert sleeper.poll() is None, "a process that is not the job's was signalled"
    assert not Path(workdir).exists() and not (jobs_dir() / "nostart").exists()


def test_a_process_name_with_parentheses_and_spaces_is_parsed(cache, tmp_path):
    # /proc/<pid>/stat's field 2 is the name in parentheses, which may hold ') ' itself
    exe = tmp_path / "a) b (c"
    exe.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(exe), "120"], start_new_session=True)
    try:
        time.sleep(0.2)
        with open("/proc/self/stat") as fh:
            mine = fh.read()
        started = process_start_time(proc.pid)
        assert started is not None and started >= int(mine.rsplit(")", 1)[1].split()[19])
        workdir = tempfile.mkdtemp(prefix="fairing-local-paren-")
        _plant("paren", _record("paren", pid=proc.pid, workdir=workdir, started=started))
        (info,) = fairing.jobs()
        assert info.phase == "Running"
        fairing.jobs.delete("paren")
        assert proc.wait(10) is not None  # the recorded process: stopped
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("pid", [0, 1, -1, -5, 2 ** 40])
def test_odd_pids_are_refused_or_harmless(cache, pid):
    workdir = tempfile.mkdtemp(prefix="fairing-local-odd-")
    _plant("odd", _record("odd", pid=pid, workdir=workdir, started=123))
    (info,) = fairing.jobs()
    assert info.phase in ("Invalid", "Failed", "Succeeded")
    proc = _cli("delete", "odd")
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert not (jobs_dir() / "odd").exists()


def test_the_test_process_own_pid_is_not_signalled(cache):
    # a record naming this very process, with a start time that is not its own
    workdir = tempfile.mkdtemp(prefix="fairing-local-self-")
    _plant("self", _record("self", pid=os.getpid(), workdir=workdir, started=process_start_time(os.getpid()) + 7))
    fairing.jobs.delete("self")  # we are alive to assert
    assert not (jobs_dir() / "self").exists()


def test_a_workdir_escaping_through_dotdot_or_being_tmp_itself_is_refused(cache, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    tmp = tempfile.gettempdir()
    for workdir in (tmp, f"{tmp}/fairing-local-w-x/../../victim", str(victim)):
        _plant("w", _record("w", pid=2 ** 22 + 1, workdir=workdir, started=1))
        (info,) = fairing.jobs()
        assert info.phase == "Invalid", workdir
        fairing.jobs.delete("w")
    assert (victim / "keep").read_text() == "x" and Path(tmp).is_dir()


def test_a_workdir_that_is_a_fairing_named_link_to_home_is_not_followed(cache, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious").write_text("mine")
    link = Path(tempfile.gettempdir()) / "fairing-local-lnk-abc"
    link.symlink_to(home)
    _plant("lnk", _record("lnk", pid=2 ** 22 + 1, workdir=str(link), started=1))
    fairing.jobs.delete("lnk")
    _cli("delete", "lnk")
    assert (home / "precious").read_text() == "mine"


def test_a_job_dir_that_links_to_another_jobs_dir_is_not_followed(cache):
    workdir = tempfile.mkdtemp(prefix="fairing-local-real-")
    _plant("real", _record("real", pid=2 ** 22 + 1, workdir=workdir, started=1))
    (jobs_dir() / "alias").symlink_to(jobs_dir() / "real")
    infos = {i.name: i for i in fairing.jobs()}
    assert infos["alias"].phase == "Invalid"
    fairing.jobs.delete("alias")
    assert (jobs_dir() / "real" / "record.json").is_file() and Path(workdir).is_dir()


def test_a_kept_log_that_links_to_an_unreadable_file_or_is_a_fifo(cache):
    logs_dir().mkdir(parents=True, exist_ok=True)
    secret = Path(tempfile.gettempdir()) / "secret"
    secret.write_text("top secret\n")
    secret.chmod(0)
    (logs_dir() / "shadow.log").symlink_to("/etc/shadow")
    (logs_dir() / "sec.log").symlink_to(secret)
    os.mkfifo(logs_dir() / "fifo.log")
    for name in ("shadow", "sec", "fifo"):
        proc = _cli("logs", name)
        assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
        assert "root:" not in proc.stdout and "top secret" not in proc.stdout


def test_concurrent_deletes_of_one_job(cache, sleeper):
    # two processes delete the same running job at once: both end cleanly, the job is stopped
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        workdir = tempfile.mkdtemp(prefix="fairing-local-twice-")
        _plant("twice", _record("twice", pid=proc.pid, workdir=workdir, started=process_start_time(proc.pid)))
        code = "import sys\nfrom fairing.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        both = [subprocess.Popen([sys.executable, "-c", code, "delete", "twice"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in both]
        for p, (_, err) in zip(both, outs):
            assert "Traceback" not in err, err[-1500:]
        assert proc.wait(10) is not None
        assert sleeper.poll() is None
        assert not Path(workdir).exists() and not (jobs_dir() / "twice").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_record_cannot_claim_another_jobs_working_directory_by_prefix(cache):
    # the job "a"'s prefix fairing-local-a- also starts the job "a-b"'s directories
    other = tempfile.mkdtemp(prefix="fairing-local-a-b-")
    (Path(other) / "keep").write_text("x")
    _plant("a", _record("a", pid=2 ** 22 + 1, workdir=other, started=1))
    (info,) = fairing.jobs()
    assert info.phase == "Invalid"
    fairing.jobs.delete("a")
    assert (Path(other) / "keep").read_text() == "x"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_record_of_another_user_is_invalid(cache):
    workdir = tempfile.mkdtemp(prefix="fairing-local-theirs-")
    path = _plant("theirs", _record("theirs", pid=2 ** 22 + 1, workdir=workdir, started=1))
    os.chown(path, 65534, 65534)
    (info,) = fairing.jobs()
    assert info.phase == "Invalid" and "another user" in info.problem
    fairing.jobs.delete("theirs")
    assert Path(workdir).is_dir()


@pytest.mark.parametrize("kind", ["fifo", "devzero", "garbage", "huge"])
def test_an_exit_file_that_is_not_one_does_not_hang_or_blow_up_list(cache, kind):
    workdir = tempfile.mkdtemp(prefix="fairing-local-ex-")
    _plant("ex", _record("ex", pid=2 ** 22 + 1, workdir=workdir, started=1))
    exit_file = jobs_dir() / "ex" / "exit"
    if kind == "fifo":
        os.mkfifo(exit_file)
    elif kind == "devzero":
        exit_file.symlink_to("/dev/zero")
    elif kind == "garbage":
        exit_file.write_bytes(b"\xff\x00 nope")
    else:
        exit_file.write_text("9" * 5000)
    for args in (("list",), ("status", "ex"), ("delete", "--all-finished")):
        proc = _cli(*args)
        assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert not Path(workdir).exists() and not (jobs_dir() / "ex").exists()  # finished (no process): deleted


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_a_log_or_key_file_that_is_not_one_does_not_hang_logs_or_attach(cache, sleeper, kind):
    workdir = tempfile.mkdtemp(prefix="fairing-local-lg-")
    _plant("lg", _record("lg", pid=sleeper.pid, workdir=workdir, started=process_start_time(sleeper.pid)))
    for name in ("log", "key"):
        target = jobs_dir() / "lg" / name
        if kind == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to("/dev/zero")
    for args in (("logs", "lg"), ("status", "lg")):
        proc = _cli(*args)
        assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    proc = _cli("delete", "lg")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert sleeper.wait(10) is not None  # the recorded process: stopped


def test_keeping_the_log_of_a_bad_record_does_not_write_through_a_link(cache, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    _plant("bl", "not json")
    (jobs_dir() / "bl" / "log").write_text("the job's log\n")
    logs_dir().mkdir(parents=True, exist_ok=True)
    (logs_dir() / "bl.log").symlink_to(victim)
    proc = _cli("delete", "bl", "--keep-logs")
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert victim.read_text() == "mine\n"
    assert not (jobs_dir() / "bl").exists()
