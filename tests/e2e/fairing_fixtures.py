"""fairing-level fixtures for the e2e tier (the cluster-level ones are in conftest.py):
the test base image in the cluster's registry, a KubeClient for the test's namespace,
an append builder, a backend bundling them, and the Kaniko executor image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STATE = Path(os.environ.get("FAIRING_CLUSTER_STATE", "/var/lib/fairing-cluster"))


@pytest.fixture(scope="session")
def base_image(registry_address) -> str:
    from tests.services.base_image import push_base_image

    return str(push_base_image(registry_address, insecure=True))


@pytest.fixture
def kube(kubeconfig, namespace):
    from fairing.kube import KubeClient

    return KubeClient(kubeconfig=kubeconfig, namespace=namespace)


@pytest.fixture
def builder(base_image, registry_address):
    from fairing.builders.append import AppendBuilder

    return AppendBuilder(base_image, f"{registry_address}/fairing-e2e", insecure=True)


@pytest.fixture
def backend(builder, kube):
    from fairing.backends import Backend
    from fairing.deployers.job import JobDeployer
    from fairing.deployers.serving import ServingDeployer

    return Backend("e2e", builder, JobDeployer(kube=kube), ServingDeployer(kube=kube))


@pytest.fixture(scope="session")
def kaniko_image(registry_address) -> str:
    path = STATE / "images" / "kaniko"
    if os.environ.get("FAIRING_TEST_KANIKO_IMAGE"):
        return os.environ["FAIRING_TEST_KANIKO_IMAGE"]
    if not path.is_file():
        pytest.fail(f"no Kaniko executor image recorded at {path}: tests/cluster/up builds and pushes it; "
                    "on another cluster set FAIRING_TEST_KANIKO_IMAGE")
    return path.read_text().strip()
