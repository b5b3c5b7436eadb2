"""ImageRef: parsing with Docker Hub defaults, validation, derived values."""

import pytest

from fairing.errors import ConfigurationError
from fairing.images import ImageRef

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("python:3.11", "docker.io", "library/python", "3.11", None),
        ("python", "docker.io", "library/python", None, None),
        ("user/app:v1", "docker.io", "user/app", "v1", None),
        ("docker.io/python:3.11", "docker.io", "library/python", "3.11", None),
        ("index.docker.io/library/python", "docker.io", "library/python", None, None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/team/app:dev", "localhost:5000", "team/app", "dev", None),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None),
        ("ghcr.io/org/app@" + DIGEST, "ghcr.io", "org/app", None, DIGEST),
        ("ghcr.io/org/app:v2@" + DIGEST, "ghcr.io", "org/app", "v2", DIGEST),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("my-reg.example.com:443/a_b/c-d.e:1.0_rc-1", "my-reg.example.com:443", "a_b/c-d.e", "1.0_rc-1", None),
    ],
)
def test_parse(text, registry, repository, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    ["", "  ", "Python:3.11", "python:", "python:-bad", "a//b", "ghcr.io/org/app@sha256:short", "ghcr.io/", "app:tag with space",
     "ghcr.io/org/App", "bad_host!:5000/app", "x" * 300],
)
def test_malformed_names_raise_clear_error(text):
    with pytest.raises(ConfigurationError, match="not a valid image reference|non-empty"):
        ImageRef.parse(text)


def test_derived_values():
    ref = ImageRef.parse("python:3.11")
    assert str(ref) == "docker.io/library/python:3.11"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.reference == "3.11" and not ref.pinned
    pinned = ref.with_digest(DIGEST)
    assert pinned.pinned and pinned.reference == DIGEST and str(pinned).endswith(":3.11@" + DIGEST)
    assert ImageRef.parse("localhost:5000/app").reference == "latest"
    assert ref.with_tag("3.12").tag == "3.12" and ref.with_repository("x/y").name == "docker.io/x/y"
    with pytest.raises(Exception):
        ref.tag = "mutable"  # frozen


def test_error_message_teaches():
    with pytest.raises(ConfigurationError) as info:
        ImageRef.parse("Python:3.11")
    assert "lowercase" in str(info.value) and "python:3.11" in str(info.value)


def test_import_fairing_does_not_import_the_http_client():
    import subprocess
    import sys

    code = ("import sys, fairing, fairing.images, fairing.builders; "
            "bad = [m for m in ('requests', 'urllib3', 'fairing.images.registry', 'fairing.builders.append') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_http_client_names_the_extra():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['requests'] = None\n"
        "from fairing.errors import MissingDependencyError\n"
        "from fairing.builders.append import AppendBuilder\n"
        "try:\n"
        "    AppendBuilder('python:3.11', 'localhost:5000')\n"
        "except MissingDependencyError as exc:\n"
        "    assert \"pip install 'fairing-ml[append]'\" in str(exc), str(exc)\n"
        "else:\n"
        "    raise SystemExit('no MissingDependencyError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
