import subprocess
import sys

import fairing
from fairing import errors


def test_all_names_resolve():
    for name in fairing.__all__:
        assert getattr(fairing, name) is not None, name


def test_every_error_is_a_fairing_error_and_is_exported():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, fairing.FairingError)
        assert name in fairing.__all__
        assert name in errors.__doc__, f"{name} missing from the tree in errors' docstring"


def test_import_is_light():
    heavy = ["kubernetes", "docker", "boto3", "google.cloud", "papermill", "nbconvert", "nbformat",
             "cloudpickle", "requests", "httpx", "IPython"]
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import fairing"],
                         capture_output=True, text=True, check=True).stderr
    imported = {line.split("|")[-1].strip() for line in out.splitlines() if "|" in line}
    for mod in heavy:
        assert not any(m == mod or m.startswith(mod + ".") for m in imported), f"import fairing imported {mod}"
