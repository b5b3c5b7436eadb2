"""The append path with a token-protected index, hashed and included requirements and an
in-project symlink: the image runs in a real Docker engine, and no byte of the token is in
any blob the registry stores (layers unpacked), the image history, an event or the log."""

from __future__ import annotations

import gzip
import os
import textwrap
import uuid
import zlib
from pathlib import Path

from fairing.builders.append import AppendBuilder
from fairing.preprocessors.python import PythonPreprocessor
from fairing.runtime.result import KEY_ENV, decode, new_key
from tests.services.package_index import DEMO_PROJECT, DEMO_VERSION, start_index

import pytest

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _registry_bytes(root: Path) -> dict[Path, bytes]:
    """Every file the registry stored, gzip blobs (layers) unpacked."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out[path] = _gunzip(data) if data[:2] == b"\x1f\x8b" else data
    return out


def _gunzip(data: bytes) -> bytes:
    """A blob unpacked; an upload cut short (another test cuts one on purpose: it stays in the
    registry's _uploads) is unpacked as far as it goes."""
    try:
        return gzip.decompress(data)
    except EOFError:
        return zlib.decompressobj(wbits=31).decompress(data)


def test_append_image_with_token_index_hashed_requirements_and_a_link(registry, base_image, docker_engine, tmp_path):
    token = "tok-" + uuid.uuid4().hex
    index = start_index("ci-user", token)
    try:
        wheel = next(iter(index.wheels))
        proj = tmp_path / "proj"
        _write(proj / "requirements.txt", f"--index-url {index.url}\n-r deps/pinned.txt\n")
        _write(proj / "deps" / "pinned.txt",
               f"{DEMO_PROJECT}=={DEMO_VERSION} --hash=sha256:{index.sha256(wheel)}\n")
        _write(proj / "data" / "v2" / "rows.csv", "a\nb\nc\n")
        os.symlink("v2/rows.csv", proj / "data" / "latest.csv")
        _write(proj / "train.py", """\
            import os, fairing_demo_pkg
            print("value", fairing_demo_pkg.VALUE, "link", os.readlink("data/latest.csv"),
                  "rows", len(open("data/latest.csv").read().split()))
        """)
        context = PythonPreprocessor(proj / "train.py", input_files=["data"]).context()
        events = []
        with AppendBuilder(base_image, registry.address, repository=f"secrets/{uuid.uuid4().hex[:8]}",
                           cache_dir=tmp_path / "cache") as builder:
            ref = builder.build(context, on_event=events.append)
        assert any(ok for _, ok in index.requests)  # pip reached the index with the credentials

        key = new_key()
        try:
            proc = docker_engine.run("run", "--rm", "--network", "none", "-e", "FAIRING_RESULT_LOG=1",
                                     "-e", f"{KEY_ENV}={key.hex()}", str(ref), timeout=300)
            history = docker_engine.run("image", "history", "--no-trunc", str(ref)).stdout
        finally:
            docker_engine.run("image", "rm", "-f", str(ref), check=False)
        assert "value demo-ok link v2/rows.csv rows 3" in proc.stdout
        assert decode(proc.stdout, key)["ok"] is True

        needle = token.encode()
        for path, data in _registry_bytes(registry.root).items():
            assert needle not in data, f"the token is in the registry's {path}"
        for name, text in {"history": history, "events": repr(events), "log": proc.stdout + proc.stderr}.items():
            assert token not in text, f"the token is in the {name}"
        assert "--hash=sha256:" in history  # the hashed line, as written, without the index
    finally:
        index.stop()
