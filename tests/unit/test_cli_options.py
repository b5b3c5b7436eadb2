"""How the command line's options become the API's: cpu/memory/gpus the same arguments on every
backend (fairing.resources), env and secrets mutators on a cluster, plain arguments for Docker."""

import click
import pytest

from fairing.cli import _backend_options
from fairing.deployers.mutators import apply


def _spec(options: dict) -> dict:
    return apply({"containers": [{"name": "main"}]}, options["mutators"])


def test_cluster_options_become_arguments_and_mutators():
    options = _backend_options("kubernetes", {"cpu": "2", "memory": "4Gi", "gpus": 1, "env": {"A": "1"},
                                              "secret_env": {"wandb": {"TOKEN": "key"}}, "namespace": "team"})
    assert options["backend"] == "kubernetes" and options["namespace"] == "team"
    assert (options["cpu"], options["memory"], options["gpus"]) == ("2", "4Gi", 1)
    container = _spec(options)["containers"][0]
    assert "resources" not in container  # the deployer sets them (tests/unit/test_resources.py)
    assert container["env"] == [{"name": "A", "value": "1"},
                                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}}]


def test_docker_and_local_take_plain_arguments():
    assert _backend_options("docker", {"cpu": "1", "memory": "1Gi", "env": {"A": "1"}}) == \
        {"backend": "docker", "cpu": "1", "memory": "1Gi", "env": {"A": "1"}}
    assert _backend_options("local", {"cpu": "1", "gpus": 0}) == {"backend": "local", "cpu": "1", "gpus": 0}
    assert _backend_options(None, {"env": {"A": "1"}}) == {"env": {"A": "1"}}  # the backend is the API's choice


def test_a_training_deployer_gets_the_replicas_and_the_mutators():
    options = _backend_options("kubeflow", {"deployer": "tfjob", "replicas": {"Worker": 2}, "cpu": "1"})
    deployer = options["deployer"]
    assert type(deployer).__name__ == "TFJobDeployer" and deployer.replicas == {"Worker": 2}
    assert deployer.resources.cpu == "1" and not deployer.mutators and "mutators" not in options


@pytest.mark.parametrize("backend,given,message", [
    ("local", {"namespace": "ns"}, "--namespace does not apply to the local backend"),
    ("kubernetes", {"memory": "4GB"}, "Did you mean 4G or 4Gi"),
    ("docker", {"cpu": "two"}, "--cpu='two' is not a CPU quantity"),
    ("docker", {"secret_env": {"s": {"A": "k"}}}, "--secret-env does not apply to the docker backend"),
    ("aws", {"registry": "r"}, "--registry does not apply to the aws backend"),
    ("kubernetes", {"replicas": {"Worker": 2}}, "--replicas needs --deployer tfjob"),
    ("docker", {"insecure_registry": True}, "--insecure-registry does not apply to the docker backend"),
])
def test_options_that_do_not_apply_are_usage_errors(backend, given, message):
    with pytest.raises(click.UsageError, match=message):
        _backend_options(backend, given)
