"""The command line in a real pseudo-terminal, on the local backend: options anywhere, every
error path's exit code and message, and jobs found and controlled from other processes."""

from __future__ import annotations

import json
import os
import re
import textwrap
import time

import pexpect
import pytest

from tests.cli_terminal import Terminal, plain


@pytest.fixture
def term(workdir, tmp_path_factory):
    (workdir / "job.py").write_text(textwrap.dedent("""
        import os, sys
        print("got", sys.argv[1:], "A =", os.environ.get("A"), flush=True)
    """))
    (workdir / "slow.py").write_text(textwrap.dedent("""
        import time
        for i in range(int(__import__("sys").argv[1]) if len(__import__("sys").argv) > 1 else 20):
            print("tick", i, flush=True)
            time.sleep(0.25)
    """))
    (workdir / "bad.py").write_text("print('reading the data', flush=True)\nraise ValueError('bad input')\n")
    (workdir / "mylib.py").write_text("def square(x):\n    print('squaring', x)\n    return int(x) ** 2\n")
    tmp = tmp_path_factory.mktemp("tmp")  # the jobs' working directories, to check none is left
    t = Terminal(workdir, tmp_path_factory.mktemp("cache"), env={"TMPDIR": str(tmp)})
    yield t
    left = _records(t)
    for name in left:  # whatever a failing test left running is stopped
        t.run("delete", name)
    assert not left, f"jobs left behind: {left}"
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("fairing-local-")]


