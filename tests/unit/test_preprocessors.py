import json
import sys
import threading

import nbformat
import pytest

from fairing import EntryPointNotFoundError, NotebookNotFoundError, SerializationError, ConfigurationError
from fairing.preprocessors.files import collect_input_files
from fairing.preprocessors.function import FunctionPreprocessor
from fairing.preprocessors.notebook import FullNotebookPreprocessor, NotebookPreprocessor
from fairing.preprocessors.python import PythonPreprocessor
from fairing.runtime import PAYLOAD_FILE


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_directories_follow_gitignore_fairingignore_and_the_default_list(workdir):
    for name in ["train.py", "data/a.csv", "data/big.bin", "data/sub/keep.txt", "data/sub/tmp.log",
                 ".git/config", "venv/lib/x.py", "__pycache__/x.pyc", ".aws/credentials", ".env",
                 "certs/server.pem", "id_rsa", "kubeconfig", ".docker/config.json", "notes.md"]:
        _write(workdir / name, name)
    _write(workdir / ".gitignore", "*.bin\n")
    _write(workdir / "data/sub/.fairingignore", "*.log\n")
    found = collect_input_files(["."])
    assert set(found) == {"train.py", "data/a.csv", "data/sub/keep.txt", "notes.md"}


def test_a_credential_file_listed_by_name_is_packaged(workdir):
    _write(workdir / ".env", "TOKEN=1")
    assert set(collect_input_files([".env"])) == {".env"}


def test_missing_input_file_is_a_clear_error(workdir):
    with pytest.raises(EntryPointNotFoundError, match="nope.csv"):
        collect_input_files(["nope.csv"])
    _write(workdir / "data/a.csv", "1")
    assert set(collect_input_files("data")) == {"data/a.csv"}  # a string is one path, not its characters


def test_python_preprocessor_packages_script_inputs_and_requirements(workdir):
    _write(workdir / "train.py", "print('hi')\n")
    _write(workdir / "requirements.txt", "tabulate==0.9.0  # pretty tables\n# comment\n")
    _write(workdir / "data/x.csv", "1,2\n")
    ctx = PythonPreprocessor("train.py", input_files=["data"], args=["--epochs", "2"]).context()
    assert {"train.py", "data/x.csv", PAYLOAD_FILE} <= set(ctx.files)
    assert ctx.requirements == ("tabulate==0.9.0",)
    payload = json.loads(ctx.files[PAYLOAD_FILE])
    assert payload == {"kind": "script", "path": "train.py", "args": ["--epochs", "2"]}


def test_python_preprocessor_missing_entry_point(workdir):
    with pytest.raises(EntryPointNotFoundError, match="train.py"):
        PythonPreprocessor("train.py")


def test_function_preprocessor_pins_cloudpickle_and_python():
    import cloudpickle

    ctx = FunctionPreprocessor(len, (["a"],)).context()
    payload = json.loads(ctx.files[PAYLOAD_FILE])
    assert payload["python"] == "%d.%d" % sys.version_info[:2]
    assert payload["cloudpickle"] == cloudpickle.__version__
    assert f"cloudpickle=={cloudpickle.__version__}" in ctx.requirements


@pytest.mark.parametrize("make", [threading.Lock, lambda: __import__("socket").socket()])
def test_unpicklable_closure_is_a_clear_error(make):
    resource = make()

    def uses():
        return resource

    try:
        with pytest.raises(SerializationError, match="Create them inside the function"):
            FunctionPreprocessor(uses).context()
    finally:
        getattr(resource, "close", lambda: None)()


def test_class_without_train_is_refused():
    class Model:
        pass

    with pytest.raises(ConfigurationError, match="train"):
        FunctionPreprocessor(Model)


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) if not c.startswith("#md") else nbformat.v4.new_markdown_cell(c)
                for c in cells]
    nbformat.write(nb, str(path))
    return path


def test_notebook_preprocessor_context(workdir):
    _notebook(workdir / "train.ipynb", "print('hello')")
    _write(workdir / "data/x.csv", "1\n")
    ctx = NotebookPreprocessor("train.ipynb", input_files=["data"]).context()
    assert ctx.files["train.py"].endswith(b"print('hello')\n")
    assert "data/x.csv" in ctx.files
    full = FullNotebookPreprocessor("train.ipynb", parameters={"alpha": 0.5}).context()
    payload = json.loads(full.files[PAYLOAD_FILE])
    assert payload["kind"] == "notebook" and payload["parameters"] == {"alpha": 0.5}
    assert "papermill" in full.requirements


def test_notebook_not_found(workdir):
    with pytest.raises(EntryPointNotFoundError, match="missing.ipynb"):
        NotebookPreprocessor("missing.ipynb")


def test_current_notebook_cannot_be_detected_outside_jupyter(workdir):
    with pytest.raises(NotebookNotFoundError, match="notebook_file="):
        NotebookPreprocessor()
