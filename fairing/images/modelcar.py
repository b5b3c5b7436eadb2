"""A KServe "modelcar" image composed in the registry from layers already there: a base image with a
shell, plus the layer a job's runtime pushed beside its outputs artifact (its files under ``/models``;
see :func:`fairing.runtime.outputs.modelcar_layer`). The submitter writes only an image config and a
manifest (a few KB), and makes the blobs exist in the target repository by cross-repository mounts:
the model never passes through it, whatever its size.

KServe (v0.15) serves ``storageUri: oci://<image>`` (with ``storageInitializer.enableModelcar``) by
running the image as an init container that checks ``/models`` is a non-empty directory, then as a
sidecar, ``sh -c "ln -sf /proc/$$/root/models /mnt/models && sleep infinity"`` (as ``uidModelcar``,
in a shared process namespace), so the predictor reads the model under ``/mnt/models``. KServe
passes that command as the container's arguments, so the image has no entrypoint.

The model layer is uncompressed, so its digest is its diff_id. A base image on another registry has
its (base) layers copied through here; the model layer is never copied, only mounted. Interrupted
(Ctrl-C, SIGTERM, an error), nothing made here is left: the manifest, the config and the blobs this
call mounted or copied are deleted again (on SIGTERM by fairing's handler, :mod:`fairing._sigterm`,
installed here when the program has none, before the process ends).
"""

from __future__ import annotations

import json
from pathlib import Path
import tempfile
from typing import Any

from .._sigterm import _handle_sigterm, _Pending, _remove_dirs
from ..errors import RegistryError
from .manifest import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, Descriptor, LayerSpec, Platform,
                       append_layers, build_manifest, canonical_json, config_media_type, select_platform,
                       sha256_digest)
from .reference import ImageRef

__all__ = ["MODELS_DIR", "modelcar_image"]

#: Where KServe's modelcar looks for the model in the image.
MODELS_DIR = "models"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


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


def _delete(client: Any, target: ImageRef, kind: str, digest: str) -> None:
    try:
        client.request("DELETE", target.api_host, f"/v2/{target.repository}/{kind}/{digest}",
                       repository=target.repository, actions="delete", ok=(202, 200), allow=(404,),
                       what=f"removing the unfinished modelcar's {digest[:19]} from {target.repository}",
                       retry=False).close()
    except RegistryError:
        pass  # best effort: the original error is the one to report


def modelcar_image(client: Any, artifact: ImageRef, model_layer: Descriptor, base: ImageRef, target: ImageRef,
                   *, note: str = "", platform: str = "linux/amd64") -> str:
    """Push ``target`` (its tag): ``base`` plus ``model_layer``, an uncompressed tar blob of ``artifact``'s
    repository holding the model under ``models/``; returns the manifest's digest. ``client`` is a
    :class:`~fairing.images.registry.RegistryClient` reaching all three. ``note`` goes in the image's
    history. A model layer missing from the artifact's repository, or on another registry than
    ``target``, is a :class:`~fairing.errors.RegistryError`; nothing is left behind."""
    if artifact.registry != target.registry:
        raise RegistryError(f"The modelcar {target} would be on another registry than the model {artifact}: its "
                            "layer would have to pass through here. Make it on the artifact's registry.")
    resp = client.request("HEAD", artifact.api_host, f"/v2/{artifact.repository}/blobs/{model_layer.digest}",
                          repository=artifact.repository, allow=(404,),
                          what=f"checking the model layer {model_layer.digest[:19]} in {artifact.repository}")
    resp.close()
    if resp.status_code == 404:
        raise RegistryError(f"The model layer {model_layer.digest} of {artifact} is not in the repository "
                            f"{artifact.registry}/{artifact.repository} (deleted, or the artifact was pushed "
                            "elsewhere). Run the job again to push its outputs anew.", status=404,
                            code="BLOB_UNKNOWN")
    size = resp.headers.get("Content-Length")
    if size is not None and int(size) != model_layer.size:
        raise RegistryError(f"The model layer {model_layer.digest} of {artifact} is {size} bytes in the registry, "
                            f"not the {model_layer.size} the artifact's manifest says: the artifact is corrupt. "
                            "Run the job again to push its outputs anew.")
    base_manifest, media_type = _image_manifest(client, base, Platform.parse(platform))
    config = json.loads(client.get_blob(base, base_manifest["config"]["digest"]))
    layer = Descriptor(_DOCKER_LAYER if media_type == DOCKER_MANIFEST else _OCI_LAYER, model_layer.digest,
                       model_layer.size)
    new_config = append_layers(config, [LayerSpec(layer, layer.digest, f"fairing modelcar: {note or artifact}")],
                               entrypoint=[], cmd=["sh"], workdir="/")
    config_bytes = canonical_json(new_config)
    config_digest = sha256_digest(config_bytes)
    manifest = build_manifest(Descriptor(config_media_type(media_type), config_digest, len(config_bytes)),
                              [Descriptor.from_json(d) for d in base_manifest.get("layers", [])] + [layer],
                              media_type=media_type)
    # what this call made exist in the target repository; "image": the manifest it composes
    made: dict = {"blobs": [], "manifest": None, "image": (sha256_digest(manifest), media_type)}
    _handle_sigterm()
    with _Pending(_undo, client, target, made):
        try:
            return _compose(client, artifact, layer, base, base_manifest, target, config_bytes, config_digest,
                            manifest, media_type, made)
        except BaseException:
            _undo(client, target, made)
            raise


