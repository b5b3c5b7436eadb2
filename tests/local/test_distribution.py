"""fairing as a user installs it: the wheel built from this checkout (``fairing-ml``), in real
virtual environments, beside the real packages from PyPI it shares names with: the Kubeflow
SDK (``kubeflow`` 0.5.0, a regular ``kubeflow/__init__.py``) and Kubeflow's old ``fairing``
(0.5.3, which owns the same ``fairing/`` directory)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: An interpreter whose own site-packages holds no fairing (a venv made from it with
#: --system-site-packages sees a user site, as a user's machine does).
BASE_PYTHON = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions" / "3.12.1" / "bin" / "python3"
PYPI = {"kubeflow": "kubeflow==0.5.0", "fairing": "fairing==0.5.3"}


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fairing-tests" / "wheels"


def _run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict:
    """The checkout's wheel (built now) and the two PyPI wheels (downloaded once per machine)."""
    out = tmp_path_factory.mktemp("wheels")
    uv = shutil.which("uv")
    assert uv, "uv builds the wheel (the `fast` extra installs it)"
    # from a copy of the tracked files: setuptools builds in the tree's build/, which two runs
    # (xdist workers) would share, and where a stale file from an older build would be packed
    source = out / "source"
    listed = _run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for rel in filter(None, listed):
        if not rel.startswith(("tests/", "benchmarks/", "notebooks/")) and (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    for rel in ("fairing-ml.pth", "_fairing_kubeflow.py", "setup.py", "MANIFEST.in", "CHANGELOG.md"):
        if not (source / rel).exists() and (ROOT / rel).exists():  # not committed yet
            shutil.copy2(ROOT / rel, source / rel)
    proc = _run(uv, "build", "--offline", "--quiet", "--wheel", "-o", out, source)
    if proc.returncode:  # setuptools not in uv's cache yet: let it fetch once
        proc = _run(uv, "build", "--quiet", "--wheel", "-o", out, source)
    assert proc.returncode == 0, proc.stderr
    found = {"fairing-ml": next(out.glob("fairing_ml-*.whl"))}
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers (and other runs) download once, one at a time
        for name, spec in PYPI.items():
            version = spec.split("==")[1]
            wheel = next(cache.glob(f"{name}-{version}-*.whl"), None)
            if wheel is None:
                proc = _run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                            "--python-version", "3.12",  # what BASE_PYTHON installs (kubeflow 0.5.0 needs 3.10+)
                            "-d", cache, spec)
                assert proc.returncode == 0, proc.stderr
                wheel = next(cache.glob(f"{name}-{version}-*.whl"))
            found[name] = wheel
    return found


def test_the_wheel_is_fairing_ml_typed_with_the_finder_and_one_version(wheels):
    from fairing import __version__

    wheel = wheels["fairing-ml"]
    assert wheel.name == f"fairing_ml-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"fairing_ml-{__version__}.dist-info/METADATA").decode()
    assert {"fairing/py.typed", "fairing-ml.pth", "_fairing_kubeflow.py", "kubeflow/fairing/__init__.py"} <= names
    assert "kubeflow/__init__.py" not in names  # a namespace portion: the SDK's own __init__ stays the SDK's
    assert not [n for n in names if n.startswith(("tests/", "setup.py", "examples/"))]
    assert re.search(r"^Name: fairing-ml$", meta, re.M) and f"\nVersion: {__version__}\n" in meta
    assert "Requires-Python: >=3.9" in meta and "Typing :: Typed" in meta
    for minor in range(9, 14):
        assert f"Classifier: Programming Language :: Python :: 3.{minor}\n" in meta
    # the version is written once: fairing/__init__.py, read by pyproject
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project and not re.search(r"^version\s*=", project, re.M)
    assert 'version = { attr = "fairing.__version__" }' in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in changelog


def _venv(tmp_path: Path, name: str) -> tuple[Path, dict]:
    """A venv seeing a user site of its own (as a machine's Python does), and its environment."""
    venv = tmp_path / name
    proc = _run("uv", "venv", "--quiet", "--system-site-packages", "--python", BASE_PYTHON, venv)
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONUSERBASE"] = str(tmp_path / f"{name}-user")
    return venv, env


def _install(venv: Path, env: dict, wheel: Path, *, user: bool = False) -> None:
    """pip install [--user] wheel (--no-deps: what is tested needs none; uv is pip's equal here)."""
    where = ["--python", venv / "bin" / "python"]
    if user:
        site = _run(venv / "bin" / "python", "-c", "import site; print(site.getusersitepackages())", env=env)
        where = ["--python", venv / "bin" / "python", "--target", site.stdout.strip()]
    proc = _run("uv", "pip", "install", "--quiet", "--offline", "--no-deps", *where, wheel, env=env)
    assert proc.returncode == 0, proc.stderr


