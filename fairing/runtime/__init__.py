"""The part of fairing that runs inside the job.

It is copied into every build context as the package ``fairing_runtime`` (under
``.fairing/`` in the working directory) and started with ``python3 -m fairing_runtime``,
so the image needs no fairing installation. It therefore imports only the standard
library (and cloudpickle, which function payloads list as a requirement).

Payload description: ``.fairing/payload.json``, one of::

    {"kind": "function", "pickle": ".fairing/function.pkl", "python": "3.11", "cloudpickle": "3.1.2"}
    {"kind": "script", "path": "train.py", "args": ["--epochs", "3"]}   # also a converted notebook, whose
                                                                      # get_ipython() calls shell.py answers
    {"kind": "notebook", "path": "train.ipynb", "parameters": {...}}   # run whole with papermill
    {"kind": "serve", "pickle": ..., "python": ..., "cloudpickle": ..., "model_name": "iris", "port": 8080}

The outcome travels back through the result channel (``result.py``).
"""

from pathlib import Path

PACKAGE = "fairing_runtime"
#: Where the runtime and the payload live, relative to the image's working directory.
RUNTIME_DIR = ".fairing"
PAYLOAD_FILE = RUNTIME_DIR + "/payload.json"
#: The user's local modules a function payload uses, as source files (on sys.path in the job).
MODULES_DIR = RUNTIME_DIR + "/modules"
ENTRYPOINT = ("python3", "-m", PACKAGE)


def runtime_files() -> dict:
    """The runtime's own files, as build-context entries (image path -> Path)."""
    here = Path(__file__).parent
    return {
        f"{RUNTIME_DIR}/{PACKAGE}/{name}": here / name
        for name in ("__init__.py", "__main__.py", "component.py", "outputs.py", "result.py", "serving.py", "tensors.py",
                     "shell.py", "trial.py", "warm.py")
    }


def fairing_package_files() -> dict:
    """fairing's own pure-Python package, as build-context entries under ``RUNTIME_DIR``
    (on the job's ``PYTHONPATH``), so code that calls fairing runs in any image: inside the
    job (``FAIRING_RUNTIME`` set) those calls are no-ops."""
    package = Path(__file__).resolve().parent.parent
    return {
        f"{RUNTIME_DIR}/fairing/{path.relative_to(package).as_posix()}": path
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
