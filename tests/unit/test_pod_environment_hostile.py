"""What a notebook pod hands fairing, when it is wrong: the service account's namespace file,
the in-cluster connection, and a Docker config mounted at ``DOCKER_CONFIG``.

Each case gives a :class:`~fairing.ConfigurationError` saying what and how to fix it, and
no secret in the message. (The working case is tested from a real pod:
tests/e2e/test_notebook_pod.py.)"""

import base64
import json
import os
import socket

import pytest

from fairing import ConfigurationError, environment
from fairing.environment import Environment
from fairing.images.auth import Credential, DockerConfigCredentials
from fairing.kube.client import pod_namespace
from fairing.kube.secrets import registry_secret

SECRET = "s3cret-" + "x" * 12


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path, **values) -> Environment:
    return Environment(home=tmp_path / "home", service_account_dir=tmp_path / "sa", **values)


def _pod(tmp_path, namespace: "str | bytes" = "team-a", **service) -> Environment:
    sa = tmp_path / "sa"
    sa.mkdir(exist_ok=True)
    (sa / "token").write_text("not-a-real-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    if namespace is not None:
        (sa / "namespace").write_bytes(namespace if isinstance(namespace, bytes) else namespace.encode())
    return _env(tmp_path, kubernetes_service=service or {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                                         "KUBERNETES_SERVICE_PORT": str(_closed_port())})


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- the namespace -----------------------------------------------------------------------------

@pytest.mark.parametrize("content, what", [
    (b"", "empty"), (b"\n  \n", "empty"), (b"Team_A", "not a namespace name"), (b"a/../b", "not a namespace name"),
    (b"\xff\xfe\x00n\x00s", "not a namespace name"), (b"a" * 64, "not a namespace name"),
    (b"x" * 10_000_000, "not a namespace name"),
])
def test_a_namespace_file_that_is_no_namespace_is_a_typed_error(tmp_path, content, what):
    env = _pod(tmp_path, content)
    with pytest.raises(ConfigurationError, match=f"namespace file .* is {what}.*FAIRING_NAMESPACE") as info:
        pod_namespace(env)
    assert len(str(info.value)) < 600  # the file's content is not quoted


def test_a_namespace_file_that_is_a_directory_is_a_typed_error(tmp_path):
    (tmp_path / "sa" / "namespace").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        pod_namespace(_env(tmp_path))


def test_a_bad_namespace_file_does_not_matter_when_the_namespace_is_given(tmp_path):
    from fairing.kube import KubeClient

    env = _pod(tmp_path, b"")
    assert KubeClient(environment=env, namespace="given").namespace == "given"
    with pytest.raises(ConfigurationError, match="is empty"):
        KubeClient(environment=env)


def test_namespace_precedence_below_the_settings(tmp_path):
    """argument > (settings, resolved by the facade) > the pod's > the kubeconfig context's > default."""
    from fairing.kube import KubeClient

    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{_closed_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "from-context"}}]}))
    outside = _env(tmp_path, kubeconfig_env=str(kubeconfig))
    assert KubeClient(environment=outside).namespace == "from-context"
    inside = _pod(tmp_path, "from-pod")
    assert KubeClient(environment=inside).namespace == "from-pod"
    assert KubeClient(environment=inside, namespace="from-argument").namespace == "from-argument"
    with_kubeconfig = Environment(**{**inside.__dict__, "kubeconfig_env": str(kubeconfig)})
    assert KubeClient(environment=with_kubeconfig).namespace == "from-pod"  # the pod's before the context's
    (tmp_path / "sa" / "namespace").unlink()
    assert KubeClient(environment=_pod(tmp_path, None)).namespace == "default"


def test_the_facade_passes_fairing_namespace_before_the_pods(tmp_path):
    from fairing.backends import get_backend

    env = _pod(tmp_path, "from-pod")
    env = Environment(**{**env.__dict__, "fairing_env": {"FAIRING_NAMESPACE": "from-env"},
                         "xdg_config_home": tmp_path / "cfg"})
    os.chdir(tmp_path)
    with environment.use(env):
        backend = get_backend("kubeflow", registry="localhost:5000", base_image="python:3.11")
        assert backend.deployer.kube.namespace == "from-env"
        backend = get_backend("kubeflow", registry="localhost:5000", base_image="python:3.11", namespace="arg")
        assert backend.deployer.kube.namespace == "arg"


