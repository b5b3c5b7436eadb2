"""Notebook conversion: IPython's transformer, every user statement kept, refusals before submit."""

import ast
import json

import nbformat
import pytest

from fairing import ConfigurationError, PackagingError
from fairing.notebook.history import unsaved_inputs
from fairing.preprocessors.notebook import SCRIPT_HEADER, NotebookPreprocessor, convert_notebook
from fairing.runtime import PAYLOAD_FILE, RUNTIME_DIR


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("#md") else nbformat.v4.new_code_cell(c)
                for c in cells]
    return nb


README_FLOW = (
    "import fairing\nfrom fairing import config\nconfig.set_backend('local')",
    "remote_train = config.fn(train)\nscore = remote_train(C=0.5)",
    "result = config.run()",
    "model = fit_model(config)\nconfig = {'alpha': 0.1}",
    's = """\n!not a shell escape\n%not a magic\n"""',
    "@fairing.train(timeout=5)\ndef f(x):\n    return x + 1",
)


def test_every_user_statement_survives_conversion():
    script = convert_notebook(_nb(*README_FLOW)).script
    ast.parse(script)
    for cell in README_FLOW:
        assert cell in script  # verbatim: nothing removed, nothing rewritten
    assert script.startswith(SCRIPT_HEADER)


def test_magics_become_ipython_calls_the_job_shell_answers():
    converted = convert_notebook(_nb(
        "%%time\nx = 1", "%time y = 2", "%matplotlib inline", "%%writefile helper.py\ndef f():\n    pass\n",
        "len?", "if True:\n    %time z = 3", "%pip install -q requests==2.31.0 'six>=1'", "#md # heading",
        "!echo hi", "files = !ls"), allow_shell=True)
    script = converted.script
    ast.parse(script)
    for call in ["run_cell_magic('time', '', 'x = 1", "run_line_magic('time', 'y = 2')",
                 "run_line_magic('matplotlib', 'inline')", "run_cell_magic('writefile', 'helper.py',",
                 "run_line_magic('pinfo', 'len')", "    get_ipython().run_line_magic('time', 'z = 3')",
                 "get_ipython().system('echo hi')", "files = get_ipython().getoutput('ls')"]:
        assert call in script, call
    assert converted.requirements == ("requests==2.31.0", "six>=1")
    assert "# %% cell 9" in script  # cells are numbered as the user counts them, markdown included


@pytest.mark.parametrize("cells, message", [
    (("x = 1", "print('a'\n"), r"Cell 2, line 1 \("),
    (("x = 1", "\n\ndef f(:\n    pass"), r"Cell 2, line 3 \('def f\(:'\) has a syntax error"),
    (("%%time\nx = 1\ny = (",), r"Cell 1, line 3 \('y = \('\) has a syntax error"),
    (("%load_ext sql",), r"Cell 1, line 1 .*extension 'sql' cannot be loaded"),
    (("x = 1\n%conda install numpy",), r"Cell 1, line 2 .*%conda cannot run in a fairing job\. Use %pip install"),
    (("%%perl\nprint 1",), r"Cell 1, line 1 .*%%perl cannot run in a fairing job"),
    (("%pip uninstall -y six",), r"%pip uninstall cannot run in the job"),
    (("%pip install -e .",), r"the pip option -e cannot become a requirement"),
    (("%pip install {pkg}",), r"uses a variable"),
    (("!pip install six",), r"Cell 1, line 1 .*Write it as %pip install"),
    (("!echo hi",), r"Cell 1, line 1 \('!echo hi'\) runs a shell command.*allow_shell=True"),
    (("x = 1", "out = !ls",), r"Cell 2, line 1 .*allow_shell=True"),
    (("%%bash\nls",), r"%%bash runs shell commands.*allow_shell=True"),
    (("get_ipython().kernel.do_shutdown(False)",), r"Cell 1, line 1 .*get_ipython\(\)\.kernel is not available in a fairing job"),
    (("name = 'time'\nget_ipython().run_line_magic(name, 'x')",), r"Cell 1, line 2 .*not plain strings"),
])
def test_what_cannot_run_in_the_job_is_refused_before_submit(cells, message):
    with pytest.raises(PackagingError, match=message):
        convert_notebook(_nb(*cells))


def test_pip_install_r_reads_the_requirements_file(tmp_path):
    (tmp_path / "reqs.txt").write_text("six==1.16.0\n# comment\n")
    assert convert_notebook(_nb("%pip install -r reqs.txt"), base_dir=tmp_path).requirements == ("six==1.16.0",)


def test_context_ships_fairing_and_the_shell_and_the_pip_requirements(tmp_path):
    path = tmp_path / "train.ipynb"
    nbformat.write(_nb("from fairing import config\nconfig.run()", "%pip install six==1.16.0"), str(path))
    ctx = NotebookPreprocessor(path, requirements=[]).context()
    assert f"{RUNTIME_DIR}/fairing/__init__.py" in ctx.files and f"{RUNTIME_DIR}/fairing/config.py" in ctx.files
    assert f"{RUNTIME_DIR}/fairing_runtime/shell.py" in ctx.files
    assert "six==1.16.0" in ctx.requirements
    assert json.loads(ctx.files[PAYLOAD_FILE])["path"] == "train.py"
    plain = tmp_path / "plain.ipynb"
    nbformat.write(_nb("print(1)"), str(plain))
    assert not any(p.startswith(f"{RUNTIME_DIR}/fairing/") for p in NotebookPreprocessor(plain).context().files)


def test_notebook_options_are_checked(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(_nb("print(1)"), str(path))
    with pytest.raises(ConfigurationError, match="'current', 'saved', 'executed'.*'kernel'"):
        NotebookPreprocessor(path, cells="kernel")
    with pytest.raises(ConfigurationError, match="allow_shell must be True or False"):
        NotebookPreprocessor(path, allow_shell="yes")
    with pytest.raises(ConfigurationError, match="not running in an IPython kernel"):
        NotebookPreprocessor(path, cells="executed").context()


def test_unsaved_inputs():
    saved = ["x = 1", "y = x + 1\n", "config.run()"]
    assert unsaved_inputs(["x = 1  ", "y = x + 1", "config.run()"], saved) == []
    # run but never saved
    assert unsaved_inputs(["x = 1", "z = 42", "config.run()"], saved) == ["z = 42"]
    # edited and re-run, then saved: the older version no longer counts
    assert unsaved_inputs(["y = x + 2", "y = x + 1", "config.run()"], saved) == []
    # edited and re-run, not saved: the newest version is missing
    assert unsaved_inputs(["y = x + 1", "y = x + 10", "config.run()"], saved) == ["y = x + 10"]


@pytest.mark.parametrize("content", ["not json at all", '{"cells": "no"}'])
def test_a_broken_notebook_file_is_a_packaging_error(tmp_path, content):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    with pytest.raises(PackagingError, match=r"Could not read the notebook .*broken\.ipynb.*valid \.ipynb"):
        NotebookPreprocessor(path).context()
