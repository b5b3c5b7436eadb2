"""Builders turn a BuildContext into something a deployer can run.

Contract: ``build(context, *, on_event=None) -> image``. Registry builders (append,
docker, cluster) return an :class:`fairing.images.ImageRef` pinned by digest; the local
builder returns a :class:`fairing.builders.local.LocalImage` (a directory on disk).
A builder knows nothing of pods or containers.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

from ..context import BuildContext
from ..events import EventCallback

__all__ = ["Builder", "BUILDERS"]

BUILDERS = {
    "local": "fairing.builders.local:LocalBuilder",
    "append": "fairing.builders.append:AppendBuilder",
    "docker": "fairing.builders.docker:DockerBuilder",
    "cluster": "fairing.builders.cluster:ClusterBuilder",
}


@runtime_checkable
class Builder(Protocol):
    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> Any:
        ...
