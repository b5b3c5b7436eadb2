"""Manifests, indexes and image configs as plain values (Docker schema 2 and OCI).

Nothing here does I/O. :func:`append_layers` is the heart of the append builder: it takes
a base config and returns a new one (the base is never mutated), in the spirit of
go-containerregistry's ``mutate.Append``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..errors import ConfigurationError, RegistryError

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "OCI_MANIFEST",
    "OCI_INDEX",
    "OCI_CONFIG",
    "OCI_LAYER_GZIP",
    "MANIFEST_TYPES",
    "INDEX_TYPES",
    "Descriptor",
    "Platform",
    "LayerSpec",
    "canonical_json",
    "sha256_digest",
    "build_manifest",
    "build_index",
    "select_platform",
    "layer_media_type",
    "config_media_type",
    "append_layers",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


def canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: media type, digest, size (and optional annotations/platform)."""

    media_type: str
    digest: str
    size: int
    annotations: Optional[Mapping[str, str]] = None
    platform: Optional[Mapping[str, Any]] = None

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Descriptor":
        return cls(
            media_type=value.get("mediaType", ""),
            digest=value["digest"],
            size=int(value["size"]),
            annotations=value.get("annotations"),
            platform=value.get("platform"),
        )


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]``, e.g. ``linux/amd64`` or ``linux/arm64/v8``."""

    os: str
    architecture: str
    variant: Optional[str] = None

    @classmethod
    def parse(cls, value: "str | Platform") -> "Platform":
        if isinstance(value, Platform):
            return value
        parts = value.split("/") if isinstance(value, str) else []
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigurationError(
                f"platform must look like 'linux/amd64' or 'linux/arm64/v8', got {value!r}."
            )
        return cls(*parts)

    def matches(self, spec: Mapping[str, Any]) -> bool:
        if spec.get("os") != self.os or spec.get("architecture") != self.architecture:
            return False
        if self.variant is None:
            return True
        variant = spec.get("variant")
        # arm64 images often omit the implied v8
        return variant == self.variant or (variant is None and self.architecture == "arm64" and self.variant == "v8")

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def build_manifest(
    config: Descriptor, layers: Sequence[Descriptor], *, media_type: str = OCI_MANIFEST,
    annotations: Optional[Mapping[str, str]] = None,
) -> bytes:
    """The canonical bytes of an image manifest."""
    value: dict = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        value["annotations"] = dict(annotations)
    return canonical_json(value)


def build_index(manifests: Sequence[Descriptor], *, media_type: str = OCI_INDEX) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": [m.to_json() for m in manifests]})


def select_platform(index: Mapping[str, Any], platform: Platform, *, name: str = "the image") -> Descriptor:
    """The manifest for ``platform`` in an image index / manifest list."""
    available = []
    for entry in index.get("manifests", []):
        spec = entry.get("platform") or {}
        if platform.matches(spec):
            return Descriptor.from_json(entry)
        if spec:
            available.append("/".join(p for p in (spec.get("os"), spec.get("architecture"), spec.get("variant")) if p))
    listed = ", ".join(sorted(set(a for a in available if not a.startswith("unknown")))) or "none"
    raise ConfigurationError(
        f"{name} has no variant for platform {platform}; it offers: {listed}. "
        "Pass one of those as platform=..., or choose a base image built for your cluster's nodes."
    )


def layer_media_type(manifest_media_type: str) -> str:
    return DOCKER_LAYER_GZIP if manifest_media_type == DOCKER_MANIFEST else OCI_LAYER_GZIP


def config_media_type(manifest_media_type: str) -> str:
    return DOCKER_CONFIG if manifest_media_type == DOCKER_MANIFEST else OCI_CONFIG


@dataclass(frozen=True)
class LayerSpec:
    """A layer to append: its blob descriptor, its diff_id and the history line for it."""

    descriptor: Descriptor
    diff_id: str
    created_by: str
    comment: str = ""


def _merge_env(base: Sequence[str], updates: Mapping[str, str]) -> list[str]:
    order: list[str] = []
    values: dict[str, str] = {}
    for entry in base:
        key, _, value = entry.partition("=")
        if key not in values:
            order.append(key)
        values[key] = value
    for key, value in updates.items():
        if key not in values:
            order.append(key)
        values[key] = value
    return [f"{k}={values[k]}" for k in order]


def append_layers(
    base_config: Mapping[str, Any],
    layers: Sequence[LayerSpec],
    *,
    env: Mapping[str, str] = {},
    entrypoint: Optional[Sequence[str]] = None,
    cmd: Optional[Sequence[str]] = None,
    workdir: Optional[str] = None,
    labels: Mapping[str, str] = {},
    created: str = "1970-01-01T00:00:00Z",
) -> dict:
    """A new image config: ``base_config`` plus ``layers`` and the given settings.

    ``entrypoint`` replaces the base's and, as ``docker build`` does, clears the base's
    ``Cmd`` unless ``cmd`` is given. ``env`` entries are merged over the base's (a
    ``PYTHONPATH`` of the base is kept after the new one).
    """
    if "rootfs" not in base_config:
        raise RegistryError("The base image's config has no 'rootfs' section; it is not a container image config.")
    out = copy.deepcopy(dict(base_config))
    for legacy in ("container", "container_config", "docker_version", "id", "parent"):
        out.pop(legacy, None)
    cfg = dict(out.get("config") or {})
    base_env = list(cfg.get("Env") or [])
    updates = dict(env)
    if "PYTHONPATH" in updates:
        for entry in base_env:
            if entry.startswith("PYTHONPATH=") and entry[len("PYTHONPATH="):]:
                updates["PYTHONPATH"] = updates["PYTHONPATH"] + ":" + entry[len("PYTHONPATH="):]
    cfg["Env"] = _merge_env(base_env, updates)
    if entrypoint is not None:
        cfg["Entrypoint"] = list(entrypoint)
        cfg["Cmd"] = list(cmd) if cmd is not None else None
    elif cmd is not None:
        cfg["Cmd"] = list(cmd)
    if cfg.get("Cmd") is None:
        cfg.pop("Cmd", None)
    if workdir is not None:
        cfg["WorkingDir"] = workdir
    if labels:
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **labels}
    out["config"] = cfg
    rootfs = dict(out["rootfs"])
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    out["rootfs"] = rootfs
    history = list(out.get("history") or [])
    for layer in layers:
        entry = {"created": created, "created_by": layer.created_by}
        if layer.comment:
            entry["comment"] = layer.comment
        history.append(entry)
    out["history"] = history
    out["created"] = created
    return out
