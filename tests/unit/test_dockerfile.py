"""The generated Dockerfile and its build context (no engine needed)."""

import io
import tarfile

import pytest

from fairing import ConfigurationError
from fairing.builders.dockerfile import docker_build_context, render_dockerfile
from fairing.context import BuildContext
from fairing.deployers.docker import parse_cpu, parse_memory


def _context(**kw):
    return BuildContext(files={"train.py": b"print(1)\n", "data/x.csv": b"a\n"}, entrypoint=("python3", "train.py"),
                        **kw)


def test_requirements_are_installed_before_the_code_is_copied():
    text = render_dockerfile(_context(requirements=("numpy==1.26.4", "pandas")), "python:3.11-slim")
    lines = text.splitlines()
    assert lines[0] == "FROM python:3.11-slim" and lines[1] == "WORKDIR /app"
    copy_reqs = lines.index("COPY requirements.txt /tmp/fairing-requirements.txt")
    run = next(i for i, line in enumerate(lines) if line.startswith("RUN ") and "pip install" in line)
    copy_code = lines.index("COPY code/ /app/")
    assert copy_reqs < run < copy_code
    # settings before the code, the code last: a code change rebuilds one step
    assert lines[-2:] == ['ENTRYPOINT ["python3", "train.py"]', "COPY code/ /app/"]


def test_no_requirements_no_pip_step():
    text = render_dockerfile(_context(), "base")
    assert "pip" not in text and "requirements" not in text


def test_env_is_quoted_and_escaped():
    text = render_dockerfile(_context(env={"A": 'say "hi" $HOME \\ ok', "B": "plain"}), "base")
    assert 'A="say \\"hi\\" \\$HOME \\\\ ok"' in text and 'B="plain"' in text
    with pytest.raises(ConfigurationError, match="line break"):
        render_dockerfile(_context(env={"A": "two\nlines"}), "base")


def test_build_context_tar_is_reproducible_and_complete():
    ctx = _context(requirements=("six",))
    text = render_dockerfile(ctx, "base")
    one = docker_build_context(ctx, text).tar_bytes()
    two = docker_build_context(_context(requirements=("six",)), text).tar_bytes()
    assert one == two
    names = tarfile.open(fileobj=io.BytesIO(one)).getnames()
    assert {"Dockerfile", "requirements.txt", "code/train.py", "code/data/x.csv"} <= set(names)


def test_resource_quantities():
    assert parse_cpu(2) == 2_000_000_000 and parse_cpu("500m") == 500_000_000 and parse_cpu("1.5") == 1_500_000_000
    assert parse_memory("512Mi") == 512 * 2**20 and parse_memory("2Gi") == 2 * 2**30
    assert parse_memory("1G") == 10**9 and parse_memory(64 * 2**20) == 64 * 2**20
    with pytest.raises(ConfigurationError, match="Did you mean 256M or 256Mi"):
        parse_memory("256m")  # Docker's own spelling; Kubernetes' units on every backend (fairing.resources)
    for bad in ("lots", "-1", 0):
        with pytest.raises(ConfigurationError):
            parse_memory(bad)
    with pytest.raises(ConfigurationError, match="too little"):
        parse_memory("1Ki")
    with pytest.raises(ConfigurationError):
        parse_cpu("zero")
