"""``config.run()`` in a notebook executed by a notebook runner, not a Jupyter server: the
notebook is found under ``jupyter nbconvert --execute``, ``jupyter execute`` and papermill
(its command line names it; or ``--inject-paths``); under nbclient driven from Python,
where nothing says which notebook runs, the error names the one line to write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
MARK = "ran-in-the-job"


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("rate = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nfrom fairing import config\n"
                                  f"print('{MARK}' if os.environ.get('FAIRING_RUNTIME') else 'in the kernel', "
                                  "f'rate={rate}')"),
        nbformat.v4.new_code_cell("config.set_backend('local')\nconfig.set_options(timeout=120)\nconfig.run()"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(nb))
    return path


def _env(tmp: Path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "TMPDIR": str(tmp),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _text(nb: dict) -> str:
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            out.append("".join(o.get("text", "")) + json.dumps(o.get("data", {})) + "\n".join(o.get("traceback", [])))
    return "\n".join(out)


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed (pip install the notebook extra)"
    return found


@pytest.mark.parametrize("runner", ["nbconvert", "execute", "papermill", "papermill-inject"])
def test_config_run_finds_the_notebook_under_a_runner(tmp_path, runner):
    work = tmp_path / "project"
    work.mkdir()
    notebook = _notebook(work / "train.ipynb")
    executed = work / "executed.ipynb"
    command = {
        "nbconvert": [_tool("jupyter"), "nbconvert", "--execute", "--to", "notebook", "--output", "executed",
                      "train.ipynb"],
        "execute": [_tool("jupyter"), "execute", "--inplace", "train.ipynb"],
        "papermill": [_tool("papermill"), "train.ipynb", "executed.ipynb", "--no-progress-bar", "-p", "rate", "7"],
        "papermill-inject": [_tool("papermill"), "--inject-paths", str(notebook), "executed.ipynb",
                             "--no-progress-bar", "-p", "rate", "7"],
    }[runner]
    proc = subprocess.run(command, cwd=work if runner != "papermill-inject" else tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    if runner == "papermill-inject":
        executed = tmp_path / "executed.ipynb"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((notebook if runner == "execute" else executed).read_text())
    text = _text(result)
    # the job ran the notebook's code, with papermill's parameters
    assert f"{MARK} rate={7 if runner.startswith('papermill') else 1}" in text, text
    assert "NotebookNotFoundError" not in text


def test_nbclient_from_python_names_what_to_write(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    _notebook(work / "train.ipynb")
    script = (
        "import nbformat\nfrom nbclient import NotebookClient\n"
        "nb = nbformat.read('train.ipynb', as_version=4)\n"
        "NotebookClient(nb, timeout=180, allow_errors=True, resources={'metadata': {'path': '.'}}).execute()\n"
        "nbformat.write(nb, 'executed.ipynb')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=work, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = _text(json.loads((work / "executed.ipynb").read_text()))
    assert "NotebookNotFoundError" in text
    assert "config.set_preprocessor('notebook', notebook_file='train.ipynb')" in text
    assert "NotebookPreprocessor(notebook_file" not in text
    assert MARK not in text

    # what the message says to write works
    nb = nbformat.read(work / "train.ipynb", as_version=4)
    nb.cells[2].source = "config.set_preprocessor('notebook', notebook_file='train.ipynb')\n" + nb.cells[2].source
    nbformat.write(nb, work / "train.ipynb")
    proc = subprocess.run([sys.executable, "-c", script], cwd=work, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = _text(json.loads((work / "executed.ipynb").read_text()))
    assert MARK in text and "NotebookNotFoundError" not in text


def test_papermill_python_api_with_the_input_path_parameter(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    notebook = _notebook(work / "train.ipynb")
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[0].source += "\nPAPERMILL_INPUT_PATH = None"
    nbformat.write(nb, notebook)
    script = ("import papermill\npapermill.execute_notebook('train.ipynb', 'executed.ipynb', progress_bar=False, "
              "parameters={'PAPERMILL_INPUT_PATH': 'train.ipynb'})\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=work, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{MARK} rate=1" in _text(json.loads((work / "executed.ipynb").read_text()))


def test_the_notebook_extra_installs_a_kernel_and_a_runner():
    """What the notebook extra lists is what these tests needed to run a notebook, and it is installed."""
    from importlib.metadata import version

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebook"]
    names = {spec.split(">")[0].split("=")[0].split("<")[0].strip().lower() for spec in extra}
    assert {"nbformat", "ipython", "ipykernel", "nbclient"} <= names, extra
    for name in names:
        assert version(name)  # installed here: the runner tests above used them


def _decoy(path: Path) -> Path:
    """A notebook that must never be the one submitted."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('DECOY-NOTEBOOK-RAN')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(nb))
    return path


