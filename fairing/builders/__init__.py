"""Builders turn a BuildContext into an artifact a deployer can run.

Contract (:class:`fairing.artifacts.Builder`): ``build(context, *, on_event=None) -> T``
where ``T`` is the builder's ``produces``. The append and cluster builders make a
:class:`~fairing.artifacts.RegistryImage` pinned by digest; the Docker builder a
RegistryImage with a registry, else a :class:`~fairing.artifacts.DockerImage`; the local
builder a :class:`~fairing.artifacts.LocalDir`. A builder knows nothing of how its
artifact is run: no module here imports :mod:`fairing.deployers` (Kubernetes mechanics
the in-cluster builder needs come from :mod:`fairing.kube`).
"""

from __future__ import annotations

from ..artifacts import Builder

__all__ = ["Builder", "BUILDERS"]

from .._names import BUILDERS  # noqa: E402  (the table lives at the bottom)
