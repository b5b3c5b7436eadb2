"""fairing.jobs() and fairing.attach(): jobs found again from another process and from a
restarted Jupyter kernel, with the labels that say who and what started them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

import fairing
from fairing import JobNotFoundError, TrainJob
from tests.kernel_session import Kernel


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    """fairing's cache (job records, kept logs) for this test only; no job is left behind."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    yield path
    left = os.listdir(path / "fairing" / "jobs") if (path / "fairing" / "jobs").is_dir() else []
    for name in left:
        fairing.jobs.delete(name)
    assert not left, f"jobs left behind: {left}"


def test_jobs_lists_what_was_started_with_its_origin(workdir, cache):
    (workdir / "train.py").write_text("print('fit')\n")
    handle = TrainJob("train.py").submit()
    try:
        handle.wait(60)
        (info,) = fairing.jobs()
        assert info.name == handle.name and info.backend == "local" and info.phase == "Succeeded"
        assert info.origin.payload == "script" and info.origin.source == "train.py"
        assert info.origin.version == fairing.__version__ and info.origin.user
        assert info.age < 60 and info.exit_code == 0
    finally:
        handle.delete()
    assert fairing.jobs() == []  # deleting removes the record


def test_attach_from_another_process_reads_the_result(workdir, cache):
    def slow_sum(n):
        import time

        for i in range(n):
            print("step", i, flush=True)
            time.sleep(0.2)
        return sum(range(n))

    handle = TrainJob(slow_sum, args=(5,)).submit()
    handle.detach()
    reader = textwrap.dedent(f"""
        import fairing
        h = fairing.attach({handle.name!r})
        print("lines", list(h.logs()))
        print("result", h.result())
    """)
    out = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert "lines ['step 0', 'step 1', 'step 2', 'step 3', 'step 4']" in out.stdout
    assert "result 10" in out.stdout
    handle.delete()
    with pytest.raises(JobNotFoundError, match=f"No job named '{handle.name}'"):
        fairing.attach(handle.name, namespace=None)


def test_attached_handle_reraises_the_jobs_exception(workdir, cache):
    def fails():
        raise KeyError("no such column: price")

    first = TrainJob(fails).submit()
    first.wait(60)
    again = fairing.attach(first.name)
    with pytest.raises(KeyError, match="price"):
        again.result()
    fairing.jobs.delete(first.name)
    assert fairing.jobs() == []


def test_keep_logs_saves_a_failed_jobs_log_before_cleanup(workdir, cache):
    (workdir / "bad.py").write_text("print('loading rows')\nraise SystemExit(2)\n")
    with pytest.raises(fairing.JobFailedError):
        TrainJob("bad.py", name="bad-kept").run(timeout=60, keep_logs=True)
    assert fairing.jobs() == []
    kept = fairing.jobs.saved_log("bad-kept").read_text()
    assert kept.startswith("loading rows\n") and kept.endswith("SystemExit: 2\n")


def test_a_job_started_in_a_notebook_kernel_is_attached_after_a_restart(workdir, cache):
    with Kernel(workdir, env={"XDG_CACHE_HOME": str(cache)}) as kernel:
        out = kernel.run(textwrap.dedent("""
            import fairing

            def train(rounds):
                import time
                for r in range(rounds):
                    print("round", r, flush=True)
                    time.sleep(0.3)
                return {"rounds": rounds, "loss": 0.125}

            handle = fairing.TrainJob(train, args=(8,)).submit()
            handle.detach()          # a local job outlives its kernel only when asked to
            print("JOB", handle.name)
        """))
        name = re.search(r"JOB (\S+)", out).group(1)
        kernel.restart()
        assert "True" in kernel.run("'handle' not in dir()")  # a fresh kernel: nothing kept
        out = kernel.run(textwrap.dedent(f"""
            import fairing
            print([(j.name, j.origin.payload) for j in fairing.jobs()])
            handle = fairing.attach({name!r})
            print("RESULT", handle.result())
            print("LOG", list(handle.logs(follow=False))[-1])
            handle.delete()
            print("LEFT", fairing.jobs())
        """))
    assert f"[('{name}', 'function')]" in out
    assert "RESULT {'rounds': 8, 'loss': 0.125}" in out
    assert "LOG round 7" in out and "LEFT []" in out
    assert "round 0\n" in out  # the attached job's log, rendered in the cell


def test_jobs_rejects_an_unknown_backend(cache):
    with pytest.raises(fairing.ConfigurationError, match="jobs\\(\\) lists the 'local' backend and the cluster"):
        fairing.jobs(backend="docker")


def test_a_recorded_cluster_job_without_a_cluster_is_listed_as_unknown(workdir, cache, monkeypatch):
    from fairing.jobs import JobOrigin, jobs_dir

    monkeypatch.setenv("KUBECONFIG", str(workdir / "no-such-kubeconfig"))
    record = {"name": "far-away", "backend": "kubernetes", "created": 1.0, "image": "r.example/x@sha256:" + "0" * 64,
              "origin": {"version": "0.1.0", "user": "jane", "payload": "script", "source": "train.py"},
              "kubernetes": {"namespace": "team", "kind": "Job", "plural": None, "server": "https://x"},
              "endpoint": False}
    (jobs_dir() / "far-away").mkdir(parents=True)
    (jobs_dir() / "far-away" / "record.json").write_text(__import__("json").dumps(record))
    (info,) = fairing.jobs()  # local listing still works; the cluster's job is shown from its record
    assert (info.name, info.phase, info.namespace, info.origin) == (
        "far-away", "Unknown", "team", JobOrigin("0.1.0", "jane", "script", "train.py"))
    with pytest.raises(fairing.ConfigurationError, match="No kubeconfig"):
        fairing.jobs(namespace="team")  # asked for the cluster: its absence is an error
    fairing.jobs.forget("far-away")
