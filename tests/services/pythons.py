"""The other Python versions on this machine: a virtual environment per version with
fairing's test dependencies, in which the unit and local tiers run again.

fairing says it supports Python 3.9 to 3.13 (pyproject's ``requires-python`` and
classifiers); the suite itself runs on one interpreter, so this runs ``tests/unit`` and
``tests/local`` under each other one it finds (pyenv's versions, or ``$FAIRING_TEST_PYTHONS``,
a ``:``-separated list of interpreters). Each environment is made with ``uv`` (its cache
makes a rebuild take seconds) under ``~/.cache/fairing-tests/pythons/<X.Y>-<key>``, keyed by
a hash of pyproject.toml's dependencies, so it is made once per machine and dependency
change. fairing itself is not installed there: the tests import it from the checkout
(``PYTHONPATH``), as the main run does.

Run one version by hand::

    python3 -m tests.services.pythons 3.9          # make the environment, run both tiers
    python3 -m tests.services.pythons --list       # the versions found
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
#: What fairing supports: the interpreters outside this range are not used.
SUPPORTED = ((3, 9), (3, 13))
TIERS = ("tests/unit", "tests/local")
#: The test extra's requirements that only other tiers use (browser, pipelines, cloud emulators,
#: package index); left out, they keep each environment small (and some have no wheel for 3.9).
OTHER_TIERS_ONLY = ("kfp", "moto", "gcp-storage-emulator", "pypiserver", "jupyterlab", "playwright", "notebook")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fairing-tests" / "pythons"


def _version_of(python: Path) -> tuple[int, int]:
    out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    major, minor = out.split(".")
    return int(major), int(minor)


def interpreters() -> dict[str, Path]:
    """``{"3.9": path, ...}``: each supported minor version found, but the running one."""
    if os.environ.get("FAIRING_TEST_PYTHONS"):
        candidates = [Path(p) for p in os.environ["FAIRING_TEST_PYTHONS"].split(":") if p]
    else:
        candidates = sorted(PYENV.glob("*/bin/python3")) if PYENV.is_dir() else []
    found: dict[str, Path] = {}
    for python in candidates:
        if not re.fullmatch(r"\d+\.\d+\.\d+", python.parent.parent.name) and "FAIRING_TEST_PYTHONS" not in os.environ:
            continue  # a pyenv virtualenv or a pypy, not a CPython release
        version = _version_of(python)
        if SUPPORTED[0] <= version <= SUPPORTED[1] and version != sys.version_info[:2]:
            found["%d.%d" % version] = python
    return found


def requirements() -> list[str]:
    """The test extra's requirements for the unit and local tiers, with fairing's own extras
    expanded (fairing itself left out: the tests import it from the checkout)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    name = project["name"]
    out: list[str] = list(project["dependencies"])
    pending, seen = ["test"], {"pipelines"}
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in extras[extra]:
            m = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if m:
                pending.extend(e.strip() for e in m.group(1).split(","))
            elif re.split(r"[\[<>=!~;\s]", req, maxsplit=1)[0].lower() not in OTHER_TIERS_ONLY:
                out.append(req)
    return sorted(set(out))


def environment(version: str, python: Path, *, log=None) -> Path:
    """The virtual environment for ``version`` with the test dependencies (made when missing)."""
    reqs = requirements()
    key = hashlib.sha256(json.dumps([str(python), reqs, "seed"]).encode()).hexdigest()[:12]
    venv = cache_dir() / f"{version}-{key}"
    ready = venv / ".fairing-ready"
    if ready.exists():
        return venv
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs making the same environment take turns
        if ready.exists():
            return venv
        for old in cache_dir().glob(f"{version}-*"):
            shutil.rmtree(old, ignore_errors=True)  # an older key's, or a half-made one
        uv = shutil.which("uv")
        run = dict(stdout=log, stderr=subprocess.STDOUT, check=True)
        if uv:
            # --seed: pip too, which the local builder installs a job's requirements with
            subprocess.run([uv, "venv", "--quiet", "--seed", "--python", str(python), str(venv)], **run)
            # wheels only: the resolver then picks versions built for this Python (the newest gevent,
            # under tritonclient[http], has no 3.9 wheel and would compile for many minutes)
            subprocess.run([uv, "pip", "install", "--quiet", "--only-binary", ":all:", "--python", str(venv / "bin" / "python"), *reqs], **run)
        else:
            subprocess.run([str(python), "-m", "venv", str(venv)], **run)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *reqs], **run)
        ready.write_text(" ".join(reqs))
    return venv


def test_command(venv: Path, *pytest_args: str, tiers: tuple = TIERS) -> tuple[list[str], dict]:
    """(argv, environment) to run ``tiers`` [the unit and local tiers] in ``venv``, from the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "FAIRING_TESTS_REPORT", "VIRTUAL_ENV", "PYTHONHOME"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    argv = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--phase", "parallel",
            *pytest_args, *tiers]
    return argv, env


def main(argv: list[str]) -> int:
    found = interpreters()
    if "--list" in argv:
        print(json.dumps({v: str(p) for v, p in found.items()}))
        return 0
    wanted = [a for a in argv if not a.startswith("-")] or list(found)
    rc = 0
    for version in wanted:
        if version not in found:
            print(f"no Python {version} here; found: {', '.join(found) or 'none'}", file=sys.stderr)
            return 2
        venv = environment(version, found[version], log=sys.stderr)
        cmd, env = test_command(venv, "-n", "2")
        print(f"Python {version}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode or rc
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
