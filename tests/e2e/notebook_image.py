"""The notebook image of the in-pod tests: what a Kubeflow notebook server runs, built here.

The test base image (:mod:`tests.services.base_image`: Debian + python3 + pip, the host CA
bundle baked in) plus, appended by fairing's own append builder (no Docker, nothing pulled):

* a requirements layer: fairing's dependencies, ``ipykernel``, ``papermill``/``nbclient``
  (installed on this machine for linux/amd64, Python 3.11, as wheels);
* fairing itself, from this working tree (``/opt/fairing-src/fairing``, on ``PYTHONPATH``),
  and a ``fairing`` command (``/opt/fairing-src/bin/fairing``, on ``PATH``);
* a wheelhouse (``/opt/fairing-src/wheelhouse``): the wheels the jobs built *inside* the pod
  install (cloudpickle, Starlette, uvicorn). The cluster's pods do not reach PyPI, as in an
  air-gapped Kubeflow, so the platform team points pip at a wheelhouse
  (``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS``): the pod's environment, not the notebook, says so.

The image is tagged ``notebook-<hash>`` of its inputs (fairing's source files, the
requirements, the wheelhouse's list, the base image's digest, this recipe): a warm run finds
that tag with one ``HEAD`` request and builds nothing. :func:`notebook_image` is safe to call
from several xdist workers at once (a file lock around the build).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("FAIRING_TESTS_CACHE", Path.home() / ".cache" / "fairing-tests"))

#: What the notebook server needs besides fairing's own dependencies (pinned like the host's).
NOTEBOOK_REQUIREMENTS = (
    "click==8.1.8", "cloudpickle==3.1.3", "packaging>=23", "pathspec>=0.11", "rich>=13", "requests>=2.28",
    "kubernetes==30.1.0", "nbformat>=5", "ipython==8.12.3", "ipykernel==7.4.0", "papermill==2.7.0",
    "nbclient==0.11.0",
)
#: What the jobs built in the pod install: cloudpickle for a function payload, Starlette and uvicorn to serve.
WHEELHOUSE = ("cloudpickle==3.1.3", "starlette>=0.37", "uvicorn>=0.29")
WORKDIR = "/opt/fairing-src"
RECIPE_VERSION = 1

_FAIRING_CLI = "#!/usr/bin/env python3\nimport sys\nfrom fairing.cli import main\nsys.exit(main())\n"


def _source_files() -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / "fairing").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
            out[str(path.relative_to(REPO))] = path
    return out


def _wheelhouse() -> Path:
    """The wheels for the jobs, downloaded once per machine (keyed by the list)."""
    key = hashlib.sha256(json.dumps(WHEELHOUSE).encode()).hexdigest()[:16]
    target = CACHE_DIR / f"wheelhouse-{key}"
    if (target / ".done").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--platform",
         "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         "-d", str(target), *WHEELHOUSE], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"downloading the notebook pod's wheelhouse failed:\n{proc.stderr[-3000:]}")
    (target / ".done").write_text("")
    return target


def input_hash(base_image: str, files: dict[str, Path], wheels: Path) -> str:
    h = hashlib.sha256(json.dumps([RECIPE_VERSION, base_image, NOTEBOOK_REQUIREMENTS, _FAIRING_CLI,
                                   sorted(p.name for p in wheels.glob("*.whl"))]).encode())
    for name, path in files.items():
        h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:20]


def notebook_image(registry: str, base_image: str) -> str:
    """``registry/fairing-tests/notebook:notebook-<hash>@sha256:...``, built when missing."""
    from fairing.builders.append import AppendBuilder
    from fairing.context import BuildContext
    from fairing.images import ImageRef
    from fairing.images.registry import RegistryClient

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".notebook-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wheels = _wheelhouse()
        files = _source_files()
        tag = "notebook-" + input_hash(base_image, files, wheels)
        ref = ImageRef.parse(f"{registry}/fairing-tests/notebook:{tag}")
        client = RegistryClient(insecure=True)
        try:
            found = client.head_manifest(ref)
        finally:
            client.close()
        if found is not None:
            return str(ref.with_digest(found.digest))
        script = CACHE_DIR / "fairing-cli"
        script.write_text(_FAIRING_CLI)
        script.chmod(0o755)
        context_files = {**files, "bin/fairing": script,
                         **{f"wheelhouse/{p.name}": p for p in sorted(wheels.glob("*.whl"))}}
        context = BuildContext(
            files=context_files, entrypoint=("sleep", "infinity"), workdir=WORKDIR,
            env={"PYTHONPATH": WORKDIR, "PATH": f"{WORKDIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            requirements=NOTEBOOK_REQUIREMENTS)
        with AppendBuilder(base_image, f"{registry}/fairing-tests", repository="notebook", insecure=True,
                           data_paths=["wheelhouse"]) as builder:
            built = builder.build(context)
        # the tag of the inputs, on the image the builder pushed (its own tag is its digest's)
        client = RegistryClient(insecure=True)
        try:
            data, media_type, digest = client.get_manifest(ImageRef.parse(str(built)))
            client.put_manifest(ref, data, media_type)
        finally:
            client.close()
        return str(ref.with_digest(digest))
