"""Deployers run an artifact and return a Handle.

Contract (:class:`fairing.artifacts.Deployer`): ``deploy(artifact, *, name=None,
on_event=None) -> Handle`` for an artifact of one of the types in its ``accepts``. A
deployer takes an artifact, never a builder: no module here imports
:mod:`fairing.builders` (shared Kubernetes mechanics live in :mod:`fairing.kube`).
"""

from __future__ import annotations

from ..artifacts import Deployer

__all__ = ["Deployer", "DEPLOYERS"]

from .._names import DEPLOYERS  # noqa: E402  (the table lives at the bottom)
