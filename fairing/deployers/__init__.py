"""Deployers run an artifact and return a Handle.

Contract (:class:`fairing.artifacts.Deployer`): ``deploy(artifact, *, name=None,
on_event=None) -> Handle`` for an artifact of one of the types in its ``accepts``. A
deployer takes an artifact, never a builder: no module here imports
:mod:`fairing.builders` (shared Kubernetes mechanics live in :mod:`fairing.kube`).
"""

from __future__ import annotations

from ..artifacts import Deployer

__all__ = ["Deployer", "DEPLOYERS"]

DEPLOYERS = {
    "local": "fairing.deployers.local:LocalDeployer",
    "docker": "fairing.deployers.docker:DockerDeployer",
    "job": "fairing.deployers.job:JobDeployer",
    "tfjob": "fairing.deployers.training:TFJobDeployer",
    "pytorchjob": "fairing.deployers.training:PyTorchJobDeployer",
    "trainjob": "fairing.deployers.trainjob:TrainJobDeployer",
    "serving": "fairing.deployers.serving:ServingDeployer",
    "kserve": "fairing.deployers.kserve:InferenceServiceDeployer",
}
