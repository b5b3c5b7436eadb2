"""cpu=, memory=, gpus=: Kubernetes' quantity rules, checked when given, and one meaning on every
backend's manifests; deployer names checked at construction; None means "not given"; a
misspelled option suggests the call's own closest option."""

from __future__ import annotations

import warnings

import pytest

import fairing
from fairing import ConfigurationError
from fairing.deployers import mutators as m
from fairing.deployers.docker import DockerDeployer
from fairing.deployers.job import JobDeployer
from fairing.deployers.local import LocalDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.deployers.training import PyTorchJobDeployer, TFJobDeployer
from fairing.deployers.trainjob import TrainJobDeployer
from fairing.resources import Resources, check_cpu, check_gpus, check_memory

IMAGE = "localhost:5000/x@sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path, monkeypatch):
    """A cluster backend is made with a kubeconfig; nothing here talks to its (closed) port."""
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                    "contexts: [{name: c, context: {cluster: c, user: u, namespace: ns}}]\n"
                    "users: [{name: u, user: {token: t}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(path))
ASKED = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}


@pytest.mark.parametrize("value, hint", [
    ("4GB", "Did you mean 4G or 4Gi?"), ("4gb", "Did you mean 4G or 4Gi?"), ("4g", "Did you mean 4G or 4Gi?"),
    ("512m", "Did you mean 512M or 512Mi?"), ("2GiB", "Did you mean 2Gi?"), ("1.5 Gi", ""), ("lots", ""),
    ("", ""), ("-1Gi", ""), ("0", "too little"), (1024, "too little"), (True, "takes bytes"), (2.5e9, "takes bytes"),
    (["4Gi"], "takes bytes"), ("4Gi\n--privileged", ""), ("1e", ""), ("Gi", ""),
])
def test_a_memory_quantity_kubernetes_would_refuse_is_refused_naming_what_was_meant(value, hint):
    with pytest.raises(ConfigurationError) as exc:
        check_memory(value)
    assert hint in str(exc.value)
    assert "memory=" in str(exc.value)


@pytest.mark.parametrize("value", ["4Gi", "4G", "512Mi", "1e9", "1.5Gi", 2 ** 30, " 4Gi ", "100M", "4096Ki"])
def test_memory_quantities_kubernetes_takes(value):
    assert check_memory(value) == (value.strip() if isinstance(value, str) else str(value))


@pytest.mark.parametrize("value", [0, -1, "0", "two", "1.5.0", "500mm", "0.0001", float("nan"), float("inf"), True,
                                   None.__class__, "1Gi"[:0]])
def test_bad_cpu_quantities(value):
    with pytest.raises(ConfigurationError, match="cpu"):
        check_cpu(value)


@pytest.mark.parametrize("value, cores", [(2, 2.0), (0.5, 0.5), ("500m", 0.5), ("1.5", 1.5), ("1e0", 1.0)])
def test_cpu_quantities(value, cores):
    assert Resources.of(cpu=value).cores == cores


@pytest.mark.parametrize("value", [-1, 1.5, "two", True, "all"])
def test_gpus_is_a_whole_count(value):
    with pytest.raises(ConfigurationError, match="whole number of GPUs"):
        check_gpus(value)