# -- the in-cluster connection -------------------------------------------------------------------

def test_in_a_pod_fairing_uses_the_service_accounts_token_and_ca(tmp_path):
    from fairing.kube import KubeClient

    client = KubeClient(environment=_pod(tmp_path))
    configuration = client.api_client.configuration
    assert configuration.host.startswith("https://127.0.0.1:")
    assert configuration.ssl_ca_cert == str(tmp_path / "sa" / "ca.crt")
    # the header the client sends (the key it keeps the token under differs between client versions)
    headers = {a["key"]: a["value"] for a in configuration.auth_settings().values() if a.get("in") == "header"}
    assert headers["authorization"].lower() == "bearer not-a-real-token"


@pytest.mark.parametrize("service", [{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, {"KUBERNETES_SERVICE_HOST": "",
                                                                               "KUBERNETES_SERVICE_PORT": ""}])
def test_a_pod_without_the_api_servers_address_is_a_typed_error(tmp_path, service):
    from fairing.kube import KubeClient

    with pytest.raises(ConfigurationError, match="cannot use it.*KUBERNETES_SERVICE_HOST/PORT"):
        KubeClient(environment=_pod(tmp_path, **service))


@pytest.mark.parametrize("host, port", [("garbage host/x", "443"), ("10.0.0.1\nX-Injected: 1", "443"),
                                        ("[::1]", "443"), ("10.0.0.1", "https"), ("10.0.0.1", "70000"),
                                        ("10.0.0.1", "\u0661\u0662")])
def test_a_garbage_api_server_address_is_a_typed_error_at_once(tmp_path, host, port):
    from fairing.kube import KubeClient

    with pytest.raises(ConfigurationError, match="KUBERNETES_SERVICE_HOST=.*not the API server's address"):
        KubeClient(environment=_pod(tmp_path, KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT=port))


@pytest.mark.parametrize("host", ["fd00::1", "::1", "kubernetes.default.svc", "10.96.0.1"])
def test_an_ipv6_or_named_api_server_is_used_as_given(tmp_path, host):
    from fairing.kube import KubeClient

    client = KubeClient(environment=_pod(tmp_path, KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT="6443"))
    assert client.api_client.configuration.host == (f"https://[{host}]:6443" if ":" in host
                                                    else f"https://{host}:6443")


def test_a_pod_without_its_ca_is_a_typed_error(tmp_path):
    from fairing.kube import KubeClient

    env = _pod(tmp_path)
    (tmp_path / "sa" / "ca.crt").unlink()
    with pytest.raises(ConfigurationError, match="cannot use it") as info:
        KubeClient(environment=env)
    assert "not-a-real-token" not in str(info.value)


# -- the Docker config mounted at DOCKER_CONFIG ----------------------------------------------------

def _mounted_secret(directory, config: "dict | bytes"):
    """A Secret volume as the kubelet writes it: config.json -> ..data/config.json -> ..<ts>/config.json."""
    stamp = directory / "..2026_12_08_00_00_00.1"
    stamp.mkdir(parents=True)
    (stamp / "config.json").write_bytes(config if isinstance(config, bytes) else json.dumps(config).encode())
    (directory / "..data").symlink_to(stamp.name)
    (directory / "config.json").symlink_to("..data/config.json")
    return directory


def test_a_secret_mounted_at_docker_config_serves_the_builder(tmp_path):
    mounted = _mounted_secret(tmp_path / "mnt", {"auths": {"reg.example:5000": _auth("robot", SECRET)}})
    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        assert DockerConfigCredentials()("reg.example:5000") == Credential("robot", SECRET)


def test_a_docker_config_linking_out_of_its_directory_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "config.json"
    outside.parent.mkdir()
    outside.write_text(json.dumps({"auths": {"reg.example": _auth("robot", SECRET)}}))
    mounted = tmp_path / "mnt"
    mounted.mkdir()
    (mounted / "config.json").symlink_to(outside)
    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        with pytest.raises(ConfigurationError, match="is a link to a file outside") as info:
            DockerConfigCredentials()("reg.example")
    assert SECRET not in str(info.value)


def test_a_docker_config_that_is_a_link_loop_or_a_device_is_refused(tmp_path):
    mounted = tmp_path / "mnt"
    mounted.mkdir()
    (mounted / "config.json").symlink_to("config.json")
    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        with pytest.raises(ConfigurationError, match="Cannot read the Docker config"):
            DockerConfigCredentials()("reg.example")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "config.json")  # would block a plain read forever
    with environment.use(_env(tmp_path, docker_config_dir=fifo)):
        with pytest.raises(ConfigurationError, match="not a regular file"):
            DockerConfigCredentials()("reg.example")


