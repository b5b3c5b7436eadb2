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
    return "".join("".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))


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
