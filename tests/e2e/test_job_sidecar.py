"""A job whose pod has a second container (a user's mutator adds a helper, as people add a
database proxy or a log shipper), on the real cluster: the result and the log are the main
container's, even when the helper sorts first in the pod's status and ends first."""

from __future__ import annotations

import pytest

import fairing
from fairing.backends import Backend
from fairing.deployers.job import JobDeployer

pytestmark = pytest.mark.e2e


def _with_helper(base_image):
    def mutate(spec: dict) -> dict:
        helper = {"name": "aa-helper", "image": base_image, "command": ["sh", "-c", "echo helper-line; exit 0"]}
        return {**spec, "containers": [*spec["containers"], helper]}
    return mutate


def test_a_job_with_a_helper_container_returns_the_main_containers_result(builder, kube, base_image):
    lines = []
    backend = Backend("e2e", builder, JobDeployer(kube=kube, mutators=[_with_helper(base_image)]))

    @fairing.train(backend=backend, timeout=600, on_event=lines.append)
    def fit():
        import time

        time.sleep(8)  # the helper has ended long before
        print("main-line", flush=True)
        return 42

    assert fit() == 42
    logged = [getattr(e, "line", None) for e in lines if getattr(e, "line", None)]
    assert "main-line" in logged and "helper-line" not in logged, logged


def test_a_failing_job_with_a_helper_container_reports_the_main_containers_failure(builder, kube, base_image):
    backend = Backend("e2e", builder, JobDeployer(kube=kube, mutators=[_with_helper(base_image)]))

    @fairing.train(backend=backend, timeout=600)
    def fit():
        import os
        import time

        time.sleep(8)
        os._exit(3)  # no result at all: the exit code is the news

    with pytest.raises(fairing.JobFailedError) as info:
        fit()
    assert info.value.exit_code == 3, info.value
