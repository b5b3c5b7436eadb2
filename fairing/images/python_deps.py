"""A layer of Python requirements, made without Docker.

The requirements are installed with the submitter's pip into a directory, for the
*image's* platform and Python version (``pip install --target DIR --platform ...
--python-version X.Y --implementation cp --abi cpXY --only-binary=:all:``), so no
code runs for the target and only wheels are used. The directory becomes a layer at
:data:`SITE_DIR`, which the image finds through ``PYTHONPATH``. The layer is keyed by
:func:`requirements_key` (requirements, Python version, platform, glibc level) so the
same requirements are never installed twice.

With ``installer="auto"`` (the default) `uv <https://docs.astral.sh/uv/>`_ installs
instead when it is on ``PATH`` or installed as a Python package (``pip install uv``, the
``fast`` extra): ``uv pip install --target DIR --python-platform x86_64-manylinux_2_28
--python-version X.Y --only-binary :all:``, several times faster than pip on a cold
cache. Both keep their wheel caches in their usual shared places (``~/.cache/pip``,
``~/.cache/uv``). What the two installers write differently (``INSTALLER``, ``RECORD``,
``REQUESTED``, ``direct_url.json``, uv's ``.lock``, ``__pycache__`` and the ``bin/`` scripts, whose
shebangs name the submitter's interpreter, useless in the image) is removed before
the directory becomes a layer, so the layer is the same whichever installed it.

Requirement lines keep their order and hashes; index URLs reach the installer through
its environment (``PIP_INDEX_URL``..., ``UV_INDEX_URL``...), never a file in the layer
or the image history, and its output is redacted before it enters an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from .._lock import exclusive
from ..requirements import PipIndexes, redact

from ..errors import BuildError, ConfigurationError
from ..events import EventCallback, Stage
from .layers import Layer, LocalCache, directory_layer
from .manifest import Platform

__all__ = ["SITE_DIR", "INSTALLERS", "requirements_key", "pip_platform_tags", "build_requirements_layer",
           "python_version_of", "find_uv"]

#: Where the requirements layer puts packages in the image (added to PYTHONPATH).
SITE_DIR = "/opt/fairing/python"

_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "386": "i686"}
_RECIPE_VERSION = 4  # 4: installer-specific files removed (pip and uv give one layer)

#: The installers ``installer=`` accepts.
INSTALLERS = ("auto", "uv", "pip")


def pip_platform_tags(platform: Platform, glibc: str = "2.28") -> list[str]:
    """pip ``--platform`` tags for a glibc Linux image: every manylinux tag up to ``glibc``."""
    if platform.os != "linux" or platform.architecture not in _ARCH:
        raise ConfigurationError(
            f"Installing requirements without Docker supports linux/amd64, linux/arm64 and a few others, "
            f"not {platform}. Use the Docker or cluster builder for this platform."
        )
    # pip does not widen an explicit --platform to older manylinux tags: list them all,
    # newest first (PEP 600 names, then the legacy aliases they replaced).
    arch = _ARCH[platform.architecture]
    major, minor = (int(x) for x in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]
    return tags


def requirements_key(requirements: Sequence[str], python_version: str, platform: Platform, glibc: str = "2.28",
                     site_dir: str = SITE_DIR, *, constraints: Sequence[str] = (),
                     pip_indexes: Optional[PipIndexes] = None) -> str:
    recipe = {
        "requirements": list(requirements),  # order matters to pip (options, hashes)
        "constraints": list(constraints),
        "indexes": (pip_indexes or PipIndexes()).redacted(),
        "python": python_version,
        "platform": str(platform),
        "glibc": glibc,
        "site_dir": site_dir,
        "v": _RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def python_version_of(config: dict) -> Optional[str]:
    """``X.Y`` of the image's Python from its config (``PYTHON_VERSION`` env, or a
    ``org.python.version`` / ``dev.fairing.python-version`` label), else None."""
    cfg = config.get("config") or {}
    candidates = []
    for entry in cfg.get("Env") or []:
        key, _, value = entry.partition("=")
        if key in ("PYTHON_VERSION", "PYTHON_VER"):
            candidates.append(value)
    labels = cfg.get("Labels") or {}
    candidates += [labels.get("dev.fairing.python-version"), labels.get("org.python.version")]
    for value in candidates:
        if value:
            parts = value.strip().split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return f"{parts[0]}.{parts[1]}"
    return None


def build_requirements_layer(
    requirements: Sequence[str],
    *,
    python_version: str,
    platform: Platform,
    cache: LocalCache,
    glibc: str = "2.28",
    site_dir: str = SITE_DIR,
    on_event: Optional[EventCallback] = None,
    compresslevel: int = 6,
    constraints: Sequence[str] = (),
    pip_indexes: Optional[PipIndexes] = None,
    installer: str = "auto",
) -> Layer:
    """The requirements layer from the local cache, else installed (uv or pip) and cached."""
    uv = _choose_installer(installer, platform)
    indexes = pip_indexes or PipIndexes()
    key = requirements_key(requirements, python_version, platform, glibc, site_dir, constraints=constraints,
                           pip_indexes=indexes)
    cached = cache.get_layer(key)
    if cached is not None:
        return cached
    with exclusive(cache.layers_dir() / f".{key}.lock"):  # one pip per key, across processes
        cached = cache.get_layer(key)  # made while this one waited?
        if cached is not None:
            return cached
        return _install_layer(requirements, key, python_version=python_version, platform=platform, cache=cache,
                              glibc=glibc, site_dir=site_dir, on_event=on_event, compresslevel=compresslevel,
                              constraints=constraints, indexes=indexes, uv=uv)


def _install_layer(requirements: Sequence[str], key: str, *, python_version: str, platform: Platform,
                   cache: LocalCache, glibc: str, site_dir: str, on_event: Optional[EventCallback],
                   compresslevel: int, constraints: Sequence[str], indexes: PipIndexes,
                   uv: Optional[str] = None) -> Layer:
    emit = on_event or (lambda e: None)
    tool = "uv pip" if uv else "pip"
    emit(Stage("requirements", "started",
               f"{tool} install {len(requirements)} requirement(s) for Python {python_version} {platform}"))
    major, minor = python_version.split(".")[:2]
    with tempfile.TemporaryDirectory(prefix="fairing-deps-") as tmp:
        target = Path(tmp) / "site"
        reqfile = Path(tmp) / "requirements.txt"
        head = ["-c constraints.txt"] if constraints else []
        reqfile.write_text("".join(f"{r}\n" for r in (*head, *requirements)))
        (Path(tmp) / "constraints.txt").write_text("".join(f"{r}\n" for r in constraints))
        cmd = _uv_command(uv, target, major, minor, platform, glibc, reqfile) if uv else [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
            "--no-compile", "--no-warn-script-location", "--target", str(target),
            "--python-version", f"{major}.{minor}", "--implementation", "cp",
            "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none", "--only-binary=:all:",
        ]
        if not uv:
            for tag in pip_platform_tags(platform, glibc):
                cmd += ["--platform", tag]
            cmd += ["-r", str(reqfile)]
        env = dict(os.environ, PIP_NO_COLOR="1", NO_COLOR="1", **indexes.env("UV" if uv else "PIP"))
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            emit(Stage("requirements", "failed"))
            tail = redact("\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
            raise BuildError(
                f"Installing the requirements {list(requirements)} for Python {major}.{minor} on {platform} with {tool} "
                f"failed:\n{tail}\n"
                "Without Docker only wheels can be installed: pin versions that publish wheels for this platform "
                "and Python version (see the package's files on PyPI), or use the Docker or cluster builder."
            )
        _remove_installer_files(target)
        layer = directory_layer(target, site_dir, Path(tmp) / "deps.tar.gz", compresslevel=compresslevel)
        cached = cache.put_layer(key, layer)
    emit(Stage("requirements", "finished", f"{cached.size} bytes"))
    return cached


def find_uv() -> Optional[str]:
    """The uv executable: on PATH, else the one the ``uv`` Python package ships; None without."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # the `fast` extra: pip install uv
    except ImportError:
        return None
    try:
        return uv.find_uv_bin()
    except Exception:  # the package without its binary
        return None


