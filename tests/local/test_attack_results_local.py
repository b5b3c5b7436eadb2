"""Issue 25's outputs, result and SIGTERM handling attacked on the local backend, for real (real
jobs, files, links and signals): a symlinked directory under $FAIRING_OUTPUTS, an output that
meets a directory or a link in the submitter's directory, a job printing 32 MB without a
newline, and SIGTERM delivered twice, after Ctrl-C, during a map's start-up, or to a program
that starts its jobs from a worker thread. Each test checks that nothing is left behind."""

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
from fairing import ConfigurationError


@pytest.fixture
def private(tmp_path, monkeypatch):
    """This test's own TMPDIR (for the submitter here and its jobs) and cache; nothing of
    fairing's may be left in either afterwards."""
    tmp = tmp_path / "t"
    tmp.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    left = [p.name for p in tmp.iterdir() if p.name.startswith("fairing-")]
    jobs = cache / "fairing" / "jobs"
    records = [p.name for p in jobs.iterdir()] if jobs.is_dir() else []
    assert not left and not records, f"left behind: {left} {records}"


# -- outputs --------------------------------------------------------------------------------


@fairing.train(backend="local", quiet=True, timeout=300, outputs_dir="back")
def writes_through_a_linked_directory(outside):
    import os

    root = os.environ["FAIRING_OUTPUTS"]
    os.makedirs(os.path.join(outside, "ckpt", "deep"), exist_ok=True)
    with open(os.path.join(outside, "ckpt", "deep", "weights.bin"), "w") as fh:
        fh.write("weights")
    os.symlink(os.path.join(outside, "ckpt"), os.path.join(root, "ckpt"))  # saved elsewhere, linked here
    os.symlink(root, os.path.join(root, "loop"))  # a link back up: must not hang the job
    os.symlink("..", os.path.join(outside, "ckpt", "deep", "up"))  # and one inside the linked directory
    with open(os.path.join(root, "plain.txt"), "w") as fh:
        fh.write("plain")
    return "done"


def test_a_linked_directory_under_fairing_outputs_comes_back_and_a_loop_does_not_hang(workdir, private, tmp_path):
    # was: os.walk does not descend into a link to a directory, so ckpt/ vanished without a word
    assert writes_through_a_linked_directory(str(tmp_path / "elsewhere")) == "done"
    back = workdir / "back"
    assert (back / "plain.txt").read_text() == "plain"
    assert (back / "ckpt" / "deep" / "weights.bin").read_text() == "weights"
    assert not (back / "loop").exists() and not (back / "ckpt" / "deep" / "up").exists()


@fairing.train(backend="local", quiet=True, timeout=300)
def writes_named(names):
    import os

    root = os.environ["FAIRING_OUTPUTS"]
    for name in names:
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as fh:
            fh.write(f"from the job: {name}")
    return len(names)


def test_an_output_where_the_submitter_has_a_directory_is_a_typed_error_and_nothing_is_written(workdir, private):
    # was: a raw IsADirectoryError half-way through the download
    (workdir / "results").mkdir()
    (workdir / "notes").write_text("mine")
    with pytest.raises(ConfigurationError, match=r"'results'.*is a directory"):
        writes_named(["aaa-first.txt", "results"])
    assert not (workdir / "aaa-first.txt").exists()  # refused before anything was written
    with pytest.raises(ConfigurationError, match=r"'notes/x'.*a file where its directory should be"):
        writes_named(["notes/x"])
    assert (workdir / "notes").read_text() == "mine"
    with pytest.raises(ConfigurationError, match="it is a file, not a directory"):  # was a raw FileExistsError
        fairing.train(backend="local", quiet=True, timeout=300, outputs_dir="notes")(writes_named.func)(["m"])
    assert (workdir / "notes").read_text() == "mine"


def test_an_output_replaces_a_link_in_the_submitters_directory_instead_of_writing_through_it(workdir, private,
                                                                                            tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("a host file the job must not reach")
    (workdir / "model.txt").symlink_to(outside)
    assert writes_named(["model.txt"]) == 1
    assert outside.read_text() == "a host file the job must not reach"  # was: written through the link
    assert not (workdir / "model.txt").is_symlink()
    assert (workdir / "model.txt").read_text() == "from the job: model.txt"
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".fairing-download")] == []


def test_a_non_utf8_output_name_comes_back(workdir, private):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def odd_name():
        import os

        with open(os.path.join(os.fsencode(os.environ["FAIRING_OUTPUTS"]), b"caf\xe9.txt"), "w") as fh:
            fh.write("x")
        return 1

    assert odd_name() == 1
    assert (os.fsencode(workdir) + b"/caf\xe9.txt") in [os.fsencode(p) for p in workdir.iterdir()]


