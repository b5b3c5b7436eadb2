"""AppendBuilder: a BuildContext becomes an image by appending layers to a base image
directly in a registry. No Docker daemon, nothing pulled that is not needed.

The image is the base image plus, on top, a requirements layer (the context's Python
requirements installed for the base's platform and Python version, with uv or pip, see
:mod:`fairing.images.python_deps`), data layers (each top-level file or directory of the
context with at least ``data_threshold`` bytes on disk, and each of ``data_paths``), and
a code layer (the rest of the context's files under its workdir). Its config gets
``ENTRYPOINT`` = the context's entrypoint (``CMD`` cleared), ``WORKDIR``, ``ENV`` = base
env + context env + ``FAIRING_RUNTIME=1`` (+ ``PYTHONPATH`` for the requirements), labels
naming the base, and one history entry per layer.

Everything is content-addressed: the same context and base give the same layer and
image digests (per compressor: see :mod:`fairing.images.tarstream`), the tag is derived
from the manifest digest. What a build learns outlives the builder and the process
(:mod:`fairing._cache`, under ``cache_dir``): the blobs each repository holds, a base
tag's digest (for ``base_max_age`` seconds), and each layer's digest by the stat of its
files, so an unchanged data directory is not even read. An unchanged re-submit makes
one request (``HEAD`` of the target's manifest) and uploads nothing; a one-line change
packs and uploads only the code layer and the config (side by side), then the manifest:
five requests, whatever the size of the data. A registry that lost a blob the cache
believed it had refuses the manifest; the builder then forgets that repository, checks
every blob and uploads (re-packing if need be) what is missing.

Example::

    from fairing.builders.append import AppendBuilder
    from fairing.preprocessors.function import FunctionPreprocessor

    with AppendBuilder("python:3.11-slim", "ghcr.io/my-org") as builder:   # ~/.docker/config.json
        ref = builder.build(FunctionPreprocessor(train, args=(10,)).context())
    # ref: ghcr.io/my-org/fairing-job:fairing-1f2e...@sha256:1f2e...

The image is composed by :func:`fairing.images.compose.compose` (pure); this module is the
builder's state (the caches, the known blobs, the base it resolved) and the push. It stays
one module past 450 lines because those methods share that state; the parts that need
none of it live in :mod:`fairing.images`.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from .._options import checks_options
from ..artifacts import RegistryImage
from ..context import BuildContext
from .naming import repository_name
from ..errors import BuildError, ConfigurationError, RegistryError
from ..events import EventCallback, Progress, Stage, emitter, failed_on_error
from ..images.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    LayerSpec,
    Platform,
    build_manifest,
    canonical_json,
    config_media_type,
    layer_media_type,
    select_platform,
    sha256_digest,
)
from ..images.compose import compose
from ..images.reference import ImageRef, parse_registry

__all__ = ["AppendBuilder"]

#: Annotation on a layer descriptor carrying its diff_id (used by the requirements cache tag).
DIFF_ID_ANNOTATION = "dev.fairing.layer.diff_id"


@dataclass(frozen=True)
class _Base:
    ref: ImageRef  # pinned to the platform manifest's digest
    manifest: dict
    media_type: str
    config: dict


@dataclass(frozen=True)
class _PendingLayer:
    descriptor: Descriptor
    diff_id: str
    path: "Path | bytes | None"  # what to upload; None: believed to be in the repository already
    label: str
    make: Optional[Callable[[], "Path | bytes"]] = None  # packs the layer again if the registry lost it
    files: int = 0


@checks_options  # a misspelled option is a ConfigurationError, not a TypeError
class AppendBuilder:
    """Build by appending layers to ``base_image`` and pushing to ``registry``.

    Arguments (defaults in brackets):

    * ``base_image`` - the image to build on, e.g. ``"python:3.11-slim"``.
    * ``registry`` - where to push: ``"host[:port][/path]"``, e.g. ``"localhost:5000/team"``.
    * ``repository`` - the image name under ``registry`` [derived from the context:
      the script or notebook name, else ``fairing-job``].
    * ``insecure`` - ``True`` or hosts that may be reached over plain HTTP [loopback only].
    * ``platform`` - chosen from a multi-arch base [``"linux/amd64"``].
    * ``python_version`` - the base image's Python ``X.Y``, for installing requirements
      and checking a function payload [read from the base config's ``PYTHON_VERSION``
      env or a label, else from its layers' files: :mod:`fairing.images.base_python`].
    * ``username``/``password`` - registry credentials [``~/.docker/config.json``].
    * ``credentials`` - a credentials provider (see :mod:`fairing.images.auth`), instead.
    * ``ca_bundle`` - PEM CA certificates to trust [the system's].
    * ``client`` - a :class:`fairing.images.registry.RegistryClient` to use instead of
      making one from the options above.
    * ``cache_dir`` - the local cache of base manifests and requirement layers
      [``~/.cache/fairing``].
    * ``glibc`` - the base image's glibc, for choosing manylinux wheels [``"2.28"``].
    * ``compresslevel`` - gzip level of new layers [6]; ISA-L's fast deflate is used when
      ``isal`` is installed (``pip install 'fairing-ml[fast]'``), see :mod:`fairing.images.tarstream`.
    * ``data_threshold`` - a top-level file or directory of the context whose files on disk
      add up to at least this many bytes gets a layer of its own, below the code, so a code
      change never re-packs or re-uploads it [4 MiB; 0: one layer for everything].
    * ``data_paths`` - context paths (files or directories) that always get their own
      layer, whatever their size [none].
    * ``installer`` - what installs the requirements: ``"uv"``, ``"pip"``, or ``"auto"``: uv
      when installed (``pip install uv``), else pip; the layer is the same either way ["auto"].
    * ``base_max_age`` - seconds a base image tag's digest, once looked up, is used without
      asking the registry again [300; 0: ask at every build].
    """

    produces = RegistryImage

    def __init__(
        self,
        base_image: "str | ImageRef",
        registry: str,
        *,
        repository: Optional[str] = None,
        insecure: "bool | Iterable[str]" = False,
        platform: str = "linux/amd64",
        python_version: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        credentials: Any = None,
        ca_bundle: Optional[str] = None,
        client: Any = None,
        cache_dir: Optional[str] = None,
        glibc: str = "2.28",
        compresslevel: int = 6,
        data_threshold: int = 4 << 20,
        data_paths: Iterable[str] = (),
        base_max_age: float = 300.0,
        installer: str = "auto",
    ) -> None:
        self.base = ImageRef.parse(base_image)
        where = parse_registry(registry)  # 'myuser' means Docker Hub's namespace 'myuser'
        self._host, self._prefix = where.host, where.prefix
        self.registry = registry.strip().rstrip("/")
        if repository is not None:
            ImageRef(self._host, self._join(repository))  # validates
        self.repository = repository
        self.platform = Platform.parse(platform)
        self.python_version = python_version
        self.glibc = glibc
        if not isinstance(compresslevel, int) or isinstance(compresslevel, bool) or not 0 <= compresslevel <= 9:
            raise ConfigurationError(f"compresslevel must be an integer from 0 to 9, got {compresslevel!r}.")
        self.compresslevel = compresslevel
        if not isinstance(data_threshold, int) or isinstance(data_threshold, bool) or data_threshold < 0:
            raise ConfigurationError(
                f"data_threshold must be a number of bytes (0 or more, 0: no data layers), got {data_threshold!r}.")
        self.data_threshold = data_threshold
        if isinstance(data_paths, str):
            raise ConfigurationError(f"data_paths must be a list of context paths, got the string {data_paths!r}; "
                                     f"write data_paths=[{data_paths!r}].")
        from ..context import _normalise_path

        self.data_paths = tuple(_normalise_path(p) for p in data_paths)
        if not isinstance(base_max_age, (int, float)) or isinstance(base_max_age, bool) or base_max_age < 0:
            raise ConfigurationError(f"base_max_age must be a number of seconds (0 or more), got {base_max_age!r}.")
        self.base_max_age = float(base_max_age)
        from ..images.python_deps import INSTALLERS

        if installer not in INSTALLERS:
            raise ConfigurationError(f"installer must be one of {', '.join(map(repr, INSTALLERS))}, got {installer!r}.")
        self.installer = installer
        from ..images.auth import resolve_credentials
        from ..images.layers import LocalCache

        credentials = resolve_credentials(username=username, password=password, credentials=credentials)
        self._cache = LocalCache(cache_dir)
        if client is None:
            from ..images.registry import RegistryClient

            client = RegistryClient(credentials=credentials, insecure=insecure, ca_bundle=ca_bundle)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        # blobs this builder has seen in (host, repository): saves HEADs on re-submits
        self._known: set[tuple[str, str, str]] = set()
        # requirement tags this builder has seen in (host, repository)
        self._known_tags: set[tuple[str, str, str]] = set()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> "AppendBuilder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AppendBuilder(base_image={str(self.base)!r}, registry={self.registry!r}, platform='{self.platform}')"

    # -- naming ---------------------------------------------------------------------------

    def _join(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def target_repository(self, context: BuildContext) -> str:
        """The repository the image is pushed to (given, or derived from the context)."""
        return self._join(self.repository or repository_name(context))

    # -- building -------------------------------------------------------------------------

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> RegistryImage:
        """Build and push; returns the image pinned by digest. The pipeline (``submit``)
        reports the "build" stage; this reports its parts: requirements, push."""
        return self._build(context, emitter(on_event))

    def _build(self, context: BuildContext, emit: EventCallback) -> RegistryImage:
        from ..images.base_python import check_payload_python, payload_python
        from ..images.python_deps import SITE_DIR, build_requirements_layer, requirements_key

        target = ImageRef(self._host, self.target_repository(context))
        base = self._resolve_base()
        media_type = base.media_type
        lmt = layer_media_type(media_type)

        with tempfile.TemporaryDirectory(prefix="fairing-append-") as tmp:
            new_layers: list[_PendingLayer] = []
            env = dict(context.env)
            env["FAIRING_RUNTIME"] = "1"
            deps_tag = None
            deps_new = False
            python_version = self.python_version
            if context.requirements or payload_python(context):
                python_version = python_version or self._base_python(base)
                check_payload_python(context, python_version, str(self.base))  # before anything is pushed
            if context.requirements:
                if not python_version:
                    raise ConfigurationError(
                        f"Cannot tell which Python the base image {self.base} has (its config sets no PYTHON_VERSION "
                        "and no 'org.python.version' label, and its layers hold no usr/bin/python3.X or "
                        "usr/local/lib/python3.X), so the requirements cannot be installed for it. "
                        "Pass python_version='3.11' (for example) to AppendBuilder."
                    )
                key = requirements_key(context.requirements, python_version, self.platform, self.glibc,
                                       constraints=context.constraints, pip_indexes=context.pip_indexes)
                deps_tag = "deps-" + key[:32]
                pending = self._cached_deps(target.with_tag(deps_tag), key)
                if pending is None:
                    deps_new = self._cache.get_layer(key) is None  # pip runs now
                    layer = build_requirements_layer(
                        context.requirements, python_version=python_version, platform=self.platform,
                        cache=self._cache, glibc=self.glibc, on_event=emit, compresslevel=self.compresslevel,
                        constraints=context.constraints, pip_indexes=context.pip_indexes, installer=self.installer,
                    )
                    pending = _PendingLayer(
                        Descriptor(lmt, layer.digest, layer.size), layer.diff_id, layer.path, "requirements"
                    )
                else:
                    self._known_tags.add((target.registry, target.repository, deps_tag))
                new_layers.append(pending)
                # keep the context's own entries (the runtime's), made absolute against the workdir
                own = [p if p.startswith("/") else posixpath.join(context.workdir, p)
                       for p in context.env.get("PYTHONPATH", "").split(":") if p]
                env["PYTHONPATH"] = ":".join([*own, SITE_DIR])
            known = self._known_blobs(target)
            context_layers = self._context_layers(context, Path(tmp), lmt, known)
            new_layers.extend(context_layers)
            code = context_layers[-1]

            specs = []
            for layer in new_layers:
                if layer.label == "requirements":
                    created_by = "fairing: pip install " + " ".join(context.requirements)
                else:
                    created_by = f"fairing: COPY {layer.files} file(s) {context.workdir}"
                specs.append(LayerSpec(layer.descriptor, layer.diff_id, created_by))
            image = compose(base.config, base.manifest, media_type, specs, env=env, entrypoint=context.entrypoint,
                            workdir=context.workdir, base_name=str(self.base), labels={
                                "org.opencontainers.image.base.name": str(self.base),
                                "org.opencontainers.image.base.digest": base.ref.digest or "",
                                "dev.fairing.context.digest": code.diff_id,
                            })
            config_bytes, config_desc, base_layers = image.config, image.config_descriptor, image.base_layers
            manifest, digest, tag = image.manifest, image.digest, image.tag
            result = RegistryImage.pin(target.with_tag(tag), digest)

            # With this repository's blobs on record, a layer not among them is new content, so the
            # manifest cannot be there yet: no need to ask. Otherwise (nothing recorded, or every
            # layer known) one HEAD may save the whole push.
            base_known = all(d["digest"] in known for d in base.manifest.get("layers", []))
            all_known = base_known and all(l.descriptor.digest in known for l in new_layers)
            if all_known or not base_known:
                existing = self.client.head_manifest(target.with_tag(tag), actions="pull,push")
                if existing is not None and existing.digest == digest:
                    self._remember(target, [d.digest for d in base_layers] + [l.descriptor.digest for l in new_layers]
                                   + [config_desc.digest])
                    emit(Stage("push", "skipped", f"{result} is already in the registry"))
                    return self._as_reached(result)

            emit(Stage("push", "started", str(target.with_tag(tag))))
            with failed_on_error(emit, "push"):
                for attempt in (1, 2):
                    self._push_blobs(target, base, base_layers, new_layers, config_desc, config_bytes, emit,
                                     fresh=bool(known) and attempt == 1)
                    try:
                        self.client.put_manifest(target.with_tag(tag), manifest, media_type)
                        break
                    except RegistryError as exc:
                        # a blob we believed present was garbage-collected: check everything again
                        if attempt == 1 and exc.code in ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"):
                            self._forget(target)
                            continue
                        raise
                self._remember(target, [d.digest for d in base_layers] + [l.descriptor.digest for l in new_layers]
                               + [config_desc.digest])
                if deps_tag and (target.registry, target.repository, deps_tag) not in self._known_tags:
                    # publish the requirements layer for other machines, once per process and repository
                    deps_ref = target.with_tag(deps_tag)
                    if deps_new or self.client.head_manifest(deps_ref, actions="pull,push") is None:
                        self._push_deps_tag(deps_ref, new_layers[0], media_type)
                    self._known_tags.add((target.registry, target.repository, deps_tag))
            emit(Stage("push", "finished", str(result)))
            return self._as_reached(result)

    def _as_reached(self, image: RegistryImage) -> RegistryImage:
        """``image`` marked with how this builder reached its registry (a job pushing its
        outputs back to it needs to know)."""
        return replace(image, plain_http=self.client.transport.scheme.get(image.registry) == "http")

    # -- what is known ----------------------------------------------------------------------

    def _known_blobs(self, target: ImageRef) -> set[str]:
        """Blobs known to be in ``target``'s repository: seen by this builder or on record in the cache."""
        host, repo = target.registry, target.repository
        for digest in self._cache.state.known_blobs(host, repo):
            self._known.add((host, repo, digest))
        return {d for h, r, d in self._known if h == host and r == repo}

    def _remember(self, target: ImageRef, digests: Iterable[str]) -> None:
        digests = list(digests)
        self._known.update((target.registry, target.repository, d) for d in digests)
        self._cache.state.add_blobs(target.registry, target.repository, digests)

    def _forget(self, target: ImageRef) -> None:
        """The registry lost a blob we believed it had (garbage collection): forget the repository."""
        host, repo = target.registry, target.repository
        self._known = {k for k in self._known if k[:2] != (host, repo)}
        self._cache.state.forget_repository(host, repo)
        if self.base.digest is None:
            self._cache.state.forget_tag(str(self.base))

    # -- the context's layers ---------------------------------------------------------------

    def _groups(self, context: BuildContext, entries: list) -> list[list]:
        """``entries`` (the whole context's, sorted) cut into layers: data layers first (a
        ``data_paths`` entry, or a top-level file or directory of at least ``data_threshold``
        bytes on disk), in name order, then the code layer. Each gets its parent directories."""
        prefix = context.workdir.strip("/")
        cut = len(prefix) + 1 if prefix else 0
        key_of: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for e in entries:
            if e.kind == "dir" or len(e.name) < cut:
                continue
            rel = e.name[cut:]
            key = next((p for p in self.data_paths if rel == p or rel.startswith(p + "/")), None)
            key = "path:" + key if key else "top:" + rel.split("/", 1)[0]
            key_of[e.name] = key
            if isinstance(e.source, Path):
                sizes[key] = sizes.get(key, 0) + e.size
        data = sorted(k for k, n in sizes.items()
                      if k.startswith("path:") or (self.data_threshold and n >= self.data_threshold))
        if len(data) > 8:  # many big top-level entries: one data layer for all of them
            group_of = {k: "data" for k in data}
        else:
            group_of = {k: k for k in data}
        order = sorted(set(group_of.values())) + ["code"]
        files: dict[str, list] = {g: [] for g in order}
        dirs: dict[str, set] = {g: set() for g in order}
        for name, key in key_of.items():
            group = group_of.get(key, "code")
            files[group].append(name)
            parts = name.split("/")
            dirs[group].update("/".join(parts[:i]) for i in range(1, len(parts)))
        members = {g: set(files[g]) | dirs[g] for g in order}
        out = []
        for g in order:
            keep = members[g]
            picked = [e for e in entries if e.name in keep or (g == "code" and e.kind == "dir" and
                                                              not any(e.name in members[d] for d in order[:-1]))]
            if g != "code" and not files[g]:
                continue
            out.append(picked)
        return out

    def _context_layers(self, context: BuildContext, tmp: Path, lmt: str, known: set[str]) -> list[_PendingLayer]:
        """The data layers and the code layer. A layer whose files' stat key is on record and
        whose blob the repository holds is not read at all."""
        from ..images.layers import entries_layer
        from ..images.tarstream import stat_key

        state = self._cache.state
        groups = self._groups(context, context.tar_entries(context.workdir))
        out = []
        for i, entries in enumerate(groups):
            label = "code" if i == len(groups) - 1 else "data"
            n = sum(1 for e in entries if e.kind != "dir")
            key = stat_key(entries, self.compresslevel)
            hit = state.layer(key)

            def make(entries=entries, hit=hit) -> "Path | bytes":
                layer = entries_layer(entries, tmp, compresslevel=self.compresslevel)
                if hit is not None and layer.digest != hit[0]:
                    raise BuildError(f"A file of the build context changed while it was being packed "
                                     f"(layer {hit[0][:19]} came out as {layer.digest[:19]}); submit again.")
                return layer.source

            if hit is not None and hit[0] in known:
                out.append(_PendingLayer(Descriptor(lmt, hit[0], hit[2]), hit[1], None, label, make=make, files=n))
                continue
            layer = entries_layer(entries, tmp, compresslevel=self.compresslevel)
            state.put_layer(key, layer.digest, layer.diff_id, layer.size)
            out.append(_PendingLayer(Descriptor(lmt, layer.digest, layer.size), layer.diff_id, layer.source, label,
                                     files=n))
        return out

    # -- base image -----------------------------------------------------------------------

    def _base_python(self, base: _Base) -> Optional[str]:
        """The base image's Python X.Y, from its config or its files (see fairing.images.base_python)."""
        from ..images.base_python import base_image_python

        return base_image_python(self.client, base.ref, base.manifest, base.config,
                                 config_digest=base.manifest["config"]["digest"], cache_dir=self._cache.directory)

    def _fetch_manifest(self, ref: ImageRef, digest: Optional[str]) -> tuple[bytes, str]:
        """Manifest bytes and digest, from the local cache when the digest is known."""
        if digest:
            data = self._cache.get_blob(digest)
            if data is not None:
                return data, digest
        data, _media_type, digest = self.client.get_manifest(ref.with_digest(digest) if digest else ref)
        self._cache.put_blob(digest, data)
        return data, digest

    def _resolve_base(self) -> _Base:
        ref = self.base
        top_digest = ref.digest
        if top_digest is None and self.base_max_age:
            top_digest = self._cache.state.tag_digest(str(ref), self.base_max_age)  # looked up a moment ago
        if top_digest is None:
            # None (missing, or no digest header): the GET below fetches it or says it is missing
            found = self.client.head_manifest(ref)
            top_digest = found.digest if found else None
            if top_digest:
                self._cache.state.put_tag(str(ref), top_digest)
        # resolved bases are kept with the cache directory's state, shared by the builders of this
        # process that use it: content-addressed, so never stale (the one-liner makes a builder per submit)
        cache_key = ("base", ref.registry, ref.repository, top_digest, str(self.platform))
        known = self._cache.state.memo_get(cache_key) if top_digest else None
        if known is not None:
            return known
        data, top_digest = self._fetch_manifest(ref, top_digest)
        value = _json(data, f"the manifest of {ref}")
        media_type = value.get("mediaType") or ""
        manifest_digest = top_digest
        if media_type in INDEX_TYPES or "manifests" in value:
            chosen = select_platform(value, self.platform, name=f"The base image {ref}")
            data, manifest_digest = self._fetch_manifest(ref, chosen.digest)
            value = _json(data, f"the {self.platform} manifest of {ref}")
            media_type = value.get("mediaType") or chosen.media_type
        if media_type not in MANIFEST_TYPES:
            if "config" in value and "layers" in value:
                media_type = "application/vnd.oci.image.manifest.v1+json"
            else:
                raise BuildError(
                    f"The base image {ref} has a manifest of type {media_type!r}, which fairing cannot append to "
                    "(it needs a Docker schema 2 or OCI image manifest)."
                )
        config_digest = value["config"]["digest"]
        config_bytes = self._cache.get_blob(config_digest)
        if config_bytes is None:
            config_bytes = self.client.get_blob(ref, config_digest)
            self._cache.put_blob(config_digest, config_bytes)
        config = _json(config_bytes, f"the config of {ref}")
        os_, arch = config.get("os"), config.get("architecture")
        if os_ and arch and (os_ != self.platform.os or arch != self.platform.architecture):
            raise ConfigurationError(
                f"The base image {ref} is built for {os_}/{arch}, not {self.platform}. Choose a base image for "
                f"{self.platform}, or pass platform='{os_}/{arch}' if that is what your cluster runs."
            )
        base = _Base(ref=ref.with_digest(manifest_digest), manifest=value, media_type=media_type, config=config)
        self._cache.state.memo_put(("base", ref.registry, ref.repository, top_digest, str(self.platform)), base)
        return base

    # -- pushing --------------------------------------------------------------------------

    def _progress(self, emit: EventCallback, label: str, digest: str):
        task = f"{label} {digest.split(':', 1)[1][:12]}"

        def on_progress(done: int, total: Optional[int], note: str) -> None:
            emit(Progress(task, done, total, note=note))

        return on_progress

    def _push_blobs(self, target: ImageRef, base: _Base, base_layers, new_layers, config_desc, config_bytes, emit,
                    *, fresh: bool = False) -> None:
        """Make every blob of the image exist in ``target``'s repository. The blobs are
        independent, so they move at once (up to 4 connections): a one-line re-submit then
        waits on two round trips (``POST`` + ``PUT`` of the code layer and the config side by
        side), not four. Events are emitted one at a time."""
        host = target.registry
        repo = target.repository
        same_registry = base.ref.registry == target.registry
        lock = threading.Lock()

        def emit_one(event) -> None:
            with lock:
                emit(event)

        with tempfile.TemporaryDirectory(prefix="fairing-copy-") as tmp:
            jobs: list[Callable[[], None]] = []
            for d in base_layers:
                key = (host, repo, d.digest)
                if key in self._known:
                    emit_one(Progress(f"base {d.digest[7:19]}", d.size, d.size, note="skipped"))
                    continue

                def base_job(d=d, key=key, on_progress=self._progress(emit_one, "base", d.digest)) -> None:
                    if same_registry and base.ref.repository != repo:
                        # a mount of a blob the repository already has also answers 201
                        self._mount_or_copy(target, base, d, Path(tmp), on_progress)
                    elif same_registry:
                        if not self.client.has_blob(target, d.digest):
                            raise RegistryError(f"The base image's layer {d.digest} is missing from {target.name}.")
                        on_progress(d.size, d.size, "skipped")
                    else:
                        self._copy_blob(target, base, d, Path(tmp), on_progress)
                    self._known.add(key)

                jobs.append(base_job)
            for layer in new_layers:
                digest, size = layer.descriptor.digest, layer.descriptor.size
                key = (host, repo, digest)
                if key in self._known:
                    emit_one(Progress(f"{layer.label} {digest[7:19]}", size, size, note="skipped"))
                    continue

                def layer_job(layer=layer, digest=digest, size=size, key=key,
                              on_progress=self._progress(emit_one, layer.label, digest)) -> None:
                    source = layer.path
                    if source is None:
                        if self.client.has_blob(target, digest):
                            on_progress(size, size, "skipped")
                            self._known.add(key)
                            return
                        if layer.make is None:
                            raise RegistryError(f"The cached {layer.label} layer vanished from {target.name}; build again.")
                        source = layer.make()
                        self.client.upload_blob(target, digest, source, size=size, check_exists=False,
                                                on_progress=on_progress)
                    else:
                        # a layer just packed that the record does not know is new content: no HEAD first
                        self.client.upload_blob(target, digest, source, size=size, on_progress=on_progress,
                                                check_exists=not (fresh and layer.label != "requirements"))
                    self._known.add(key)

                jobs.append(layer_job)
            # no HEAD for the config: a new manifest almost always has a new config, and it is small
            jobs.append(lambda: self.client.upload_blob(target, config_desc.digest, config_bytes, check_exists=False,
                                                        on_progress=self._progress(emit_one, "config",
                                                                                   config_desc.digest)))
            _run_all(jobs)

    def _mount_or_copy(self, target: ImageRef, base: _Base, d: Descriptor, tmp: Path, on_progress) -> str:
        """Mount (the registry client asks without a HEAD first); copy when the registry does not mount."""
        if self.client.mount_blob(target, d.digest, base.ref.repository):
            on_progress(d.size, d.size, "mounted")
            return "mounted"
        return self._copy_blob(target, base, d, tmp, on_progress)

    def _copy_blob(self, target: ImageRef, base: _Base, d: Descriptor, tmp: Path, on_progress) -> str:
        if self.client.has_blob(target, d.digest):
            on_progress(d.size, d.size, "skipped")
            return "skipped"
        path = tmp / d.digest.replace(":", "-")
        with path.open("wb") as fh:
            self.client.download_blob(base.ref, d.digest, fh)
        try:
            return self.client.upload_blob(target, d.digest, path, size=d.size, check_exists=False, on_progress=on_progress)
        finally:
            path.unlink(missing_ok=True)

    # -- the requirements cache in the registry -------------------------------------------

    def _cached_deps(self, ref: ImageRef, key: str) -> Optional[_PendingLayer]:
        local = self._cache.get_layer(key)
        if local is not None:
            return None  # build_requirements_layer returns it without installing
        found = self.client.head_manifest(ref)
        if found is None:
            return None
        data, _mt, _digest = self.client.get_manifest(ref)
        value = _json(data, f"the manifest of {ref}")
        layers = value.get("layers") or []
        if len(layers) != 1 or DIFF_ID_ANNOTATION not in (layers[0].get("annotations") or {}):
            return None
        d = layers[0]
        desc = Descriptor(d["mediaType"], d["digest"], int(d["size"]))
        return _PendingLayer(desc, d["annotations"][DIFF_ID_ANNOTATION], None, "requirements")

    def _push_deps_tag(self, ref: ImageRef, layer: _PendingLayer, media_type: str) -> None:
        """Tag a one-layer image holding the requirements layer, so another machine finds it."""
        config = {
            "architecture": self.platform.architecture, "os": self.platform.os,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "config": {},
        }
        config_bytes = canonical_json(config)
        config_desc = Descriptor(config_media_type(media_type), sha256_digest(config_bytes), len(config_bytes))
        self.client.upload_blob(ref, config_desc.digest, config_bytes)
        desc = Descriptor(layer.descriptor.media_type, layer.descriptor.digest, layer.descriptor.size,
                          annotations={DIFF_ID_ANNOTATION: layer.diff_id})
        self.client.put_manifest(ref, build_manifest(config_desc, [desc], media_type=media_type), media_type)


def _run_all(jobs: list) -> None:
    """Run ``jobs`` side by side (inline when there is one); the first failure is raised
    once all have ended."""
    if len(jobs) == 1:
        jobs[0]()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, len(jobs)), thread_name_prefix="fairing-push") as pool:
        futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.result()


def _json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object.")
    return value