def test_a_driver_naming_another_notebook_is_not_taken_for_the_runner(tmp_path):
    """``python drive.py decoy.ipynb`` runs train.ipynb with nbclient: the driver is not a notebook
    runner, so its argument is not the notebook (it was: decoy.ipynb was submitted instead)."""
    work = tmp_path / "project"
    work.mkdir()
    _notebook(work / "train.ipynb")
    _decoy(work / "decoy.ipynb")
    (work / "drive.py").write_text(
        "import nbformat\nfrom nbclient import NotebookClient\n"
        "nb = nbformat.read('train.ipynb', as_version=4)\n"
        "NotebookClient(nb, timeout=180, allow_errors=True, resources={'metadata': {'path': '.'}}).execute()\n"
        "nbformat.write(nb, 'executed.ipynb')\n")
    proc = subprocess.run([sys.executable, "drive.py", "decoy.ipynb"], cwd=work, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = _text(json.loads((work / "executed.ipynb").read_text()))
    assert "DECOY-NOTEBOOK-RAN" not in text
    assert "NotebookNotFoundError" in text and MARK not in text


def test_papermill_option_values_are_not_its_input_and_odd_paths_work(tmp_path):
    """``papermill -p template decoy.ipynb 'trâin 1.ipynb' out.ipynb``: the input is the first
    positional, not the first .ipynb (it was decoy.ipynb); spaces, non-ASCII and a symlink work."""
    work = tmp_path / "my prøject"
    (work / "real").mkdir(parents=True)
    _notebook(work / "real" / "train.ipynb")
    (work / "trâin 1.ipynb").symlink_to(Path("real") / "train.ipynb")
    _decoy(work / "decoy.ipynb")
    proc = subprocess.run([_tool("papermill"), "-p", "template", "decoy.ipynb", "trâin 1.ipynb", "executed.ipynb",
                           "--no-progress-bar", "-p", "rate", "7"], cwd=work, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = _text(json.loads((work / "executed.ipynb").read_text()))
    assert "DECOY-NOTEBOOK-RAN" not in text
    assert f"{MARK} rate=7" in text, text


def test_a_runner_started_from_a_notebook_does_not_take_the_parents_session_name(tmp_path):
    """``!papermill train.ipynb out.ipynb`` in a notebook: papermill's kernel inherits the calling
    kernel's JPY_SESSION_NAME; it ran the calling notebook (here decoy.ipynb) instead of train.ipynb."""
    work = tmp_path / "project"
    work.mkdir()
    _notebook(work / "train.ipynb")
    decoy = _decoy(work / "decoy.ipynb")
    proc = subprocess.run([_tool("papermill"), "train.ipynb", "executed.ipynb", "--no-progress-bar"], cwd=work,
                          env={**_env(tmp_path), "JPY_SESSION_NAME": str(decoy)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = _text(json.loads((work / "executed.ipynb").read_text()))
    assert "DECOY-NOTEBOOK-RAN" not in text
    assert f"{MARK} rate=1" in text, text
