"""Container images: references, the registry client, manifests and layers.

Only :class:`ImageRef` is imported here; the registry client
(:mod:`fairing.images.registry`, needs the ``append`` extra) is imported on use.
"""

from .reference import ImageRef

__all__ = ["ImageRef"]