@pytest.mark.xfail(strict=True, reason=(
    "design: every file under $FAIRING_OUTPUTS is now downloaded into the current directory by "
    "default, replacing a file of the same name without a word: a job writing "
    "$FAIRING_OUTPUTS/train.py (or config.yaml, README.md) silently replaces the user's source. "
    "Refusing (or at least naming) an overwrite of a file the job was packaged from needs the "
    "context's file list at download time, which the handle does not carry."))
def test_an_output_does_not_silently_replace_the_users_own_source_file(workdir, private):
    (workdir / "train.py").write_text("# the user's training script\n")
    try:
        writes_named(["train.py"])
    except fairing.FairingError:
        pass  # refusing is fine
    assert (workdir / "train.py").read_text() == "# the user's training script\n"


# -- the job's log --------------------------------------------------------------------------

_HUGE_LINE = textwrap.dedent('''
    import json, resource, sys, time
    import fairing

    @fairing.train(backend="local", quiet=True, timeout=600)
    def huge(n):
        import sys
        out = sys.stdout.buffer
        out.write(b"\\xff\\xfe garbage \\x00 \\r progress 10%\\r progress 20%\\r")  # not UTF-8, redrawn
        for _ in range(n):
            out.write(b"x" * (1 << 20))  # one line of n MB, no newline
        out.flush()
        return n

    n = int(sys.argv[1])
    start = time.monotonic()
    handle = huge.submit(n)
    value = handle.result()
    lines = list(handle.logs(follow=False))
    took = time.monotonic() - start
    handle.delete()
    print(json.dumps({"value": value, "took": took, "longest": max(map(len, lines)),
                      "xs": sum(line.count("x") for line in lines),
                      "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
''')


