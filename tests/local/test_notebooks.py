"""Notebooks run for real in a Jupyter kernel (papermill): the examples, and notebook detection."""

import os
import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("no_leftovers")


def _outputs(nb) -> str:
    """What the cells show: printed text, and the text of displays (fairing's job log is one)."""
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))


def test_example_notebook_trains_on_the_local_backend(tmp_path):
    out = tmp_path / "out.ipynb"
    nb = papermill.execute_notebook(str(ROOT / "notebooks/train_local.ipynb"), str(out), cwd=str(tmp_path),
                                    kernel_name="python3", progress_bar=False)
    text = _outputs(nb)
    assert "trained with C=0.5: accuracy" in text  # the job's log, rendered in the cell
    score = float(re.search(r"score from the job: ([\d.]+)", text).group(1))
    assert 0.8 < score <= 1.0


def _detect(tmp_path, env, prelude=""):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        prelude + "from fairing.notebook.locate import current_notebook\nprint('FOUND', current_notebook())")]
    path = tmp_path / "detect.ipynb"
    nbformat.write(nb, str(path))
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return papermill.execute_notebook(str(path), str(tmp_path / "o.ipynb"), kernel_name="python3",
                                          progress_bar=False), path
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_current_notebook_from_jupyter_server_session_variable(tmp_path):
    nb, path = _detect(tmp_path, {"JPY_SESSION_NAME": str(tmp_path / "detect.ipynb")})
    assert f"FOUND {path}" in _outputs(nb)


def test_current_notebook_from_vscode_variable(tmp_path):
    nb, path = _detect(tmp_path, {}, prelude=f"__vsc_ipynb_file__ = {str(tmp_path / 'detect.ipynb')!r}\n")
    assert f"FOUND {path}" in _outputs(nb)


def test_undetectable_notebook_asks_for_the_path(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        _detect(tmp_path, {"JPY_SESSION_NAME": ""})
    assert err.value.ename == "NotebookNotFoundError" and "notebook_file=" in err.value.evalue


def test_current_notebook_through_a_real_jupyter_servers_sessions_api(tmp_path):
    """A real jupyter_server starts a kernel for a notebook session; inside that kernel, with
    JPY_SESSION_NAME removed, the path is found through the server's sessions API."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from jupyter_client import BlockingKernelClient

    root, runtime = tmp_path / "root", tmp_path / "runtime"
    root.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), str(root / "exp.ipynb"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # its own IPython dir: kernels of other xdist workers share no history database with this one
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "IPYTHONDIR": str(tmp_path / "ipython")}
    server_log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         "--IdentityProvider.token=tok", f"--ServerApp.root_dir={root}"],
        env=env, stdout=subprocess.DEVNULL, stderr=server_log.open("wb"))
    base = f"http://127.0.0.1:{port}/api"
    headers = {"Authorization": "token tok", "Content-Type": "application/json"}
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/status", headers=headers), timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "jupyter_server did not start"
                time.sleep(0.2)
        body = json.dumps({"path": "exp.ipynb", "type": "notebook", "kernel": {"name": "python3"}}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/sessions", data=body, headers=headers,
                                                           method="POST"), timeout=30) as response:
            kernel_id = json.load(response)["kernel"]["id"]
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        # no heartbeat channel: on a loaded machine its 1 s beat is missed and the client calls a
        # live kernel dead ("Kernel died before replying to kernel_info"); wait for the reply itself
        client.start_channels(hb=False)
        try:
            import queue

            deadline = time.time() + 240
            while True:
                msg_id = client.kernel_info()
                try:
                    reply = client.get_shell_msg(timeout=5)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
                except queue.Empty:
                    pass
                assert time.time() < deadline, f"no kernel_info reply; the server's log:\n{server_log.read_text()[-4000:]}"
            printed = []
            client.execute_interactive(
                "import os; os.environ.pop('JPY_SESSION_NAME', None)\n"
                "from fairing.notebook.locate import current_notebook\nprint(current_notebook())",
                timeout=120, output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
        finally:
            client.stop_channels()
        assert "".join(printed).strip() == str(root / "exp.ipynb")
    finally:
        server.terminate()
        server.wait(30)