def test_every_kubernetes_workload_gets_requests_and_limits_on_its_training_containers():
    job = JobDeployer(namespace="ns", cpu="2", memory="4Gi", gpus=1).manifest(IMAGE, "j")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"] == ASKED
    tf = TFJobDeployer({"Chief": 1, "Worker": 2}, cpu="2", memory="4Gi", gpus=1).manifest(IMAGE, "t")
    for replica in tf["spec"]["tfReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["resources"] == ASKED
    pt = PyTorchJobDeployer({"Master": 1, "Worker": 1}, cpu="2", memory="4Gi", gpus=1).manifest(IMAGE, "p")
    for replica in pt["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["resources"] == ASKED
    tj = TrainJobDeployer(num_nodes=2, cpu="2", memory="4Gi", gpus=1).manifest(IMAGE, "tj")
    assert tj["spec"]["trainer"]["resourcesPerNode"] == ASKED
    deployment, _service = ServingDeployer(cpu="2", memory="4Gi", gpus=1).manifests(IMAGE, "s")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] == ASKED


def test_a_mutator_still_has_the_last_word_and_nothing_asked_sets_nothing():
    job = JobDeployer(cpu="2", mutators=[m.resources(cpu="3")]).manifest(IMAGE, "j")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "3"
    assert "resources" not in JobDeployer().manifest(IMAGE, "j")["spec"]["template"]["spec"]["containers"][0]


def test_docker_and_local_read_the_same_quantities():
    d = DockerDeployer(cpu="500m", memory="1Gi", gpus=0)
    assert (d.nano_cpus, d.memory, d.gpus) == (500_000_000, 2 ** 30, None)
    assert DockerDeployer(gpus="all").gpus == "all"  # the engine's own "every GPU"
    with pytest.raises(ConfigurationError, match="Did you mean 512M or 512Mi"):
        DockerDeployer(memory="512m")  # Docker's own spelling means 0.512 bytes in Kubernetes' units
    local = LocalDeployer(cpu=1, memory="1Gi", gpus=0)
    assert local.resources == Resources("1", "1Gi", 0) and local.env["CUDA_VISIBLE_DEVICES"] == ""
    assert LocalDeployer(gpus=2).env["CUDA_VISIBLE_DEVICES"] == "0,1"


@pytest.mark.parametrize("make", [
    lambda: fairing.TrainJob(print, memory="4GB"),
    lambda: fairing.TrainJob(print, backend="kubernetes", memory="4GB"),
    lambda: fairing.TrainJob(print, backend="docker", memory="4GB"),
    lambda: fairing.train(memory="4GB")(print),
    lambda: fairing.get_backend("kubernetes", memory="4GB", registry="r.example/x", base_image="python:3.11"),
    lambda: fairing.config.set_backend("kubernetes", memory="4GB"),
])
def test_a_bad_quantity_is_refused_where_it_is_given_before_any_build(make):
    with pytest.raises(ConfigurationError, match="Did you mean 4G or 4Gi"):
        make()


def test_the_settings_give_resources_and_check_them(tmp_path, monkeypatch):
    from fairing.settings import resolve

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fairing.toml").write_text('cpu = "500m"\nmemory = "2Gi"\ngpus = 1\n')
    settings = resolve()
    assert (settings.cpu, settings.memory, settings.gpus) == ("500m", "2Gi", 1)
    backend = fairing.get_backend("kubernetes", registry="r.example/x", base_image="python:3.11")
    assert backend.deployer.resources == Resources("500m", "2Gi", 1)
    assert fairing.get_backend("local", cpu="1").deployer.resources == Resources("1", "2Gi", 1)  # the call's wins
    monkeypatch.setenv("FAIRING_MEMORY", "3GB")
    with pytest.raises(ConfigurationError, match="FAIRING_MEMORY.*Did you mean 3G or 3Gi"):
        resolve()
    monkeypatch.delenv("FAIRING_MEMORY")
    (tmp_path / "fairing.toml").write_text("gpus = -2\n")
    with pytest.raises(ConfigurationError, match="fairing.toml.*whole number of GPUs"):
        resolve()


def test_a_deployer_object_keeps_its_own_resources_over_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fairing.toml").write_text('memory = "2Gi"\n')
    mine = TrainJobDeployer(num_nodes=2)
    backend = fairing.get_backend("kubernetes", deployer=mine, registry="r.example/x", base_image="python:3.11")
    assert backend.deployer.resources == Resources()


# -- deployer and builder names: work, or a ConfigurationError at construction ---------------------


def test_the_readme_s_trainjob_deployer_name_works_on_every_cluster_backend(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    job = fairing.TrainJob(str(script), backend="kubernetes", deployer="trainjob", registry="r.example/x",
                           base_image="python:3.11", cpu="1")
    backend = job._backend.make(builder=job.builder, deployer=job.deployer)
    assert isinstance(backend.deployer, TrainJobDeployer) and backend.deployer.resources.cpu == "1"
    for name, klass in (("job", JobDeployer), ("tfjob", TFJobDeployer), ("pytorchjob", PyTorchJobDeployer)):
        made = fairing.get_backend("kubeflow", deployer=name, registry="r.example/x", base_image="python:3.11")
        assert type(made.deployer) is klass


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "kubernetes", "deployer": "trainjb"}, "Unknown deployer 'trainjb'. Did you mean 'trainjob'?"),
    ({"backend": "kubernetes", "deployer": "kserve"}, "does not run a training job"),
    ({"deployer": "trainjob"}, "give backend='kubernetes'"),
    ({"backend": "docker", "deployer": "job"}, "cannot be given by name to the docker backend"),
    ({"backend": "kubernetes", "builder": "apend"}, "Unknown builder 'apend'. Did you mean 'append'?"),
    ({"backend": "local", "builder": "docker"}, "cannot be given by name to the local backend"),
    ({"backend": "kubernetes", "deployer": 42}, "deployer"),
])
def test_a_part_named_wrongly_is_refused_when_the_job_is_made(kwargs, message):
    import re

    if kwargs.get("backend") == "kubernetes":
        kwargs = {**kwargs, "registry": "r.example/x", "base_image": "python:3.11"}
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        fairing.TrainJob(print, **kwargs)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        fairing.train(**kwargs)


