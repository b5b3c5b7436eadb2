"""The requirements layer installed with uv and with pip: the same layer, from a real index."""

from __future__ import annotations

import sys
import uuid

import pytest

from fairing.errors import BuildError, ConfigurationError
from fairing.images.layers import LocalCache
from fairing.images.manifest import Platform
from fairing.images.python_deps import build_requirements_layer, find_uv
from fairing.requirements import PipIndexes
from tests.services.package_index import DEMO_PROJECT, DEMO_VERSION, start_index

AMD64 = Platform.parse("linux/amd64")


@pytest.fixture
def index():
    token = "tok-" + uuid.uuid4().hex
    handle = start_index("ci-user", token)
    handle.indexes = PipIndexes(index_url=handle.url)
    yield handle
    handle.stop()


def test_uv_and_pip_give_the_same_layer(index, tmp_path):
    assert find_uv(), "uv is in the test extra"
    layers = {}
    for installer in ("uv", "pip"):
        events = []
        layers[installer] = build_requirements_layer(
            [f"{DEMO_PROJECT}=={DEMO_VERSION}"], python_version="3.11", platform=AMD64,
            cache=LocalCache(tmp_path / installer), pip_indexes=index.indexes, installer=installer,
            on_event=events.append)
        started = [e.detail for e in events if getattr(e, "status", "") == "started"][0]
        assert started.startswith("uv pip install" if installer == "uv" else "pip install"), started
    assert layers["uv"].digest == layers["pip"].digest and layers["uv"].diff_id == layers["pip"].diff_id
    assert any(ok for _, ok in index.requests)  # both reached the index with its credentials


def test_a_missing_package_is_a_build_error_naming_uv(index, tmp_path):
    with pytest.raises(BuildError, match=r"with uv pip failed:(.|\n)*no-such-pkg"):
        build_requirements_layer(["no-such-pkg==1.0"], python_version="3.11", platform=AMD64,
                                 cache=LocalCache(tmp_path), pip_indexes=index.indexes, installer="uv")


def test_installer_choices(tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError, match="installer must be one of 'auto', 'uv', 'pip'"):
        build_requirements_layer(["x"], python_version="3.11", platform=AMD64, cache=LocalCache(tmp_path),
                                 installer="conda")
    from fairing.builders.append import AppendBuilder

    with pytest.raises(ConfigurationError, match="installer must be one of"):
        AppendBuilder("python:3.11-slim", "localhost:5000", installer="poetry")
    # without uv, installer="uv" says how to get it
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "uv", None)
    with pytest.raises(ConfigurationError, match="pip install uv"):
        build_requirements_layer(["x"], python_version="3.11", platform=AMD64, cache=LocalCache(tmp_path),
                                 installer="uv")
