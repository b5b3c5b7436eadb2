"""AppendBuilder's options and naming (no I/O: constructing a builder contacts nothing)."""

import pytest

from fairing.builders.append import AppendBuilder
from fairing.builders.naming import repository_name
from fairing.context import BuildContext
from fairing.errors import ConfigurationError
from fairing.images.registry.transport import is_loopback


def _ctx(entrypoint=("python3", "train.py"), files=None):
    return BuildContext(files=files or {"train.py": b"print(1)\n"}, entrypoint=list(entrypoint))


@pytest.mark.parametrize(
    "registry, repository, expected",
    [
        ("localhost:5000", None, ("localhost:5000", "fairing-train")),
        ("localhost:5000/team", None, ("localhost:5000", "team/fairing-train")),
        ("ghcr.io/org/sub", "model", ("ghcr.io", "org/sub/model")),
        ("myuser", None, ("docker.io", "myuser/fairing-train")),
        ("docker.io/myuser", "x", ("docker.io", "myuser/x")),
    ],
)
def test_target_naming(registry, repository, expected):
    builder = AppendBuilder("python:3.11", registry, repository=repository)
    try:
        assert (builder._host, builder.target_repository(_ctx())) == expected
    finally:
        builder.close()


def test_derived_names():
    assert repository_name(_ctx(("python3", "My Train_v2.py"), {"My Train_v2.py": b""})) == "fairing-my-train-v2"
    assert repository_name(_ctx(("python3", "-m", "fairing_runtime"), {".fairing/payload.json":
                                                                      b'{"kind": "script", "path": "src/fit.py"}'})) == "fairing-fit"
    assert repository_name(_ctx(("python3", "-m", "fairing_runtime"), {".fairing/payload.json": b'{"kind": "function"}'})) == "fairing-job"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(registry=""), "registry must name"),
        (dict(registry="localhost:5000", repository="Bad Name"), "not a valid image reference"),
        (dict(registry="localhost:5000", platform="amd64"), "platform must look like"),
        (dict(registry="localhost:5000", username="u"), "both username= and password="),
        (dict(registry="localhost:5000", ca_bundle="/no/such/ca.pem"), "ca_bundle"),
    ],
)
def test_bad_options_raise_configuration_error(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        AppendBuilder("python:3.11", **kwargs)


def test_bad_base_image():
    with pytest.raises(ConfigurationError, match="not a valid image reference"):
        AppendBuilder("Python:3.11", "localhost:5000")


def test_loopback_hosts():
    for host in ("localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "reg.localhost:80"):
        assert is_loopback(host), host
    for host in ("ghcr.io", "10.0.0.1:5000", "192.168.1.2", "localhost.example.com"):
        assert not is_loopback(host), host