@pytest.mark.parametrize("content, message", [
    (b'{"auths": {"reg.example": {"auth": "' + SECRET.encode() + b'"', "not valid JSON"),
    (b"\xff\xfe{\x00}\x00", "not UTF-8 text"),
    (b"[1, 2]", "must hold a JSON object"),
    (b'{"auths": {"reg.example": {"auth": "' + b"A" * (2 << 20) + b'"}}}', "larger than 1 MiB"),
])
def test_a_corrupt_or_huge_docker_config_is_a_typed_error_that_quotes_nothing(tmp_path, content, message):
    mounted = _mounted_secret(tmp_path / "mnt", content)
    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        with pytest.raises(ConfigurationError, match=message) as info:
            DockerConfigCredentials()("reg.example")
    assert SECRET not in str(info.value) and "AAAA" not in str(info.value)


def test_credentials_for_another_registry_never_reach_the_jobs_pull_secret(tmp_path):
    """The pull secret holds the image's registry only: none when the config knows only others
    (and then no Secret is written at all)."""
    mounted = _mounted_secret(tmp_path / "mnt", {"auths": {"other.example": _auth("robot", SECRET),
                                                         "reg.example:5000": _auth("puller", "pull-pw")}})
    written = []

    def kube():
        written.append("made")
        raise AssertionError("no Secret should be written")

    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        assert registry_secret(kube, "job-pull", DockerConfigCredentials(), ["third.example"]) is None
        from fairing.images.auth import docker_config_json

        config = json.loads(docker_config_json(DockerConfigCredentials(), ["reg.example:5000"]))
    assert written == []
    assert set(config["auths"]) == {"reg.example:5000"} and SECRET not in json.dumps(config)


# -- a notebook pod's file systems ----------------------------------------------------------------

def test_a_layer_made_on_another_file_system_than_the_cache_is_kept(tmp_path):
    """A notebook pod's /tmp is the container's, its home (the cache) a volume: a rename
    between them fails with EXDEV. /dev/shm is another file system here, as /tmp is there."""
    import tempfile

    from fairing.images.layers import Layer, LocalCache

    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        made = os.path.join(other, "deps.tar.gz")
        with open(made, "wb") as fh:
            fh.write(b"layer bytes")
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        cache = LocalCache(tmp_path / "cache")
        kept = cache.put_layer("k" * 64, Layer(path=__import__("pathlib").Path(made), digest="sha256:d",
                                                diff_id="sha256:i", size=11))
        assert kept.path.read_bytes() == b"layer bytes" and not os.path.exists(made)
        assert cache.get_layer("k" * 64).path == kept.path
        assert sorted(p.name for p in kept.path.parent.iterdir()) == [f"{'k' * 64}.json", f"{'k' * 64}.tar.gz"]


