"""Composing an image (pure): a base image's config and manifest plus new layers give the new
config, manifest, digest and tag, with no I/O. Pushing the blobs and the manifest is the
builder's (:mod:`fairing.builders.append`); the same inputs always give the same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import BuildError
from .manifest import (Descriptor, LayerSpec, append_layers, build_manifest, canonical_json, config_media_type,
                       sha256_digest)

__all__ = ["ComposedImage", "compose", "PUSHABLE_LAYER_TYPES"]

#: The base image layer media types an appended image may reference.
PUSHABLE_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)


@dataclass(frozen=True)
class ComposedImage:
    """The new image: its config (bytes and descriptor), the base's layers it keeps, its
    manifest, the manifest's digest and the tag derived from it (``fairing-<20 hex>``)."""

    config: bytes
    config_descriptor: Descriptor
    base_layers: list
    manifest: bytes
    digest: str
    tag: str


def compose(base_config: Mapping[str, Any], base_manifest: Mapping[str, Any], media_type: str,
            layers: Sequence[LayerSpec], *, env: Mapping[str, str], entrypoint: Sequence[str], workdir: str,
            labels: Mapping[str, str], base_name: str) -> ComposedImage:
    """The image ``base`` + ``layers`` with this entrypoint, workdir, env and labels.
    Raises BuildError for a base layer of a media type a registry image cannot reference."""
    config = append_layers(base_config, layers, env=dict(env), entrypoint=list(entrypoint), workdir=workdir,
                           labels=dict(labels))
    config_bytes = canonical_json(config)
    config_desc = Descriptor(config_media_type(media_type), sha256_digest(config_bytes), len(config_bytes))
    base_layers = [Descriptor.from_json(d) for d in base_manifest.get("layers", [])]
    for d in base_layers:
        if d.media_type not in PUSHABLE_LAYER_TYPES:
            raise BuildError(f"The base image {base_name} has a layer of unsupported media type {d.media_type!r}.")
    manifest = build_manifest(config_desc, base_layers + [layer.descriptor for layer in layers], media_type=media_type)
    digest = sha256_digest(manifest)
    return ComposedImage(config_bytes, config_desc, base_layers, manifest, digest,
                         "fairing-" + digest.split(":", 1)[1][:20])
