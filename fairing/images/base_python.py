"""Which Python a base image has, and whether a payload can run on it.

Installing requirements for the base image and loading a pickled function both need its
Python ``major.minor``. :func:`base_image_python` finds it without pulling the image:

1. its config: ``PYTHON_VERSION`` in the environment, or a ``org.python.version`` label
   (:func:`fairing.images.python_deps.python_version_of`);
2. else its layers' files, newest layer first: the ``usr/bin/python3`` or
   ``usr/local/bin/python3`` symlink's target (``python3.11``), else the
   ``python3.X`` interpreters and ``lib/python3.X/`` directories it holds (``/usr/local``
   before ``/usr``, the highest version first). An eStargz layer (annotated with its
   TOC digest) is read by two ranged requests: its footer, then its table of contents.
   Any other layer has no index to seek in, so it is streamed and read only until the
   answer is found (what comes after is not fetched). The answer is cached by the image
   config's digest under ``<cache>/base-python/``, so each base image is read once per
   machine.

:func:`check_payload_python` compares it with the Python a function payload was pickled
with, before anything is pushed.

Written here: no maintained library reads files out of a registry's layers from Python
without pulling them (crane/skopeo are Go binaries that download whole layers).
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any, Optional

from ..errors import PythonMismatchError, RegistryError
from .python_deps import python_version_of

__all__ = ["base_image_python", "python_in_layer_names", "payload_python", "check_payload_python", "ESTARGZ_TOC"]

_LINK = re.compile(r"^(?:\./)?usr/(local/)?bin/python3$")
_FILE = re.compile(r"^(?:\./)?usr/(local/)?(?:bin/python|lib/python)(3\.\d+)(?:/|$)")
_VERSION = re.compile(r"^(?:.*/)?python(3\.\d+)$")
_GZIP_TYPES = ("application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+gzip",
               "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
_TAR_TYPES = ("application/vnd.oci.image.layer.v1.tar",)


def _key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


class _Found:
    """What the members of one layer say about its Python."""

    def __init__(self) -> None:
        self.linked: Optional[str] = None  # the python3 symlink's target version: decisive
        self.seen: dict[str, bool] = {}  # version -> under /usr/local

    def add(self, name: str, linkname: str = "") -> bool:
        """Note a member; True once the answer is certain."""
        if _LINK.match(name) and linkname:
            m = _VERSION.match(linkname)
            if m:
                self.linked = m.group(1)
                return True
        m = _FILE.match(name)
        if m:
            self.seen[m.group(2)] = self.seen.get(m.group(2), False) or bool(m.group(1))
        return False

    def answer(self) -> Optional[str]:
        if self.linked:
            return self.linked
        if not self.seen:
            return None
        return max(self.seen, key=lambda v: (self.seen[v], _key(v)))


def python_in_layer_names(members: "list[tuple[str, str]]") -> Optional[str]:
    """The Python that (name, linkname) tar members show, or None (for tests and tools)."""
    found = _Found()
    for name, link in members:
        if found.add(name, link):
            break
    return found.answer()


#: Annotation of an eStargz layer: its table of contents can be read by ranged requests.
ESTARGZ_TOC = "containerd.io/snapshot/stargz/toc.digest"
_FOOTER = 51  # eStargz footer: an empty gzip member whose extra field holds the TOC's offset


def _range(client: Any, ref: Any, digest: str, start: int, end: int) -> Optional[bytes]:
    """Bytes ``start``..``end`` (inclusive) of a blob, or None when the registry ignores ranges."""
    resp = client.request(
        "GET", ref.api_host, f"/v2/{ref.repository}/blobs/{digest}", repository=ref.repository, stream=True,
        headers={"Range": f"bytes={start}-{end}"}, ok=(206,), allow=(200,),
        what=f"reading part of layer {digest[:19]} of {ref.name}",
    )
    with resp:
        if resp.status_code != 206:
            return None  # a whole blob is on its way: do not read it
        return resp.content


def _toc_offset(footer: bytes) -> Optional[int]:
    """The TOC offset from an eStargz footer (gzip header FEXTRA, subfield 'SG': '%016xSTARGZ')."""
    if len(footer) < 12 or footer[:2] != b"\x1f\x8b" or not footer[3] & 4:
        return None
    xlen = int.from_bytes(footer[10:12], "little")
    extra = footer[12:12 + xlen]
    if extra[:2] == b"SG" and int.from_bytes(extra[2:4], "little") == 22:
        extra = extra[4:]
    if len(extra) != 22 or extra[16:] != b"STARGZ":
        return None
    try:
        return int(extra[:16], 16)
    except ValueError:
        return None


def _scan_toc(client: Any, ref: Any, descriptor: dict) -> "Optional[_Found]":
    """The layer's file names from its eStargz table of contents: two ranged reads (the
    footer, then the TOC) instead of the layer. None when the layer has no readable TOC."""
    import gzip
    import io

    digest, size = descriptor["digest"], int(descriptor.get("size") or 0)
    if size <= _FOOTER:
        return None
    footer = _range(client, ref, digest, size - _FOOTER, size - 1)
    offset = _toc_offset(footer or b"")
    if offset is None or not 0 <= offset < size - _FOOTER:
        return None
    member = _range(client, ref, digest, offset, size - _FOOTER - 1)
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(member or b"")), mode="r:") as tar:
            toc = json.load(tar.extractfile("stargz.index.json"))  # type: ignore[arg-type]
    except (OSError, EOFError, KeyError, ValueError, tarfile.TarError, TypeError):
        return None
    found = _Found()
    for entry in toc.get("entries") or []:
        link = entry.get("linkName", "") if entry.get("type") == "symlink" else ""
        if found.add(str(entry.get("name", "")), link):
            break
    return found


def _scan_layer(client: Any, ref: Any, descriptor: dict) -> Optional[str]:
    if ESTARGZ_TOC in (descriptor.get("annotations") or {}):
        found = _scan_toc(client, ref, descriptor)
        if found is not None:
            return found.answer()
    media_type = descriptor.get("mediaType", "")
    if media_type in _GZIP_TYPES:
        mode = "r|gz"
    elif media_type in _TAR_TYPES:
        mode = "r|"
    else:
        return None  # zstd and others: not readable with the standard library
    digest = descriptor["digest"]
    resp = client.request(
        "GET", ref.api_host, f"/v2/{ref.repository}/blobs/{digest}", repository=ref.repository, stream=True,
        what=f"reading the files of layer {digest[:19]} of {ref.name}",
    )
    found = _Found()
    try:
        raw = resp.raw
        raw.decode_content = False  # the layer's own gzip, not a transfer encoding
        try:
            with tarfile.open(fileobj=raw, mode=mode) as tar:
                for member in tar:
                    if found.add(member.name, member.linkname if member.issym() else ""):
                        break  # stop reading: the rest of the layer is not fetched
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise RegistryError(f"The layer {digest} of {ref.name} is not a readable tar: {exc}.") from None
    finally:
        resp.close()
    return found.answer()


def base_image_python(client: Any, ref: Any, manifest: dict, config: dict, *, config_digest: str,
                      cache_dir: "Path | str") -> Optional[str]:
    """``X.Y`` of the base image's Python (see the module docstring), or None when neither
    its config nor its files show one. ``ref`` names the repository the layers are in."""
    from_config = python_version_of(config)
    if from_config:
        return from_config
    cache_file = Path(cache_dir) / "base-python" / config_digest.replace(":", "-")
    try:
        cached = json.loads(cache_file.read_text())
        return cached.get("python")
    except (OSError, ValueError):
        pass
    version = None
    for descriptor in reversed(manifest.get("layers") or []):  # the newest layer wins
        version = _scan_layer(client, ref, descriptor)
        if version:
            break
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + ".tmp")
    tmp.write_text(json.dumps({"python": version}))
    tmp.replace(cache_file)
    return version


def payload_python(context: Any) -> Optional[str]:
    """The Python ``X.Y`` a context's payload must run on: a pickled function or model
    class needs the submitter's (the payload records it); a script runs on any."""
    from ..runtime import PAYLOAD_FILE

    source = context.files.get(PAYLOAD_FILE)
    if not isinstance(source, bytes):
        return None
    try:
        payload = json.loads(source)
    except ValueError:
        return None
    return payload.get("python") if payload.get("kind") in ("function", "serve") else None


def check_payload_python(context: Any, image_python: Optional[str], base: str) -> None:
    """Refuse a function payload whose Python differs from the base image's, before any push."""
    wanted = payload_python(context)
    if not wanted or not image_python or _key(wanted) == _key(image_python):
        return
    raise PythonMismatchError(
        f"The base image {base} has Python {image_python}, but this function was pickled with Python {wanted}, "
        f"and a pickled function only loads in the same Python version. Use a base image with Python {wanted} "
        f"(e.g. python:{wanted}-slim), or submit from Python {image_python}, or run a script instead "
        "(TrainJob('train.py')), which runs on any Python.",
        submitter=wanted, image=image_python,
    )
