"""``fairing config`` and ``fairing doctor`` as a new user meets them, in a real terminal:
a working setup (registry, base image, Docker engine), and broken ones (a bad kubeconfig, a
registry on a closed loopback port, wrong credentials, a base image with another Python,
a typo in fairing.toml)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import socket
import tarfile

import pytest

from tests.cli_terminal import Terminal

pytestmark = pytest.mark.xdist_group("docker-engine")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


@pytest.fixture
def term(workdir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")  # no docker login, no user settings file
    return Terminal(workdir, tmp_path_factory.mktemp("cache"),
                    env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "DOCKER_CONFIG": "",
                         "KUBECONFIG": str(home / "no-kubeconfig"), "FAIRING_BACKEND": "",
                         "FAIRING_REGISTRY": "", "FAIRING_BASE_IMAGE": "", "FAIRING_INSECURE_REGISTRIES": ""})


def _rows(out: str) -> list:
    """The doctor's lines as printed, a terminal's wrapping of long ones undone."""
    rows: list = []
    for line in out.splitlines():
        if rows and not line.startswith(("PASS", "FAIL", "WARN", "SKIP", "CANNOT TELL", "             fix:",
                                         "fairing:")):
            rows[-1] += line
        else:
            rows.append(line)
    return rows


def _checks(document) -> dict:
    return {c["name"]: c for c in document["checks"]}


def test_doctor_passes_on_a_working_docker_setup(term, registry, base_image, docker_engine):
    env = {"FAIRING_REGISTRY": f"{registry.address}/team", "FAIRING_BASE_IMAGE": str(base_image)}
    code, out = term.run("doctor", "--backend", "docker", env=env)
    assert code == 0, out
    out = "\n".join(_rows(out))
    assert f"PASS         registry: {registry.address}/team answers and accepts fairing's credentials" in out
    assert "PASS         base image Python: " in out and "has Python 3.11, as here" in out
    assert "PASS         Docker engine: " in out
    assert "SKIP         kubeconfig and context: the docker backend needs no cluster" in out
    assert "fix:" not in out and "no check failed" in out


def test_doctor_broken_setup_fails_each_check_with_its_fix(term, workdir):
    port = _closed_port()
    (workdir / "kubeconfig").write_text("apiVersion: v1\nkind: Config\nclusters: [\n")  # not YAML
    env = {"KUBECONFIG": str(workdir / "kubeconfig"), "FAIRING_REGISTRY": f"127.0.0.1:{port}/team",
           "FAIRING_BASE_IMAGE": f"127.0.0.1:{port}/python:3.11"}
    code, out = term.run("doctor", "--backend", "kubernetes", env=env)
    assert code == 1, out
    lines = _rows(out)
    fails = [line for line in lines if line.startswith("FAIL")]
    assert [f.split(":")[0] for f in fails] == ["FAIL         kubeconfig and context", "FAIL         registry",
                                                "FAIL         base image Python"], out
    assert "is not valid YAML" in fails[0] and str(workdir / "kubeconfig") in fails[0]
    assert "Connection refused" in fails[1]
    # each failure is followed by its fix; the checks that need the cluster are skipped, not failed
    for fail in fails:
        assert lines[lines.index(fail) + 1].lstrip().startswith("fix: "), out
    assert "SKIP         identity and permissions: the cluster could not be reached" in out
    assert "SKIP         TFJob resource type" in out
    assert "3 checks failed" in out


def test_doctor_json_names_the_failures(term, workdir):
    port = _closed_port()
    (workdir / "unused-kubeconfig").write_text("")  # the docker backend reads no kubeconfig
    proc = term.piped("doctor", "--output", "json", "--backend", "docker", "--kubeconfig",
                      str(workdir / "unused-kubeconfig"))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["ok"] is False
    checks = _checks(doc)
    assert checks["registry"]["status"] == "FAIL" and "no registry is set" in checks["registry"]["detail"]
    assert "FAIRING_REGISTRY" in checks["registry"]["fix"]
    assert {c["status"] for c in doc["checks"]} <= {"PASS", "FAIL", "WARN", "SKIP", "CANNOT TELL"}
    del port


def test_doctor_wrong_credentials_are_a_failure_right_ones_pass(term, workdir, token_registry):
    from .conftest import TOKEN_USERS

    user, password = next(iter(TOKEN_USERS.items()))
    host = token_registry.address

    def login(secret: str) -> dict:
        config = workdir / f"docker-{secret}"
        config.mkdir()
        auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        return {"DOCKER_CONFIG": str(config), "FAIRING_REGISTRY": f"{host}/team"}

    code, out = term.run("doctor", "--backend", "docker", env=login("wrong-password"))
    assert code == 1, out
    line = next(line for line in _rows(out) if "registry:" in line)
    assert line.startswith("FAIL") and "credentials not accepted" in line, out
    assert f"docker login {host}" in out
    assert "wrong-password" not in out  # the secret is never shown

    code, out = term.run("doctor", "--backend", "docker", env=login(password))
    line = next(line for line in _rows(out) if "registry:" in line)
    assert line.startswith("PASS"), out


def _push_image_with_python(registry, version: str) -> str:
    """A one-layer image whose config says PYTHON_VERSION=<version>."""
    from fairing.images import ImageRef
    from fairing.images.manifest import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, \
        build_manifest, canonical_json
    from fairing.images.registry import RegistryClient

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "config": {"Env": [f"PYTHON_VERSION={version}"]},
                             "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}})
    ref = ImageRef.parse(f"{registry.address}/doctor/python:{version}")
    with RegistryClient(insecure=True) as client:
        cdesc = Descriptor(DOCKER_CONFIG, "sha256:" + hashlib.sha256(config).hexdigest(), len(config))
        ldesc = Descriptor(DOCKER_LAYER_GZIP, "sha256:" + hashlib.sha256(layer).hexdigest(), len(layer))
        client.upload_blob(ref, cdesc.digest, config)
        client.upload_blob(ref, ldesc.digest, layer)
        client.put_manifest(ref, build_manifest(cdesc, [ldesc], media_type=DOCKER_MANIFEST), DOCKER_MANIFEST)
    return str(ref)


def test_doctor_base_image_with_another_python_fails(term, registry):
    image = _push_image_with_python(registry, "3.9")
    code, doc = term.json("doctor", "--backend", "docker")  # settings from the project file this time
    assert code == 1 and _checks(doc)["registry"]["status"] == "FAIL"
    (term.cwd / "fairing.toml").write_text(f'registry = "{registry.address}/team"\nbase_image = "{image}"\n')
    code, doc = term.json("doctor", "--backend", "docker")
    check = _checks(doc)["base image Python"]
    assert code == 1 and check["status"] == "FAIL", doc
    assert "has Python 3.9; this machine runs 3.11" in check["detail"]
    assert "python:3.11-slim" in check["fix"]


def test_config_shows_each_setting_and_where_it_came_from(term, workdir):
    code, out = term.run("config")
    assert code == 0, out
    assert "no settings" in out and "settings files: none" in out
    (workdir / "fairing.toml").write_text('backend = "docker"\nregistry = "localhost:5000/team"\n'
                                          'insecure_registries = ["localhost:5000"]\n')
    code, out = term.run("config", env={"FAIRING_REGISTRY": "r.example.com/ml"})
    assert code == 0, out
    toml = str(workdir / "fairing.toml")
    assert f"backend             = docker  ({toml})" in out
    assert "registry            = r.example.com/ml  (FAIRING_REGISTRY)" in out  # the environment wins
    assert f"insecure_registries = localhost:5000  ({toml})" in out
    assert f"settings files: {toml}" in out
    proc = term.piped("config", "--output", "json")
    doc = json.loads(proc.stdout)
    assert doc["settings"]["insecure_registries"] == {"value": ["localhost:5000"], "source": toml}
    assert doc["files"] == [toml]


@pytest.mark.parametrize("name, text, expected", [
    ("fairing.toml", 'regsitry = "localhost:5000"\n', "Unknown setting 'regsitry'"),
    ("fairing.toml", 'registry = "localhost:5000\n', "is not valid TOML"),
    ("pyproject.toml", '[tool.fairing]\nbackend = "kubernets"\n', "Did you mean 'kubernetes'?"),
])
@pytest.mark.parametrize("command", [["config"], ["doctor"], ["run", "job.py"], ["run", "job.py", "--backend", "local"]])
def test_settings_file_error_is_one_line(term, workdir, name, text, expected, command):
    (workdir / "job.py").write_text("print('never runs')\n")
    (workdir / name).write_text(text)
    code, out = term.run(*command)  # in the terminal: the one line, wrapped at its width
    assert code == 2, out
    assert out.startswith("fairing: error: ") and out.count("fairing:") == 1, out
    assert "Traceback" not in out and "never runs" not in out
    proc = term.piped(*command)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fairing: error: "), proc.stderr
    assert expected in lines[0] and str(workdir / name) in lines[0]


def test_verbose_shows_the_library_diagnostics(term, token_registry):
    env = {"FAIRING_REGISTRY": f"{token_registry.address}/team"}
    quiet = term.piped("doctor", "--backend", "docker")
    assert "fairing.images" not in quiet.stderr and "fairing.doctor" not in quiet.stderr
    code, out = term.run("-v", "doctor", "--backend", "docker", env=env)
    assert "fairing: fairing.images.registry.tokens: fetching a token for " + token_registry.address in out, out
    assert "fairing.doctor:" not in out  # -v: diagnostics, not the debug trace
    code, out = term.run("-vv", "doctor", "--backend", "docker", env=env)
    assert "fairing: fairing.doctor: doctor: registry: " in out, out
    assert f"fairing: fairing.images.registry.transport: {token_registry.address} (loopback) answers plain HTTP" in out


def test_doctor_kubeconfig_pointing_at_a_closed_port_fails_fast(term, workdir):
    import time

    port = _closed_port()
    (workdir / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "team"}}]}))
    started = time.monotonic()
    proc = term.piped("doctor", "--output", "json", "--backend", "kubernetes", "--kubeconfig",
                      str(workdir / "kubeconfig"))
    assert time.monotonic() - started < 60
    checks = _checks(json.loads(proc.stdout))
    assert proc.returncode == 1
    check = checks["kubeconfig and context"]
    assert check["status"] == "FAIL" and f"127.0.0.1:{port} does not answer" in check["detail"], check
    assert "Connection refused" in check["detail"] and "kubectl cluster-info" in check["fix"]
    assert "not-a-real-token" not in proc.stdout + proc.stderr
    assert checks["identity and permissions"]["status"] == "SKIP"