def test_the_backend_s_own_part_by_name_is_what_it_uses_anyway():
    assert type(fairing.get_backend("local", deployer="local").deployer) is LocalDeployer


# -- None means "not given" ------------------------------------------------------------------------


def test_kubeflow_fairing_s_none_arguments_leave_the_settings_to_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fairing.toml").write_text('registry = "r.example/team"\nbase_image = "python:3.11-slim"\n')
    (tmp_path / "train.py").write_text("print(1)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        job = fairing.TrainJob("train.py", backend="kubernetes", base_docker_image=None, docker_registry=None,
                               input_files=None, outputs=None, args=None, cpu=None, deployer=None)
    backend = job._backend.make()
    assert backend.builder.registry == "r.example/team"
    fit = fairing.train(backend="local", cleanup=None, outputs=None, input_files=None, memory=None)(print)
    assert fit.cleanup == "always" and fit.outputs == []
    assert fairing.get_backend("kubernetes", registry=None, base_image=None, namespace=None).builder.registry == \
        "r.example/team"


# -- a misspelled option names the call's closest -------------------------------------------------


@pytest.mark.parametrize("make, wanted", [
    (lambda: fairing.train(timout=600), "Did you mean 'timeout'?"),
    (lambda: fairing.train(backend="kubernetes", timout=600), "Did you mean 'timeout'?"),
    (lambda: fairing.TrainJob("train.py", input_file=["data/"]), "Did you mean 'input_files'?"),
    (lambda: fairing.TrainJob("train.py", requirement="r.txt"), "Did you mean 'requirements'?"),
    (lambda: fairing.TrainJob("train.py", memroy="1Gi"), "Did you mean 'memory'?"),
    (lambda: fairing.train(gpu=1), "Did you mean 'gpus'?"),
])
def test_a_misspelled_option_suggests_the_closest_of_that_call(workdir, make, wanted):
    (workdir / "train.py").write_text("print(1)\n")
    with pytest.raises(ConfigurationError) as exc:
        make()
    assert wanted in str(exc.value)


# Attacks on the quantity checks (issue 28): each once crashed untyped or was passed to the API server.
@pytest.mark.parametrize("check, value, says", [
    (check_memory, "99999999Ei", "more memory than Kubernetes can express"),  # was ValueError: int('i')
    (check_memory, "8Ei", "more memory than Kubernetes can express"),         # 2^63 bytes: beyond int64
    (check_memory, "1e9999999", "not a memory quantity"),                     # was decimal.Overflow
    (check_cpu, "1e9999999", "not a CPU quantity"),
    (check_cpu, "1e400", "more CPU than Kubernetes can express"),
    (check_cpu, 10 ** 30, "more CPU than Kubernetes can express"),
    (check_memory, "４Gi", "not a memory quantity"),  # a full-width digit: \d took it, the API server would not
    (check_cpu, "２", "not a CPU quantity"),
    (check_gpus, "²", "whole number of GPUs"),         # was ValueError: int('²')
    (check_gpus, "１", "whole number of GPUs"),
])
def test_hostile_quantities_are_typed_errors(check, value, says):
    with pytest.raises(ConfigurationError, match=says) as info:
        check(value)
    assert "Did you mean ４" not in str(info.value)


def test_the_largest_quantities_kubernetes_keeps_are_taken():
    assert check_memory("7Ei") == "7Ei" and Resources.of(memory="7Ei").memory_bytes == 7 * 2 ** 60
    assert check_cpu("1e-3") == "1e-3" and check_memory("1.5Gi") == "1.5Gi"