def _records(term) -> list:
    jobs_dir = term.env["XDG_CACHE_HOME"] + "/fairing/jobs"
    return sorted(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else []


@pytest.mark.parametrize("argv", [
    ["run", "--backend", "local", "--env", "A=1", "job.py", "--", "--epochs", "3"],
    ["run", "job.py", "--env", "A=1", "--backend", "local", "--", "--epochs", "3"],
    ["run", "-e", "A=1", "job.py", "--timeout", "60", "--", "--epochs", "3"],
])
def test_options_before_and_after_the_script(term, argv):
    code, out = term.run(*argv)
    assert code == 0, out
    assert "got ['--epochs', '3'] A = 1" in out
    # a terminal gets rich's rendering: check marks on finished stages
    assert "✓ build finished" in out and "succeeded" in out


def test_module_function_returns_its_value(term):
    code, out = term.run("run", "mylib:square", "--", "7")
    assert code == 0, out
    assert "squaring 7" in out and "\n49\n" in out


ERRORS = [
    (["run", "job.py", "--backend", "kubernetes2"], 2,
     "Invalid value for '--backend' / '-b': 'kubernetes2' is not one of 'local', 'docker', 'kubernetes', 'kubeflow', "
     "'gke', 'aws'"),
    (["run", "job.py", "--epochs", "3"], 2, "No such option '--epochs'"),
    (["run", "job.py", "--epochs", "3"], 2, "The script's own options go after --"),
    (["run", "nope.py"], 2, "The entry point 'nope.py' does not exist"),
    (["run", "job.py", "--cpu", "2.5.0"], 2, "--cpu='2.5.0' is not a CPU quantity: give cores such as 2, 0.5 or '500m'"),
    (["run", "job.py", "--backend", "kubernetes", "--memory", "4GB"], 2,
     "--memory='4GB' is not a memory quantity in Kubernetes' units. Did you mean 4G or 4Gi?"),
    (["run", "job.py", "--namespace", "x"], 2, "--namespace does not apply to the local backend"),
    (["run", "job.py", "--backend", "kubernetes", "--replicas", "Worker=2"], 2,
     "--replicas needs --deployer tfjob or --deployer pytorchjob"),
    (["run", "job.py", "--backend", "kubernetes", "--deployer", "tfjob", "--replicas", "Worker=two"], 2,
     "the count of Worker must be a positive integer, got 'two'"),
    (["run", "job.py", "--deployer", "cronjob"], 2, "'cronjob' is not one of 'job', 'tfjob', 'pytorchjob'"),
    (["run", "job.py", "--env", "NOVALUE"], 2, "expected KEY=VALUE, got 'NOVALUE'"),
    (["run", "job.py", "--backend", "kubernetes", "--secret-env", "TOKEN=wandb"], 2,
     "expected ENV=SECRET/KEY, got TOKEN='wandb'"),
    (["run", "job.py", "--timeout", "-1"], 2, "Invalid value for '--timeout'"),
    (["run", "job.py", "--param", "a=1"], 2, "--param needs --full-notebook"),
    (["run", "job.py", "--detach", "--backend", "docker"], 2, "--detach works with the local and cluster backends"),
    (["run", "job.py", "--detach", "--timeout", "5"], 2, "--timeout applies while fairing waits for the job"),
    (["run", "job.py", "--full-notebook"], 2, "--full-notebook runs an .ipynb notebook whole; 'job.py' is not"),
    (["run", "nb.ipynb", "--", "x"], 2, "A notebook takes no command-line arguments"),
    (["run", "job.py", "--detach", "--keep-logs"], 2, "with --detach, give it to fairing delete JOB --keep-logs"),
    (["run", "train"], 2, "'train' is not something fairing can run: give a .py script, an .ipynb notebook or "
                          "module:function"),
    (["run", "nosuchmodule:main"], 2, "Could not import 'nosuchmodule'"),
    (["run", "mylib:cube"], 2, "The module 'mylib' has no 'cube'"),
    (["run", "job.py", "--backend", "kubernetes", "--registry", "localhost:5000/x", "--base-image", "python:3.11"], 2,
     "No kubeconfig at '/nonexistent/kubeconfig'"),
    (["build", "job.py"], 2, "the local backend builds no image"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    (["logs", "no-such-job"], 1, "No job named 'no-such-job' on this machine"),
    (["attach", "no-such-job"], 1, "No job named 'no-such-job' on this machine"),
    (["status", "no-such-job"], 1, "No job named 'no-such-job' on this machine"),
    (["delete", "no-such-job"], 1, "No job named 'no-such-job' on this machine"),
    (["delete"], 2, "Give a job's name or --all-finished (not both)"),
    (["list", "--backend", "docker"], 2, "'docker' is not one of 'local', 'kubernetes'"),
    (["run", "bad.py"], 1, "ValueError: bad input"),
    (["run", "slow.py", "--timeout", "1"], 1, "did not finish within 1 s and was stopped"),
]


def _click_8_2(text: str) -> str:
    """click before 8.2 (the newest on Python 3.9) says "No such option: --x"; 8.2 "No such option '--x'"."""
    return re.sub(r"No such option: (--[\w-]+)", r"No such option '\1'", text)


@pytest.mark.parametrize("argv,code,message", ERRORS, ids=[" ".join(e[0]) + f" -> {e[1]}" for e in ERRORS])
def test_error_paths_give_exit_code_and_message(term, argv, code, message):
    got, out = term.run(*argv, env={"KUBECONFIG": "/nonexistent/kubeconfig"})
    assert got == code, out
    assert message in _click_8_2(" ".join(out.split())), out
    assert _records(term) == []  # nothing left recorded (or running)


def test_a_failing_job_shows_the_remote_traceback(term):
    code, out = term.run("run", "bad.py")
    assert code == 1
    assert "reading the data" in out  # its log, live
    assert 'raise ValueError' in out and "bad.py" in out  # the traceback from inside the job


def test_ctrl_c_stops_and_removes_the_job(term):
    child = term.spawn("run", "slow.py", "--", "400")
    child.expect("tick 2", timeout=60)
    pid_files = [term.env["XDG_CACHE_HOME"] + f"/fairing/jobs/{n}/record.json" for n in _records(term)]
    pid = json.load(open(pid_files[0]))["local"]["pid"]
    child.sendintr()
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 130
    assert "interrupted; the job was stopped and removed" in plain(child.before)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _records(term) == []


def test_detach_then_list_logs_attach_and_delete_from_other_processes(term):
    code, out = term.run("run", "--detach", "slow.py", "--name", "slow-one", "--", "12")
    assert code == 0, out
    assert "slow-one\n" in out and "fairing logs --follow slow-one" in out
    code, rows = term.json("list")
    assert code == 0
    row = next(r for r in rows if r["name"] == "slow-one")
    assert row["phase"] == "Running" and row["backend"] == "local"
    assert row["origin"]["payload"] == "script" and row["origin"]["source"].endswith("slow.py")
    assert row["origin"]["user"] and row["origin"]["version"]

    code, out = term.run("list")
    assert code == 0 and "slow-one" in out and "Running" in out and "slow.py" in out

    code, out = term.run("logs", "--follow", "slow-one")  # follows to the end of the job
    assert code == 0, out
    assert [line for line in out.splitlines() if line.startswith("tick")] == [f"tick {i}" for i in range(12)]

    code, out = term.run("attach", "slow-one")  # already finished: its log, then its outcome
    assert code == 0 and "tick 11" in out and "job slow-one succeeded" in out
    code, state = term.json("status", "slow-one")
    assert code == 0 and state["status"] == "Succeeded" and state["exit_code"] == 0

    code, out = term.run("delete", "slow-one")
    assert code == 0 and "deleted slow-one" in out
    assert _records(term) == []
    code, out = term.run("logs", "slow-one")
    assert code == 1 and "No job named 'slow-one'" in out


def test_attach_follows_a_running_job_and_takes_its_exit_code(term):
    (term.cwd / "fails_later.py").write_text("import time\nprint('working', flush=True)\ntime.sleep(2)\n"
                                             "raise SystemExit(4)\n")
    code, out = term.run("run", "-d", "fails_later.py", "--name", "later")
    assert code == 0, out
    child = term.spawn("attach", "later")
    child.expect("working", timeout=60)
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 1
    assert "called sys.exit(4)" in plain(child.before)
    code, out = term.run("delete", "--all-finished")
    assert code == 0 and "deleted later" in out


def test_ctrl_c_in_attach_leaves_the_job_running_and_delete_stops_it(term):
    code, out = term.run("run", "--detach", "slow.py", "--name", "long", "--", "400")
    assert code == 0, out
    child = term.spawn("attach", "long")
    child.expect("tick 1", timeout=60)
    child.sendintr()
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 130
    assert "stopped following long; it keeps running" in " ".join(plain(child.before).split())
    code, state = term.json("status", "long")
    assert state["status"] == "Running"
    record = json.load(open(term.env["XDG_CACHE_HOME"] + "/fairing/jobs/long/record.json"))
    code, out = term.run("delete", "long")
    assert code == 0
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(record["local"]["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the deleted job still runs")
    assert not os.path.exists(record["local"]["workdir"])


def test_keep_logs_lets_a_failed_jobs_log_be_read_after_cleanup(term):
    code, out = term.run("run", "bad.py", "--name", "kept", "--keep-logs")
    assert code == 1 and "the log is kept: fairing logs kept" in out
    assert _records(term) == []  # the job is gone...
    code, out = term.run("logs", "kept")  # ...its log is not
    assert code == 0 and "reading the data" in out and "ValueError: bad input" in out


def test_json_output_for_scripts(term):
    code, doc = term.json("run", "mylib:square", "--", "5")
    assert code == 0 and doc["result"] == 25 and doc["status"] == "Succeeded"
    code, doc = term.json("run", "bad.py")
    assert code == 1 and doc["status"] == "Failed" and doc["error"] == "ValueError"
    code, doc = term.json("run", "-d", "slow.py", "--name", "js", "--", "2")
    assert code == 0 and doc == {"job": "js", "status": "Running"}
    code, doc = term.json("logs", "js", "--follow")
    assert doc["lines"] == ["tick 0", "tick 1"]
    code, doc = term.json("delete", "js")
    assert code == 0 and doc == {"deleted": ["js"]}


def test_piped_output_is_plain_lines(term):
    proc = term.piped("run", "job.py", "--", "x")
    assert proc.returncode == 0
    assert "got ['x'] A = None\n" == proc.stdout
    assert "fairing: build finished" in proc.stderr and "\x1b[" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "build", "logs", "list", "status", "attach", "delete", "serve",
                                     "endpoints", "config", "doctor"])
def test_every_command_help_shows_an_example(term, command):
    code, out = term.run(command, "--help")
    assert code == 0
    example = out.split("Example:", 1)[1]
    assert f"fairing {command if command != 'list' else 'list'}" in example


def _predict(url: str, instances: list) -> list:
    import urllib.request

    request = urllib.request.Request(f"{url}/v1/models/doubler:predict", method="POST",
                                     data=json.dumps({"instances": instances}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["predictions"]


@pytest.fixture
def model(term):
    (term.cwd / "model.py").write_text(textwrap.dedent("""
        class Doubler:
            def predict(self, X):
                print("predicting", len(X), flush=True)
                return [2 * x for x in X]
    """))
    return "model:Doubler"


def test_serve_until_ctrl_c_then_the_endpoint_is_removed(term, model):
    child = term.spawn("serve", model, "--name", "dbl")
    child.expect(r"serving at (http://127\.0\.0\.1:\d+)", timeout=120)
    url = child.match.group(1)
    assert "✓ deploy finished" in plain(child.before)  # rich's stages in a terminal
    assert _predict(url, [1, 2, 3]) == [2, 4, 6]
    child.expect("predicting 3", timeout=30)  # its log, live
    code, rows = term.json("endpoints")
    assert [(r["name"], r["url"], r["phase"]) for r in rows] == [("dbl", url, "Running")]
    child.sendintr()
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 0 and "stopped; the endpoint was removed" in plain(child.before)
    with pytest.raises(OSError):
        _predict(url, [1])
    assert term.json("endpoints")[1] == []


def test_serve_detached_is_listed_and_deleted_from_another_process(term, model):
    code, doc = term.json("serve", model, "--detach", "--name", "bg")
    assert code == 0 and doc["endpoint"] == "bg" and doc["status"] == "Running"
    assert _predict(doc["url"], [5]) == [10]
    code, out = term.run("endpoints")
    assert code == 0 and "bg" in out and doc["url"] in out
    code, out = term.run("list")
    assert "Endpoint" in out and "model:Doubler" in out
    code, out = term.run("delete", "bg")
    assert code == 0 and "deleted bg" in out
    with pytest.raises(OSError):
        _predict(doc["url"], [1])


def test_serve_errors(term, model):
    code, out = term.run("serve", "model")
    assert code == 2 and "'model:' is not something fairing can run" in " ".join(out.split())
    code, out = term.run("serve", "mylib:square")
    assert code == 2 and "'mylib:square' is not a class; serve takes MODULE:CLASS" in out
    code, out = term.run("serve", "mylib:square", "--replicas", "0")
    assert code == 2 and "Invalid value for '--replicas'" in out


def test_a_notebook_runs_converted_or_whole_with_parameters(term):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print('alpha is', alpha * 10)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(term.cwd / "nb.ipynb"))
    code, out = term.run("run", "nb.ipynb", "--name", "nb-plain")
    assert code == 0 and "alpha is 10" in out, out
    code, out = term.run("run", "nb.ipynb", "--full-notebook", "--param", "alpha=7", "--name", "nb-whole",
                         timeout=300)
    assert code == 0, out
    assert "the executed notebook is nb.nb-whole.ipynb" in " ".join(out.split())
    executed = nbformat.read(str(term.cwd / "nb.nb-whole.ipynb"), as_version=4)
    assert "alpha is 70\n" in ["".join(o.get("text", "")) for c in executed.cells for o in c.get("outputs", [])]


def test_a_second_job_with_a_running_jobs_name_is_refused(term):
    code, out = term.run("run", "-d", "slow.py", "--name", "dup", "--", "400")
    assert code == 0, out
    code, out = term.run("run", "job.py", "--name", "dup")
    assert code == 2 and "A local job named 'dup' exists already" in out and "fairing delete dup" in out
    code, state = term.json("status", "dup")
    assert state["status"] == "Running"  # the first one is untouched
    assert term.run("delete", "dup")[0] == 0
