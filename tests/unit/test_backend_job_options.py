"""Each backend says which command-line job options it takes, and the CLI asks it (there is
no second table in the CLI)."""

import pytest

from fairing._names import BACKENDS, CLUSTER_BACKENDS
from fairing._options import JOB_OPTIONS, job_options, job_options_of, load
from fairing.cli import _applies_to

CLUSTER = CLUSTER_BACKENDS


@pytest.mark.parametrize("option, backends", [
    ("registry", ("docker", "kubernetes", "kubeflow")),  # the cloud backends choose their registry
    ("base_image", ("docker", *CLUSTER)),
    ("insecure_registry", ("kubernetes", "kubeflow")),
    ("namespace", CLUSTER), ("deployer", CLUSTER), ("replicas", CLUSTER), ("nodes", CLUSTER),
    ("secret_env", CLUSTER),
    # one meaning on every backend (fairing.resources); the local one holds a process to them
    ("cpu", ("local", "docker", *CLUSTER)), ("memory", ("local", "docker", *CLUSTER)),
    ("gpus", ("local", "docker", *CLUSTER)),
    ("env", tuple(BACKENDS)),
])
def test_the_cli_asks_the_backends(option, backends):
    assert _applies_to(option) == backends


def test_every_backend_declares_only_known_job_options():
    for name in BACKENDS:
        declared = job_options_of(load(BACKENDS, name, "backend"))
        assert declared and declared <= set(JOB_OPTIONS), name
    with pytest.raises(ValueError, match="not job options"):
        job_options("colour")
