"""The options that cannot be warm: each a ConfigurationError naming what warm=True runs.
The worker's protocol: tests/local/test_warm_worker_local.py; the cluster: tests/e2e/test_warm.py."""

from __future__ import annotations

import pytest

from fairing import ConfigurationError
from fairing.backends import BackendChoice


@pytest.mark.parametrize("options, says", [
    ({"warm": True, "deployer": "tfjob"}, "TFJob, PyTorchJob, TrainJob"),
    ({"warm": True, "deployer": "pytorchjob"}, "TFJob, PyTorchJob, TrainJob"),
    ({"warm": True, "ttl_seconds_after_finished": 5}, "do not apply to a warm worker"),
    ({"warm_idle": 5}, "give warm=True"),
])
def test_options_that_cannot_be_warm_are_a_configuration_error(options, says):
    with pytest.raises(ConfigurationError, match=says):
        BackendChoice("kubernetes", {"registry": "registry.example/team", "base_image": "python:3.11",
                                     **options}).make()


def test_an_endpoint_cannot_be_warm():
    import fairing

    class Model:
        def predict(self, x):
            return x

    with pytest.raises(ConfigurationError, match="endpoint cannot be warm"):
        fairing.PredictionEndpoint(Model, backend="kubernetes", warm=True, registry="registry.example/team",
                                   base_image="python:3.11")


def test_warm_idle_must_be_positive():
    from fairing.deployers.warm import WarmDeployer

    for bad in (0, -1, "600", True):
        with pytest.raises(ConfigurationError, match="warm_idle"):
            WarmDeployer(idle=bad)