IMPORT_OLD_PATH = """
import warnings
warnings.simplefilter("ignore", FutureWarning)
import kubeflow
from kubeflow import fairing
from kubeflow.fairing import TrainJob
print(getattr(kubeflow, "__version__", "-"), fairing.__version__, TrainJob.__module__)
"""


@pytest.mark.parametrize("layout", ["same-site-packages", "fairing-user-over-sdk", "sdk-user-over-fairing",
                                    "fairing-only"])
def test_kubeflow_fairing_imports_beside_the_kubeflow_sdk_however_both_are_installed(tmp_path, wheels, layout):
    from fairing import __version__

    venv, env = _venv(tmp_path, "v")
    if layout == "same-site-packages":
        _install(venv, env, wheels["kubeflow"])
        _install(venv, env, wheels["fairing-ml"])
    elif layout == "fairing-user-over-sdk":  # the case: pip install --user over an image's SDK
        _install(venv, env, wheels["kubeflow"])
        _install(venv, env, wheels["fairing-ml"], user=True)
    elif layout == "sdk-user-over-fairing":
        _install(venv, env, wheels["fairing-ml"])
        _install(venv, env, wheels["kubeflow"], user=True)
    else:
        _install(venv, env, wheels["fairing-ml"])
    proc = _run(venv / "bin" / "python", "-c", IMPORT_OLD_PATH, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sdk = "0.5.0" if layout != "fairing-only" else None
    if sdk:
        assert proc.stdout.split() == ["0.5.0", __version__, "fairing.api"]
    else:  # no SDK: kubeflow is fairing-ml's namespace package, without a version
        assert proc.stdout.split() == ["-", __version__, "fairing.api"]


def test_without_its_finder_the_sdk_would_hide_kubeflow_fairing(tmp_path, wheels):
    """What the .pth is for: the same layout as the issue's, with the .pth removed, fails."""
    venv, env = _venv(tmp_path, "v")
    _install(venv, env, wheels["kubeflow"])
    _install(venv, env, wheels["fairing-ml"], user=True)
    site = _run(venv / "bin" / "python", "-c", "import site; print(site.getusersitepackages())", env=env).stdout
    (Path(site.strip()) / "fairing-ml.pth").unlink()
    proc = _run(venv / "bin" / "python", "-c", "import kubeflow.fairing", env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "No module named 'kubeflow.fairing'" in proc.stderr
    # importing fairing installs the finder too (a --target directory on PYTHONPATH gets no .pth)
    proc = _run(venv / "bin" / "python", "-W", "ignore", "-c", "import fairing, kubeflow.fairing", env=env,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_kubeflow_s_old_fairing_in_the_same_environment_is_a_clear_error(tmp_path, wheels):
    venv, env = _venv(tmp_path, "v")
    _install(venv, env, wheels["fairing"])  # PyPI's fairing 0.5.3, then ours over it: pip says nothing
    _install(venv, env, wheels["fairing-ml"])
    proc = _run(venv / "bin" / "python", "-c", "import fairing", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairing.errors.ConflictingInstallError: Kubeflow's old 'fairing' package (fairing 0.5.3")
    assert "pip uninstall -y fairing fairing-ml && pip install fairing-ml" in last
    # the command line says the same, as its one error line
    proc = _run(venv / "bin" / "python", "-m", "fairing", "--version", env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "ConflictingInstallError" in proc.stderr
    # without the old one, the same environment works
    proc = _run("uv", "pip", "uninstall", "--quiet", "--python", venv / "bin" / "python", "fairing", "fairing-ml",
                env=env)
    assert proc.returncode == 0, proc.stderr
    _install(venv, env, wheels["fairing-ml"])
    proc = _run(venv / "bin" / "python", "-c", "import fairing; print(fairing.__version__)", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_an_extra_s_missing_package_names_the_distribution_to_install():
    from fairing.errors import MissingDependencyError

    assert "pip install 'fairing-ml[docker]'" in str(MissingDependencyError("docker", "docker", "The Docker backend"))
    # no error message or doc in the tree still says the old distribution's name
    stale = []
    for path in [*ROOT.glob("fairing/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]:
        if re.search(r"pip install '?fairing(\[|'|\s|$)", path.read_text(), re.M):
            stale.append(str(path))
    assert not stale


def test_the_readme_install_lines_name_this_distribution_and_its_extras():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Install", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    installs = re.findall(r"pip install '?([A-Za-z0-9_.-]+)(?:\[([a-z,]+)\])?'?", block)
    assert installs and all(name == project["name"] for name, _ in installs)
    extras = {e for _, group in installs for e in group.split(",") if e}
    listed = set(re.findall(r"[a-z]+", block.split("extras:", 1)[1].split("\n")[0]))
    assert extras | listed <= set(project["optional-dependencies"])