def test_a_job_printing_32_mb_without_a_newline_is_read_in_linear_time_and_bounded_memory(workdir, private):
    # was: every 64 KB read copied and rescanned everything pending (and emitted it again as a
    # partial line): 10 MB took 16 s of CPU, 32 MB some three minutes, 100 MB half an hour
    (workdir / "huge.py").write_text(_HUGE_LINE)
    out = subprocess.run([sys.executable, "huge.py", "32"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["value"] == 32
    assert got["xs"] == 32 << 20  # every byte is still in the log, cut into lines
    assert got["longest"] <= fairing.handle.LineSplitter.MAX_LINE
    assert got["took"] < 60, got  # the quadratic reading took minutes
    # 70 MB measured alone; 690 MB seen once beside 5 busy xdist workers (cause not found yet):
    # this bound catches a reader that keeps every copy of the stream, the time bound the rest
    assert got["rss_kb"] < 1_000_000, got


# -- SIGTERM ------------------------------------------------------------------------------------

_SUBMITTER = textwrap.dedent('''
    import json, os, sys, threading, time
    import fairing

    @fairing.train(backend="local", quiet=True, timeout=600)
    def slow(i, stubborn=False, blob=None):
        import os, signal, time
        if stubborn:  # a training script that ignores SIGTERM (it checkpoints, say)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.path.join(os.environ["PIDS_DIR"], str(os.getpid())), "w") as fh:
            fh.write(str(os.getpgid(0)))
        time.sleep(600)

    mode = sys.argv[1]
    if mode == "thread":  # jobs started from a worker thread, the main thread waiting on it
        def work():
            slow.submit(0).result()
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    elif mode in ("twice", "int-then-term"):
        slow.submit(0, True).result()
    elif mode == "map-start-up":  # a large payload: laying out the map's shared copy takes a while
        blob = os.urandom(120 << 20)
        print("ready", flush=True)
        slow.map_submit([((i,), {"blob": blob}) for i in range(2)], parallelism=2).result()
    elif mode == "detached":
        kept = slow.submit(0)
        kept.detach()  # meant to outlive this process
        print(json.dumps(kept.attach_info()), flush=True)
        slow.submit(1).result()
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
        time.sleep(0.02)


@pytest.mark.parametrize("mode", ["thread", "twice", "int-then-term", "map-start-up", "detached"])
def test_sigterm_leaves_nothing_behind(mode, workdir, tmp_path):
    """thread: no handler could be installed from the worker thread, so the job ran on and its
    directories stayed; twice: the second SIGTERM ended the process half-way through the
    first one's cleanup, and a job ignoring SIGTERM ran on; int-then-term: a SIGTERM during
    the delete() that Ctrl-C started did the same; map-start-up: the map's shared copy of its
    payload (240 MB here) stayed in TMPDIR; detached: a detached job must survive (it did)."""
    pids, tmp, cache = tmp_path / "pids", tmp_path / "t", tmp_path / "cache"
    pids.mkdir()
    tmp.mkdir()
    (workdir / "submit.py").write_text(_SUBMITTER)
    env = {**os.environ, "PIDS_DIR": str(pids), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.Popen([sys.executable, "submit.py", mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    kept = None
    try:
        if mode == "map-start-up":
            assert proc.stdout.readline().strip() == "ready"
            _wait_for(lambda: any("-shared-" in p.name for p in tmp.iterdir()), what="the map's shared copy")
            proc.send_signal(signal.SIGTERM)  # while the payload is being laid out
        else:
            if mode == "detached":
                kept = json.loads(proc.stdout.readline())
            _wait_for(lambda: len(list(pids.iterdir())) == (2 if mode == "detached" else 1), what="the job")
            time.sleep(0.3)
            if mode == "twice":
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.2)  # the first one's cleanup waits for the stubborn job
                proc.send_signal(signal.SIGTERM)
            elif mode == "int-then-term":
                proc.send_signal(signal.SIGINT)
                time.sleep(0.2)  # delete() is waiting for the stubborn job
                proc.send_signal(signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    jobs = {int(p.name): int(p.read_text()) for p in pids.iterdir()}
    survivor = None
    try:
        assert proc.returncode == -signal.SIGTERM or (mode == "int-then-term" and proc.returncode in (-2, 130)), \
            proc.stderr.read()
        if kept is not None:  # the detached job runs on, with its directories
            survivor = int(kept["pid"])
            assert not _gone(survivor) and Path(kept["workdir"]).is_dir() and Path(kept["job_dir"]).is_dir()
        for pid, pgid in jobs.items():
            if pgid != survivor:
                _wait_for(lambda: _gone(pid), 15, f"job process {pid}")
    finally:
        for pgid in jobs.values():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith("fairing-"))
    records = cache / "fairing" / "jobs"
    recorded = sorted(p.name for p in records.iterdir()) if records.is_dir() else []
    if kept is not None:
        assert left == [Path(kept["workdir"]).name] and recorded == [Path(kept["job_dir"]).name]
    else:
        assert not left and not recorded, (left, recorded)


# -- the result key on attach ---------------------------------------------------------------


def test_attaching_with_a_truncated_or_padded_key_file(workdir, private):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def quick():
        return 42

    handle = quick.submit()
    try:
        handle.wait(120)
        key_file = handle.job_dir / "key"
        key = key_file.read_text()
        key_file.write_text(f"  {key}\n\n")  # an editor's newline, stray spaces: still the key
        assert fairing.attach(handle.name).result() == 42
        for spoilt in (key[:16], key[:2], key + "00"):  # cut short, or grown: not this job's key
            key_file.write_text(spoilt)
            # was: a JobFailedError saying the job "exited with code 0 before reporting a result"
            with pytest.raises(fairing.ResultError, match="key .* is missing or unreadable"):
                fairing.attach(handle.name).result()
    finally:
        handle.delete()


_BIG_OUTPUT = textwrap.dedent('''
    import fairing

    @fairing.train(backend="local", quiet=True, timeout=600)
    def big():
        import os
        with open(os.path.join(os.environ["FAIRING_OUTPUTS"], "model.bin"), "wb") as fh:
            for _ in range(400):
                fh.write(os.urandom(1 << 20))
        print("written", flush=True)
        return 1

    big()
''')


def test_sigterm_during_the_download_of_an_output_leaves_no_partial_file(workdir, tmp_path):
    # without a temporary file a half-copied model.bin would look complete; with one, it stayed
    tmp, cache = tmp_path / "t", tmp_path / "cache"
    tmp.mkdir()
    (workdir / "big.py").write_text(_BIG_OUTPUT)
    proc = subprocess.Popen([sys.executable, "big.py"], env={**os.environ, "TMPDIR": str(tmp),
                                                              "XDG_CACHE_HOME": str(cache)})
    try:
        _wait_for(lambda: any(p.name.startswith(".fairing-download-") for p in workdir.iterdir())
                  or proc.poll() is not None, 300, "the download to start")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM  # it was caught downloading
    assert sorted(p.name for p in workdir.iterdir()) == ["big.py", "cache", "t"]  # no model.bin, whole or not
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("fairing-")]
    jobs = cache / "fairing" / "jobs"
    assert not jobs.is_dir() or not list(jobs.iterdir())