def _undo(client: Any, target: ImageRef, made: dict) -> None:
    """Delete what :func:`_compose` made (idempotent: a SIGTERM's cleanup and the exception's)."""
    if made["manifest"]:
        digest, made["manifest"] = made["manifest"], None
        _delete(client, target, "manifests", digest)
    elif made["blobs"] and _has_manifest(client, target, *made["image"]):
        made["blobs"].clear()  # another call made the same image meanwhile, from the blobs mounted here
    while made["blobs"]:
        _delete(client, target, "blobs", made["blobs"].pop())
    if made.get("tmp"):
        _remove_dirs(made.pop("tmp"))


def _has_manifest(client: Any, target: ImageRef, digest: str, media_type: str) -> bool:
    try:
        resp = client.request("HEAD", target.api_host, f"/v2/{target.repository}/manifests/{digest}",
                              repository=target.repository, headers={"Accept": media_type}, allow=(404,),
                              what=f"checking the modelcar {digest[:19]} in {target.repository}", retry=False)
    except RegistryError:
        return False
    resp.close()
    return resp.status_code == 200


def _compose(client: Any, artifact: ImageRef, layer: Descriptor, base: ImageRef, base_manifest: dict,
             target: ImageRef, config_bytes: bytes, config_digest: str, manifest: bytes, media_type: str,
             made: dict) -> str:
    added = made["blobs"]
    with tempfile.TemporaryDirectory(prefix="fairing-modelcar-") as tmp:
        made["tmp"] = tmp  # a base layer copied from another registry passes here
        for desc in [*base_manifest.get("layers", []), layer.to_json()]:
            digest = desc["digest"]
            if client.has_blob(target, digest):
                continue
            source = artifact if digest == layer.digest else base
            added.append(digest)
            if source.registry == target.registry and client.mount_blob(target, digest, source.repository):
                continue
            if digest == layer.digest:
                raise RegistryError(f"The registry {target.registry} would not mount the model layer "
                                    f"{digest} from {source.repository} into {target.repository}; it is not "
                                    "copied through here. Make the modelcar in the artifact's repository.")
            blob = Path(tmp) / "base-layer"  # a base on another registry: its layers are copied
            with open(blob, "wb") as fh:
                client.download_blob(base, digest, fh)
            client.upload_blob(target, digest, blob, size=desc["size"], check_exists=False)
    if not client.has_blob(target, config_digest):
        added.append(config_digest)
        client.upload_blob(target, config_digest, config_bytes, check_exists=False)
    digest = sha256_digest(manifest)
    if not _has_manifest(client, target, digest, media_type):  # the same image made before is another call's
        made["manifest"] = digest
    return client.put_manifest(target, manifest, media_type)
