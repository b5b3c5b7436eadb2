"""The environment is read in one place and injected; backends are made from it (no cluster needed:
a kubeconfig pointing at a closed loopback port is enough to construct them)."""

import base64
import json
import socket
from pathlib import Path

import pytest

import fairing
from fairing import ConfigurationError, DeployError, environment
from fairing.api import in_job, preprocessor_for
from fairing.artifacts import RegistryImage
from fairing.backends import get_backend
from fairing.backends.kubernetes import choose_builder, kubeflow_backend, kubernetes_backend
from fairing.builders.append import AppendBuilder
from fairing.builders.cluster import ClusterBuilder
from fairing.builders.local import LocalBuilder
from fairing.environment import Environment
from fairing.images.auth import Credential, DockerConfigCredentials


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def kubeconfig(tmp_path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{_closed_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}],
    }))
    return path


def _env(tmp_path, **values) -> Environment:
    return Environment(home=tmp_path / "home", service_account_dir=tmp_path / "sa",
                       docker_host="unix:///nonexistent/docker.sock", **values)


def test_from_os_reads_every_variable_once(tmp_path):
    env = Environment.from_os({"HOME": str(tmp_path), "KUBECONFIG": f"/a/kc{':'}/b/kc", "DOCKER_HOST": "tcp://h:2375",
                               "DOCKER_CONFIG": "/etc/dock", "XDG_CACHE_HOME": "/var/cache", "FAIRING_RUNTIME": "1"})
    assert env.kubeconfig == Path("/a/kc") and env.docker_endpoint == "tcp://h:2375"
    assert env.docker_config == Path("/etc/dock/config.json") and env.cache_dir == Path("/var/cache/fairing")
    assert env.in_job and env.docker_env == {"DOCKER_HOST": "tcp://h:2375", "DOCKER_CONFIG": "/etc/dock"}
    bare = Environment.from_os({"HOME": str(tmp_path)})
    assert bare.kubeconfig == tmp_path / ".kube" / "config" and bare.cache_dir == tmp_path / ".cache" / "fairing"
    assert bare.docker_config == tmp_path / ".docker" / "config.json" and not bare.in_job
    assert bare.docker_endpoint == "unix:///var/run/docker.sock"


def test_injected_environment_reaches_credentials_cache_and_in_job(tmp_path):
    docker_dir = tmp_path / "dock"
    docker_dir.mkdir()
    auth = base64.b64encode(b"robot:pw").decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {"reg.example": {"auth": auth}}}))
    injected = _env(tmp_path, docker_config_dir=docker_dir, xdg_cache_home=tmp_path / "xdg", runtime="1")
    lookup = DockerConfigCredentials()  # made outside: reads whatever environment is in force when asked
    with environment.use(injected):
        assert lookup("reg.example") == Credential("robot", "pw")
        assert LocalBuilder().cache_dir == tmp_path / "xdg" / "fairing" / "local-requirements"
        assert in_job() and environment.current() is injected
    assert environment.current() is not injected


def test_kube_client_reads_the_injected_kubeconfig(tmp_path, kubeconfig):
    from fairing.kube import KubeClient

    with pytest.raises(ConfigurationError, match="No kubeconfig at .* and not running inside a cluster"):
        KubeClient(environment=_env(tmp_path))
    client = KubeClient(environment=_env(tmp_path, kubeconfig_env=str(kubeconfig)))
    assert client.namespace == "team-a"


def test_choose_builder_follows_the_environment(tmp_path):
    outside = _env(tmp_path)  # no Docker engine answers, not in a cluster
    chosen = choose_builder(base_image="python:3.11", registry="localhost:5000", environment=outside)
    assert isinstance(chosen, AppendBuilder)
    with pytest.raises(ConfigurationError, match="A Dockerfile build needs a Docker engine here or a cluster"):
        choose_builder(base_image="python:3.11", registry="localhost:5000", dockerfile="FROM x\n",
                       environment=outside)
    (tmp_path / "sa").mkdir()
    (tmp_path / "sa" / "token").write_text("t")
    inside = choose_builder(base_image="python:3.11", registry="localhost:5000", dockerfile="FROM x\n",
                            environment=_env(tmp_path))
    assert isinstance(inside, ClusterBuilder)
    with pytest.raises(ConfigurationError, match="needs an image registry and a base image.*or give your own builder="):
        choose_builder(base_image="python:3.11", registry=None, environment=outside)


def test_kubernetes_backend_uses_the_builder_it_is_given(kubeconfig):
    builder = AppendBuilder("python:3.11", "localhost:5000/team")
    backend = kubernetes_backend(builder=builder, kubeconfig=str(kubeconfig))
    assert backend.builder is builder and backend.deployer.kube.namespace == "team-a"
    named = get_backend("kubernetes", builder=builder, kubeconfig=str(kubeconfig))
    assert named.builder is builder
    with pytest.raises(ConfigurationError, match="set them on that builder instead"):
        kubernetes_backend(builder=builder, registry="localhost:5000", kubeconfig=str(kubeconfig))


def test_kubeflow_backend_takes_the_pods_namespace(tmp_path, kubeconfig):
    """The order only (the pod's namespace before the kubeconfig context's): the in-cluster
    connection itself is tested from a real pod, tests/e2e/test_notebook_pod.py."""
    (tmp_path / "sa").mkdir()
    (tmp_path / "sa" / "namespace").write_text("kubeflow-user\n")
    with environment.use(_env(tmp_path, kubeconfig_env=str(kubeconfig))):
        backend = kubeflow_backend(builder=AppendBuilder("python:3.11", "localhost:5000"))
    assert backend.deployer.kube.namespace == "kubeflow-user"
    assert backend.deployer.mutators[0]({"containers": []})["serviceAccountName"] == "default-editor"


class _PinnedBuilder:
    """A builder of our own: returns an image it says was built, and records the call."""

    produces = RegistryImage

    def __init__(self):
        self.built = 0

    def build(self, context, *, on_event=None):
        self.built += 1
        return RegistryImage.pin("localhost:5000/team/app:v1", "sha256:" + "c" * 64)


def test_submit_to_kubernetes_with_a_builder_uses_that_builder(tmp_path, kubeconfig):
    script = tmp_path / "job.py"
    script.write_text("print(1)\n")
    builder = _PinnedBuilder()
    # no registry or base image given: the builder is the user's, so none is needed
    # (a job's first call writes the Secret with its result key)
    with pytest.raises(DeployError, match="Could not reach the Kubernetes API server to write the secret .*-result-key"):
        fairing.submit(preprocessor_for(str(script)), backend="kubernetes", builder=builder,
                       kubeconfig=str(kubeconfig), pull_credentials=False, on_event=lambda e: None)
    assert builder.built == 1
