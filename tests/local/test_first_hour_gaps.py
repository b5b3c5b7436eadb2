"""What a user meets in the first hour, on the local backend, in a real terminal: a script's
model file comes back (``fairing run --outputs``), a map's calls bring their files back and
their lines are told apart, ``fairing serve`` says its model's name and routes once (and
answers the class's own name), a notebook without kernelspec runs whole."""

from __future__ import annotations

import io
import json
import os
import re
import textwrap
import urllib.error
import urllib.request

import pexpect
import pytest

import fairing
from tests.cli_terminal import Terminal, plain


@pytest.fixture
def term(workdir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tmp")
    t = Terminal(workdir, tmp_path_factory.mktemp("cache"), env={"TMPDIR": str(tmp)})
    yield t
    jobs_dir = t.env["XDG_CACHE_HOME"] + "/fairing/jobs"
    left = sorted(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else []
    for name in left:
        t.run("delete", name)
    assert not left, f"jobs left behind: {left}"
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("fairing-local-")]


TRAIN = textwrap.dedent("""
    import json, os
    os.makedirs("model", exist_ok=True)
    with open("model/weights.bin", "wb") as fh:
        fh.write(bytes(range(256)) * 4)
    with open("metrics.json", "w") as fh:
        json.dump({"accuracy": 0.93}, fh)
    with open("scratch.tmp", "w") as fh:
        fh.write("not asked for")
    print("trained", flush=True)
""")


def test_run_outputs_bring_the_scripts_files_back(term, workdir):
    (workdir / "train.py").write_text(TRAIN)
    code, out = term.run("run", "train.py", "--outputs", "model", "-O", "metrics.json")
    assert code == 0, out
    assert "trained" in out and "came back: metrics.json, model/weights.bin" in out
    assert (workdir / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 4
    assert json.loads((workdir / "metrics.json").read_text()) == {"accuracy": 0.93}
    assert not (workdir / "scratch.tmp").exists()  # only what was asked for
    code, doc = term.json("run", "train.py", "--outputs", "metrics.json")
    assert code == 0 and doc["outputs"] == ["metrics.json"]


@pytest.mark.parametrize("args, message", [
    (["--outputs", "/etc/passwd"], "outputs are paths relative to the job's working directory"),
    (["--outputs", "../../etc/passwd"], "outputs are paths relative to the job's working directory"),
    (["--outputs", "model", "--detach"], "--outputs come back when fairing waits for the job"),
])
def test_run_outputs_refused(term, workdir, args, message):
    (workdir / "train.py").write_text(TRAIN)
    code, out = term.run("run", "train.py", *args)
    assert code == 2, out
    assert message in out.replace("\n", "")
    assert "trained" not in out


def test_run_outputs_not_written_fails_naming_it(term, workdir):
    (workdir / "train.py").write_text(TRAIN)
    code, out = term.run("run", "train.py", "--outputs", "model.joblib")
    assert code == 1, out
    assert "the output 'model.joblib' was not written by the job" in out.replace("\n", "")
    assert not (workdir / "model").exists()  # nothing came back from a failed job


def test_map_honours_outputs_and_prefixes_each_calls_lines(workdir, capsys, no_leftovers):
    @fairing.train(backend="local", timeout=300, outputs=["result.txt"])
    def fit(x):
        import time

        for step in range(3):
            print(f"fitting {x} step {step}", flush=True)
            time.sleep(0.05)
        with open("result.txt", "w") as fh:
            fh.write(f"model for {x}")
        return x * 10

    assert fit.map([1, 2, 3], parallelism=3) == [10, 20, 30]
    for i, x in enumerate([1, 2, 3]):
        assert (workdir / str(i) / "result.txt").read_text() == f"model for {x}"
    printed = capsys.readouterr().out.splitlines()
    for i, x in enumerate([1, 2, 3]):
        assert [line for line in printed if line.startswith(f"[index-{i}] ")] == [
            f"[index-{i}] fitting {x} step {step}" for step in range(3)]
    assert not [line for line in printed if line.startswith("fitting")]  # every line carries its index


def test_map_outputs_of_the_calls_that_succeeded_come_back_on_a_map_error(workdir, no_leftovers):
    @fairing.train(backend="local", timeout=300, quiet=True, outputs=["r.txt"])
    def fit(x):
        if x == 2:
            raise ValueError("bad x")
        with open("r.txt", "w") as fh:
            fh.write(str(x))
        return x

    with pytest.raises(fairing.MapError) as info:
        fit.map([1, 2, 3])
    assert info.value.failed_indexes == [1]
    assert (workdir / "0" / "r.txt").read_text() == "1" and (workdir / "2" / "r.txt").read_text() == "3"
    assert not (workdir / "1").exists()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_serve_prints_the_model_name_and_routes_once_and_answers_the_class_name(term, workdir):
    (workdir / "churn.py").write_text(textwrap.dedent("""
        class ChurnModel:
            def predict(self, X):
                return [len(str(x)) for x in X]
    """))
    child = term.spawn("serve", "churn:ChurnModel")
    seen = io.StringIO()
    child.logfile_read = seen  # everything it printed, not only what followed the last match
    child.expect(r"serving at (http://127\.0\.0\.1:\d+); Ctrl-C stops it", timeout=120)
    url = child.match.group(1)
    assert _get(f"{url}/v1/models/ChurnModel") == (200, {"name": "churnmodel", "ready": True})
    assert _get(f"{url}/v1/models/churnmodel") == (200, {"name": "churnmodel", "ready": True})
    assert _get(f"{url}/v2/models/ChurnModel/ready")[0] == 200
    status, body = _get(f"{url}/v1/models/Churnmodel")  # neither name: a 404 naming the real one
    assert status == 404 and "'churnmodel'" in body["error"]
    child.expect(pexpect.TIMEOUT, timeout=2)  # let it print whatever it would
    child.sendintr()
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    out = plain(seen.getvalue())
    assert child.exitstatus == 0, out
    assert out.count("model churnmodel (also answers as ChurnModel); routes:") == 1, out
    for route in (f"GET  {url}/v1/models/churnmodel", f"POST {url}/v1/models/churnmodel:predict",
                  f"GET  {url}/v2/models/churnmodel", f"POST {url}/v2/models/churnmodel/infer"):
        assert out.count(route) == 1, out
    assert '{"fairing": "serving"' not in out  # the runtime's start handshake is not shown
    assert out.count("serving at ") == 1
    assert "the endpoint was removed" in out


def test_serve_json_lists_the_routes(term, workdir):
    (workdir / "m.py").write_text("class Echo:\n    def predict(self, X):\n        return X\n")
    proc = term.piped("serve", "m:Echo", "--detach", "--output", "json")
    doc = json.loads(proc.stdout)
    try:
        assert proc.returncode == 0, proc.stderr
        assert doc["model"] == "echo" and doc["model_names"] == ["echo", "Echo"]
        assert f"POST {doc['url']}/v1/models/echo:predict" in doc["routes"]
        assert _get(f"{doc['url']}/v1/models/Echo")[0] == 200
    finally:
        term.run("delete", doc["endpoint"])


def test_full_notebook_without_kernelspec_runs(term, workdir):
    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1", "outputs": [],
         "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": "print('x is', x)", "outputs": [], "execution_count": None}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 4}  # no kernelspec, no language_info
    (workdir / "bare.ipynb").write_text(json.dumps(notebook))
    code, out = term.run("run", "bare.ipynb", "--full-notebook", "--param", "x=5", timeout=300)
    assert code == 0, out
    executed = re.search(r"the executed notebook is (\S+\.ipynb)", out).group(1)
    cells = json.loads((workdir / executed).read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "x is 5" in printed