def test_concurrent_puts_of_one_layer_across_file_systems_all_succeed_whole(tmp_path):
    """Two builds in one process (threads of a notebook) making the same requirements layer
    on /dev/shm put it into one cache at once: each put succeeds, the cached file is whole,
    and no temporary file is left beside it."""
    import tempfile
    import threading
    from pathlib import Path

    from fairing.images.layers import Layer, LocalCache

    payload = os.urandom(8 << 20)
    cache = LocalCache(tmp_path / "cache")
    key = "c" * 64
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        sources = []
        for i in range(6):
            sources.append(Path(other) / f"deps{i}.tar.gz")
            sources[-1].write_bytes(payload)
        start, errors = threading.Barrier(len(sources)), []

        def put(src: Path) -> None:
            start.wait()
            try:
                cache.put_layer(key, Layer(path=src, digest="sha256:d", diff_id="sha256:i", size=len(payload)))
            except Exception as exc:  # what the test reports
                errors.append(exc)

        threads = [threading.Thread(target=put, args=(s,)) for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert cache.get_layer(key).path.read_bytes() == payload
        assert sorted(p.name for p in cache.layers_dir().iterdir()) == [f"{key}.json", f"{key}.tar.gz"]
        assert list(Path(other).iterdir()) == []


@pytest.mark.parametrize("where", ["credHelpers", "credsStore"])
def test_a_credential_helper_named_with_a_path_is_not_run(tmp_path, monkeypatch, where):
    """A helper is 'docker-credential-<name>' found on PATH, as the Docker CLI runs it. A name
    with a '/' would make that a path (relative to the working directory): a config could then
    run any program. It is refused, and nothing runs."""
    ran = tmp_path / "ran"
    evil = tmp_path / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {ran}\necho '{{\"Username\": \"u\", \"Secret\": \"s\"}}'\n")
    evil.chmod(0o755)
    (tmp_path / "docker-credential-").mkdir()
    monkeypatch.chdir(tmp_path)
    name = "/../evil"
    config = {"credHelpers": {"reg.example": name}} if where == "credHelpers" else {"credsStore": name}
    mounted = _mounted_secret(tmp_path / "mnt", config)
    with environment.use(_env(tmp_path, docker_config_dir=mounted)):
        with pytest.raises(ConfigurationError, match="credential helper"):
            DockerConfigCredentials()("reg.example")
    assert not ran.exists()


@pytest.mark.parametrize("value", ["Bad_NS", "a/../b", "team-a\nteam-b", "x" * 64, "-a", "ns\u00e9"])
def test_an_invalid_fairing_namespace_is_a_typed_error_before_connecting(tmp_path, value):
    """FAIRING_NAMESPACE (or namespace=, or the setting) that is no namespace name: refused
    before any request, naming where it came from, also in a pod whose own namespace is fine."""
    import dataclasses

    from fairing.kube import KubeClient

    with environment.use(dataclasses.replace(_pod(tmp_path), fairing_env={"FAIRING_NAMESPACE": value})):
        from fairing import settings

        with pytest.raises(ConfigurationError, match="FAIRING_NAMESPACE or the namespace setting.*not a namespace"):
            KubeClient(namespace=settings.resolve().namespace)


def test_a_put_killed_mid_copy_leaves_a_temporary_file_the_next_put_removes(tmp_path):
    """SIGKILL (an OOM kill of the notebook's kernel) during a put leaves '.tmp-*' beside the
    layers, which the size-bound pruning does not count; the next put removes it once stale,
    and leaves a fresh one (another put under way) alone."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from fairing.images.layers import Layer, LocalCache

    cache = LocalCache(tmp_path / "cache")
    d = cache.layers_dir()
    # a real put across file systems (/dev/shm to the cache), killed while it copies: a copy
    # that never ends, as its source is a FIFO nobody closes
    import tempfile

    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    fifo = shm / "endless"
    os.mkfifo(fifo)
    code = ("from pathlib import Path; from fairing.images import layers as L\n"
            f"L.LocalCache({str(tmp_path / 'cache')!r}).put_layer('k' * 64, L.Layer(path=Path({str(fifo)!r}), "
            "digest='sha256:d', diff_id='sha256:i', size=1))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    with open(fifo, "wb") as writer:
        writer.write(b"x" * 65536)
        writer.flush()
        deadline = time.time() + 30
        while not list(d.glob(".tmp-*")) and time.time() < deadline:
            time.sleep(0.05)
        proc.kill()
    proc.wait()
    fifo.unlink()
    shm.rmdir()
    left = list(d.glob(".tmp-*"))
    assert len(left) == 1
    fresh = d / ".tmp-fresh"
    fresh.write_bytes(b"under way")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(left[0], (day_ago, day_ago))
    made = tmp_path / "deps.tar.gz"
    made.write_bytes(b"layer")
    cache.put_layer("n" * 64, Layer(path=made, digest="sha256:e", diff_id="sha256:j", size=5))
    assert not left[0].exists() and fresh.exists()
