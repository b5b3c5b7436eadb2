"""Deployers run an image and return a Handle.

Contract: ``deploy(image, *, name=None, on_event=None) -> Handle``. A deployer takes an
image (an ImageRef, or a LocalImage for the local deployer), never a builder.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

from ..events import EventCallback
from ..handle import Handle

__all__ = ["Deployer", "DEPLOYERS"]

DEPLOYERS = {
    "local": "fairing.deployers.local:LocalDeployer",
    "docker": "fairing.deployers.docker:DockerDeployer",
    "job": "fairing.deployers.job:JobDeployer",
    "tfjob": "fairing.deployers.training:TFJobDeployer",
    "pytorchjob": "fairing.deployers.training:PyTorchJobDeployer",
    "serving": "fairing.deployers.serving:ServingDeployer",
    "kserve": "fairing.deployers.kserve:InferenceServiceDeployer",
}


@runtime_checkable
class Deployer(Protocol):
    def deploy(self, image: Any, *, name: Optional[str] = None, on_event: Optional[EventCallback] = None) -> Handle:
        ...
