"""The local backend end to end: real subprocesses, real files, real pip installs."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest

import fairing
from fairing import (JobFailedError, JobTimeoutError, RemoteError, RuntimeMismatchError, TrainJob)

pytestmark = pytest.mark.usefixtures("no_leftovers")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_function_returns_its_value_and_streams_logs(workdir, tmp_path):
    (tmp_path / "mylib_local.py").write_text("def double(x):\n    return 2 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import mylib_local

        lines = []

        @fairing.train(on_event=lambda e: lines.append(e))
        def compute(x, *, y):
            print("computing", x, y, flush=True)
            return {"value": mylib_local.double(x) + y, "pid": os.getpid()}

        out = compute(5, y=1)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mylib_local", None)
    assert out["value"] == 11 and out["pid"] != os.getpid()
    assert any(getattr(e, "line", "") == "computing 5 1" for e in lines)
    assert [e.name for e in lines if type(e).__name__ == "Stage" and e.status == "finished"][:3] == \
        ["package", "build", "deploy"]


def test_result_key_is_not_in_the_job_environment(workdir):
    @fairing.train()
    def environment():
        with open("/proc/self/environ", "rb") as fh:  # what the process started with, as `ps e` shows
            return fh.read().decode()

    started_with = environment()
    assert "FAIRING_RUNTIME=1" in started_with  # it is the job's environment
    assert "FAIRING_RESULT_KEY=" not in started_with and "FAIRING_RESULT_KEY_FILE=" in started_with


def test_class_with_train_and_handle_api(workdir):
    class Model:
        def __init__(self, scale):
            self.scale = scale

        def train(self):
            print("training")
            return self.scale * 3

    handle = TrainJob(Model, args=(2,)).submit()
    try:
        assert isinstance(handle, fairing.Handle)
        assert list(handle.logs(follow=True)) == ["training"]
        assert handle.wait(30).phase == "Succeeded"
        assert handle.result() == 6
    finally:
        handle.delete()
    assert not os.path.exists(handle.workdir)


def test_remote_exception_is_reraised_with_its_traceback(workdir, capsys):
    @fairing.train
    def fails():
        raise KeyError("no such column: price")

    with pytest.raises(KeyError, match="price") as err:
        fails()
    # the job's output showed its traceback (once: it is not chained again), naming this file
    shown = capsys.readouterr().out
    assert shown.count('KeyError: ') == 1 and "in fails" in shown and "<dynamic-code>" not in shown
    assert 'raise KeyError("no such column: price")' in shown and "fairing_runtime" not in shown
    assert err.value.__cause__ is None and err.value.fairing_job
    # quiet: nothing was shown, so the traceback is chained as the cause
    with pytest.raises(KeyError, match="price") as err:
        fairing.train(fails.func, quiet=True)()
    assert "in fails" in str(err.value.__cause__) and "KeyError: " in str(err.value.__cause__)
    assert "test_local_backend.py" in str(err.value.__cause__)


def test_unpicklable_remote_exception_becomes_remote_error(workdir):
    @fairing.train
    def fails():
        import threading

        class Odd(Exception):
            pass

        raise Odd(threading.Lock())

    with pytest.raises(RemoteError) as err:
        fails()
    assert "Odd" in err.value.remote_type and "Traceback" in err.value.remote_traceback


def test_script_with_input_files_and_requirements(workdir):
    (workdir / "data").mkdir()
    (workdir / "data/rows.csv").write_text("a,1\nb,2\n")
    (workdir / "requirements.txt").write_text("tabulate==0.9.0\n")
    (workdir / "train.py").write_text(textwrap.dedent("""
        import sys, tabulate
        rows = [l.split(",") for l in open("data/rows.csv").read().split()]
        print(tabulate.tabulate(rows, headers=["k", "v"], tablefmt="github"))
        print("args", sys.argv[1:])
    """))
    handle = TrainJob("train.py", input_files=["data"], args=["--lr", "0.1"]).submit()
    try:
        handle.result(timeout=300)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    assert "| k   |   v |" in logs and "args ['--lr', '0.1']" in logs


def test_converted_notebook_runs(workdir):
    from fairing.preprocessors.notebook import NotebookPreprocessor

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import fairing\nfairing.config.run()"),
        nbformat.v4.new_code_cell("%%bash\necho from bash"),
        nbformat.v4.new_code_cell("!echo from a shell escape\ntotal = sum(int(x) for x in open('nums.txt'))\n"
                                  "print('total', total)"),
    ]
    nbformat.write(nb, "analysis.ipynb")
    (workdir / "nums.txt").write_text("1\n2\n3\n")
    with pytest.raises(fairing.PackagingError, match=r"Cell 2, line 1 \('%%bash'\).*allow_shell=True"):
        TrainJob("analysis.ipynb", input_files=["nums.txt"]).submit()  # shell commands only when allowed
    handle = fairing.submit(NotebookPreprocessor("analysis.ipynb", input_files=["nums.txt"], allow_shell=True))
    try:
        assert handle.result(timeout=120) is None
        assert list(handle.logs(follow=False)) == ["from bash", "from a shell escape", "total 6"]
    finally:
        handle.delete()


def test_full_notebook_runs_with_papermill_and_returns_the_executed_notebook(workdir):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("alpha = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('alpha is', alpha * 10)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, "params.ipynb")
    executed = TrainJob("params.ipynb", full_notebook=True, parameters={"alpha": 7}).run(timeout=300)
    outputs = ["".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])]
    assert "alpha is 70\n" in outputs


def test_nonzero_exit_is_a_job_failed_error(workdir):
    (workdir / "exit3.py").write_text("print('bad data'); raise SystemExit(3)\n")
    with pytest.raises(JobFailedError) as err:
        TrainJob("exit3.py").run(timeout=60)
    assert err.value.exit_code == 3 and "sys.exit(3)" in str(err.value)
    (workdir / "hard.py").write_text("import os; print('dying'); os._exit(5)\n")
    with pytest.raises(JobFailedError) as err:
        TrainJob("hard.py").run(timeout=60)
    assert err.value.exit_code == 5 and "dying" in str(err.value)


def test_timeout_stops_the_whole_process_tree(workdir, tmp_path):
    pidfile = tmp_path / "child.pid"

    @fairing.train(timeout=3)
    def hangs(path):
        import subprocess, time

        child = subprocess.Popen(["sleep", "300"])
        open(path, "w").write(str(child.pid))
        time.sleep(300)

    with pytest.raises(JobTimeoutError, match="within 3 s"):
        hangs(str(pidfile))
    child = int(pidfile.read_text())
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _other_python():
    for minor in ("3.12", "3.10", "3.13"):
        pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}*/bin/python3")))
        found = pyenv[0] if pyenv else shutil.which(f"python{minor}")
        if found:
            return found
    raise AssertionError("the version-mismatch test needs a second Python (python3.10/3.12/3.13, e.g. from pyenv)")


def test_python_version_mismatch_is_reported(workdir):
    other = _other_python()

    @fairing.train(python=other, timeout=300)
    def f():
        return 1

    with pytest.raises(RuntimeMismatchError, match="pickled with Python %d.%d" % sys.version_info[:2]):
        f()


def test_ctrl_c_in_the_submitting_process_stops_and_removes_the_job(tmp_path):
    pidfile = tmp_path / "job.pid"
    submitter = tmp_path / "submit.py"
    submitter.write_text(textwrap.dedent(f"""
        import fairing, os, time
        @fairing.train
        def slow():
            with open({str(pidfile)!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})  # whole or absent, never half-written
            time.sleep(300)
        slow()
    """))
    proc = subprocess.Popen([sys.executable, str(submitter)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not pidfile.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert pidfile.exists(), f"the job did not start: {proc.poll()}"
        job_pid = int(pidfile.read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # the submitter's own cleanup is what is tested; this only stops a stuck run
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    assert "KeyboardInterrupt" in err
    deadline = time.time() + 10
    while _alive(job_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(job_pid)
