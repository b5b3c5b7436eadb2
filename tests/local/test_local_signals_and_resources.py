"""The submitting process and its resources, for real: a SIGTERM to a real submitter stops its
local jobs and a map's running indexes and removes their directories; a map's indexes share
one payload on disk; the in-memory log of a job that prints many lines stays bounded while
its whole log stays on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import fairing
from fairing.handle import LogBuffer

_SUBMITTER = textwrap.dedent('''
    import json, os, sys, time
    import fairing

    @fairing.train(backend="local", quiet=True, timeout=600)
    def slow(i):
        import os, time
        with open(os.path.join(os.environ["PIDS_DIR"], str(os.getpid())), "w") as fh:
            fh.write(str(os.getpgid(0)))
        print("started", flush=True)
        time.sleep(600)

    mode = sys.argv[1]
    if mode == "map":
        handle = slow.map_submit([((i,), {}) for i in range(6)], parallelism=2)
    else:
        handle = slow.submit(0)
    print(json.dumps({"name": handle.name}), flush=True)
    if mode == "busy":
        time.sleep(600)  # the user's own code, not waiting on the job
    else:
        handle.result()
''')


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def _wait_for(check, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["wait", "busy", "map"])
def test_sigterm_to_the_submitter_stops_its_jobs_and_removes_their_directories(mode, workdir, tmp_path,
                                                                                 no_leftovers):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    (workdir / "submit.py").write_text(_SUBMITTER)
    env = {**os.environ, "PIDS_DIR": str(pids_dir), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "submit.py", mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        name = json.loads(proc.stdout.readline())["name"]
        running = 2 if mode == "map" else 1
        _wait_for(lambda: len(list(pids_dir.iterdir())) >= running, what="the jobs to start")
        mine = [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"fairing-local-{name}-")]
        assert len(mine) == running + (1 if mode == "map" else 0)  # a map's shared payload too
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    jobs = {int(p.name): int(p.read_text()) for p in pids_dir.iterdir()}
    try:
        assert proc.returncode == -signal.SIGTERM, proc.stderr.read()  # it still ends as SIGTERM ends a process
        assert len(jobs) == (2 if mode == "map" else 1)  # no index started after the signal
        for pid, pgid in jobs.items():
            _wait_for(lambda: _gone(pid), 15, f"job process {pid}")
            with pytest.raises(ProcessLookupError):
                os.killpg(pgid, 0)
    finally:  # when it failed, what it left running is not left to the next test
        for pgid in jobs.values():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"fairing-local-{name}-")]
    records = tmp_path / "cache" / "fairing" / "jobs"
    assert not records.exists() or not [p for p in records.iterdir() if p.name.startswith(name)]


def test_a_program_with_its_own_sigterm_handler_keeps_it(workdir, tmp_path, no_leftovers):
    script = textwrap.dedent('''
        import signal, sys
        import fairing
        mine = lambda *a: None
        signal.signal(signal.SIGTERM, mine)

        @fairing.train(backend="local", quiet=True, timeout=120)
        def one():
            return 1

        assert one() == 1
        assert signal.getsignal(signal.SIGTERM) is mine
        print("kept")
    ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0 and out.stdout.strip() == "kept", out.stderr


def _disk_kb(paths: list) -> int:
    out = subprocess.run(["du", "-sck", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def test_a_map_shares_one_payload_between_its_indexes(workdir, tmp_path, monkeypatch, no_leftovers):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    @fairing.train(backend="local", quiet=True, timeout=300)
    def size(blob):
        import os

        with open(os.path.join(os.environ["FAIRING_OUTPUTS"], "n"), "w") as fh:  # each index writes its own
            fh.write(str(len(blob)))
        return len(blob)

    inputs = [os.urandom(20_000) for _ in range(50)]  # 1 MB of payload, which every index once copied
    handle = size.map_submit([((x,), {}) for x in inputs], parallelism=4)
    try:
        handle.wait(300)
        dirs = [p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(f"fairing-local-{handle.name}-")]
        assert len(dirs) == 51  # 50 indexes and their shared files
        used = _disk_kb(dirs)
        # copied into each index, 50 x (1 MB + fairing's files) came to 52,800 KB
        assert used < 8_000, f"{used} KB for a map of 50 inputs of 20 KB"
        assert handle.result() == [20_000] * 50
        shared = next(p for p in dirs if "-shared-" in p.name)
        pkl = shared / ".fairing" / "function.pkl"
        assert pkl.stat().st_mode & 0o222 == 0  # read-only: an index does not change what the others run
        assert (dirs[0] / ".fairing" / "function.pkl").resolve() == pkl.resolve() or dirs[0] == shared
        assert handle.index_outputs(7).download(tmp_path / "seven") == {"n": tmp_path / "seven" / "n"}
    finally:
        handle.delete()
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"fairing-local-{handle.name}-")]


_PRINTER = textwrap.dedent('''
    import json, resource, sys
    import fairing
    from fairing.api import run_handle
    from fairing.jobs import saved_log

    n = int(sys.argv[1])

    @fairing.train(backend="local", quiet=True, timeout=600)
    def chatty(n):
        import sys
        write = sys.stdout.write
        for i in range(n):
            write(f"line {i} of a job that prints a great deal, padded to a realistic length\\n")
        return n

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    handle = chatty.submit(n)
    handle.wait()
    kept = len(handle._log._lines)
    every = sum(1 for _ in handle.logs(follow=False))
    tail = handle._tail().splitlines()[-1]
    assert run_handle(handle, keep_logs=True) == n
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    with open(saved_log(handle.name)) as fh:
        saved = sum(1 for _ in fh)
    print(json.dumps({"kept": kept, "dropped": handle._log.dropped, "every": every, "tail": tail,
                      "grown_kb": grown, "saved": saved}))
''')


def test_the_in_memory_log_of_a_chatty_job_is_bounded_and_the_full_log_stays_on_disk(workdir, tmp_path,
                                                                                   no_leftovers):
    n = 600_000  # kept whole, these took some 120 MB of the submitter's memory
    (workdir / "printer.py").write_text(_PRINTER)
    out = subprocess.run([sys.executable, "printer.py", str(n)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["kept"] == LogBuffer.MAX_LINES and got["dropped"] == n - LogBuffer.MAX_LINES
    assert got["tail"].startswith(f"line {n - 1} ")
    assert got["every"] == n  # handle.logs() reads the job's log file: nothing lost
    assert got["saved"] == n  # keep_logs saves all of it
    assert got["grown_kb"] < 40_000, got


def test_log_buffer_keeps_a_bounded_tail_and_tells_a_late_reader_what_it_missed():
    buf = LogBuffer(max_lines=5, max_chars=1000)
    reader = buf.follow(follow=True)
    buf.add("first")
    assert next(reader) == "first"
    for i in range(20):
        buf.add(f"l{i}")
    buf.close()
    rest = list(reader)
    assert rest[0] == "[fairing: 15 earlier lines are not kept in memory; the job's own log has them]"
    assert rest[1:] == [f"l{i}" for i in range(15, 20)]
    assert buf.tail(3) == "l17\nl18\nl19" and buf.dropped == 16
    big = LogBuffer(max_lines=100, max_chars=10)
    for word in ("aaaa", "bbbb", "cccc", "dddd"):
        big.add(word)
    assert list(big.follow(follow=False))[1:] == ["cccc", "dddd"]  # no more than 10 characters kept
    huge = LogBuffer(max_chars=10)
    huge.add("x" * 50)  # one line longer than the limit is still its last line
    assert huge.tail() == "x" * 50
