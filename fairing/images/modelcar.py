"""A KServe "modelcar" image from an ORAS-style artifact: a base image with a shell plus one layer holding the
artifact's files under ``/models``.

KServe serves ``storageUri: oci://<image>`` (with ``storageInitializer.enableModelcar``) by running the image
as a sidecar, ``sh -c "ln -sf /proc/$$/root/models /mnt/models && sleep infinity"`` (and as an init container
that checks ``/models`` is not empty), so the predictor reads the model under ``/mnt/models``. KServe passes
that command as the container's arguments, so the image has no entrypoint.

A job's outputs artifact holds each file as a raw blob (ORAS's layout), which is not an image layer, so the
files are packed here into one reproducible tar layer: the same files, the same layer digest. The base
image's layers are mounted from its repository (same registry) or copied, never rebuilt.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from .layers import directory_layer
from .manifest import (DOCKER_MANIFEST_LIST, OCI_INDEX, Descriptor, LayerSpec, Platform, append_layers,
                       build_manifest, canonical_json, config_media_type, layer_media_type, select_platform,
                       sha256_digest)
from .reference import ImageRef

__all__ = ["MODELS_DIR", "modelcar_image"]

#: Where KServe's modelcar looks for the model in the image.
MODELS_DIR = "models"


def _image_manifest(client: Any, ref: ImageRef, platform: Platform) -> tuple[dict, str]:
    data, media_type, _digest = client.get_manifest(ref)
    manifest = json.loads(data)
    media_type = manifest.get("mediaType", media_type)
    if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        chosen = select_platform(manifest, platform, name=str(ref))
        data, media_type, _digest = client.get_manifest(ImageRef(ref.registry, ref.repository, None, chosen.digest))
        manifest = json.loads(data)
        media_type = manifest.get("mediaType", media_type)
    return manifest, media_type


def modelcar_image(client: Any, artifact: ImageRef, files: dict, base: ImageRef, target: ImageRef, *,
                   platform: str = "linux/amd64") -> str:
    """Push ``target`` (its tag), a modelcar of the ``files`` (``{title: blob digest}``) of ``artifact`` on
    ``base``; returns the manifest's digest. ``client`` is a :class:`~fairing.images.registry.RegistryClient`
    that reaches all three (one registry, or ``base`` on another: its layers are then copied)."""
    from ..runtime.outputs import _safe

    if not files:
        raise RegistryError(f"The artifact {artifact} holds no files: there is no model to serve.")
    base_manifest, media_type = _image_manifest(client, base, Platform.parse(platform))
    config = json.loads(client.get_blob(base, base_manifest["config"]["digest"]))
    with tempfile.TemporaryDirectory(prefix="fairing-modelcar-") as tmp:
        root = Path(tmp) / "files"
        for title, digest in sorted(files.items()):
            dest = root / _safe(title)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as fh:
                client.download_blob(artifact, digest, fh)
        layer = directory_layer(root, MODELS_DIR, Path(tmp) / "layer.tar.gz")
        same_registry = base.registry == target.registry
        for desc in base_manifest.get("layers", []):
            if same_registry and client.mount_blob(target, desc["digest"], base.repository):
                continue
            if not client.has_blob(target, desc["digest"]):
                blob = Path(tmp) / "base-layer"
                with open(blob, "wb") as fh:
                    client.download_blob(base, desc["digest"], fh)
                client.upload_blob(target, desc["digest"], blob, size=desc["size"])
        client.upload_blob(target, layer.digest, layer.source, size=layer.size)
        descriptor = Descriptor(layer_media_type(media_type), layer.digest, layer.size)
        new_config = append_layers(
            config, [LayerSpec(descriptor, layer.diff_id, f"fairing modelcar: {len(files)} files of {artifact}")],
            entrypoint=[], cmd=["sh"], workdir="/")
        config_bytes = canonical_json(new_config)
        config_digest = sha256_digest(config_bytes)
        client.upload_blob(target, config_digest, config_bytes)
        layers = [Descriptor.from_json(d) for d in base_manifest.get("layers", [])] + [descriptor]
        manifest = build_manifest(Descriptor(config_media_type(media_type), config_digest, len(config_bytes)),
                                  layers, media_type=media_type)
        return client.put_manifest(target, manifest, media_type)