def _choose_installer(installer: str, platform: Platform) -> Optional[str]:
    """The uv executable to install with, or None for pip."""
    if installer not in INSTALLERS:
        raise ConfigurationError(f"installer must be one of {', '.join(map(repr, INSTALLERS))}, got {installer!r}.")
    if installer == "pip":
        return None
    uv = find_uv() if platform.architecture in ("amd64", "arm64") else None
    if uv is None and installer == "uv":
        raise ConfigurationError(
            "installer='uv' but uv is not installed (or the platform is not linux/amd64 or linux/arm64): "
            "pip install uv (or pip install 'fairing-ml[fast]'), or pass installer='auto' to use pip."
        )
    return uv


def _uv_command(uv: str, target: Path, major: str, minor: str, platform: Platform, glibc: str, reqfile: Path) -> list:
    return [
        uv, "pip", "install", "--quiet", "--no-progress", "--target", str(target), "--python", sys.executable,
        "--python-version", f"{major}.{minor}", "--python-platform",
        f"{_ARCH[platform.architecture]}-manylinux_{glibc.replace('.', '_')}", "--only-binary", ":all:",
        "-r", str(reqfile),
    ]


#: Files an installer writes about itself (they differ between pip and uv).
_INSTALLER_FILES = ("INSTALLER", "REQUESTED", "RECORD", "direct_url.json")


def _remove_installer_files(target: Path) -> None:
    shutil.rmtree(target / "bin", ignore_errors=True)
    (target / ".lock").unlink(missing_ok=True)  # uv's lock of the target directory
    for dist_info in target.glob("*.dist-info"):
        for name in _INSTALLER_FILES:
            (dist_info / name).unlink(missing_ok=True)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
