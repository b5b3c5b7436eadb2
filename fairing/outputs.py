"""Output files, on the submitter's side: where a job's outputs went, fetching and deleting them.

A job's runtime sends the files it wrote (see :mod:`fairing.runtime.outputs`) either to a
directory (the local backend) or, on a cluster, as an OCI artifact pushed to the
registry the image came from, in a repository of its own per job
(``<image repository>-outputs/<job>``), so that deleting it (its manifest and blobs,
with the registry API) removes everything and touches nothing else. The result
envelope names it; :class:`Outputs` is what a handle returns for it.

The registry is reached with :class:`fairing.images.registry.RegistryClient`, with the
credentials ``docker login`` stored and plain HTTP with ``insecure=True`` or for hosts in
``insecure_hosts`` (a job's handle says how its deployer reached the registry).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from .errors import RegistryError

__all__ = ["Outputs", "outputs_repository", "delete_repository"]


def _targets(dest: Path, rels: Any) -> dict[str, Path]:
    """Where each output goes under ``dest``; refuses (before anything is written) an output
    that a directory there, or a file where its directory should be, stands in the way of."""
    from .errors import ConfigurationError
    from .runtime.outputs import _safe

    targets = {rel: dest / _safe(rel) for rel in rels}
    if targets and dest.exists() and not dest.is_dir():
        raise ConfigurationError(f"The job's outputs cannot be downloaded to {dest}: it is a file, not a "
                                 "directory. Download them elsewhere (outputs_dir=..., or handle.outputs(dest)).")
    for rel, target in targets.items():
        blocked = None
        if target.is_dir() and not target.is_symlink():
            blocked = target
        else:
            for parent in target.relative_to(dest).parents:
                if parent.parts and (dest / parent).exists() and not (dest / parent).is_dir():
                    blocked = dest / parent
                    break
        if blocked is not None:
            kind = "a directory" if blocked == target else "a file where its directory should be"
            raise ConfigurationError(
                f"The job's output {rel!r} cannot be downloaded to {target}: {blocked} is {kind}. Move it "
                "away, or download the outputs elsewhere (outputs_dir=..., or handle.outputs(dest)).")
    return targets


def _replace(target: Path, write: Any) -> None:
    """Write ``target`` through a temporary file beside it, renamed over it when complete: a
    link there is replaced, not followed, and an interrupted download leaves no half file."""
    from ._sigterm import _Pending, _remove_dirs

    tmp = target.with_name(f".fairing-download-{os.getpid()}-{threading.get_ident()}")  # short: any name fits
    with _Pending(_remove_dirs, str(tmp)):  # a SIGTERM meanwhile removes it (the handler ends the process)
        try:
            with open(tmp, "wb") as fh:
                write(fh)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def outputs_repository(image_repository: str, job: str) -> str:
    """The repository a job's outputs artifact is pushed to."""
    return f"{image_repository}-outputs/{job}"


@dataclass
class Outputs:
    """A job's output files: ``ref`` is an artifact (``host/repo@sha256:...``, or by tag)
    or a local directory (an absolute path). ``insecure``: reach the registry over plain HTTP
    [when it is one of ``insecure_hosts``; the handles pass what their deployer knows]."""

    ref: str
    insecure: Optional[bool] = None
    credentials: Any = None
    insecure_hosts: tuple = ()
    _deleted: bool = field(default=False, repr=False)
    _modelcars: list = field(default_factory=list, repr=False)

    @property
    def is_artifact(self) -> bool:
        return not Path(self.ref).is_absolute()

    @property
    def uri(self) -> str:
        """``oci://host/repo@sha256:...`` (KServe's storage URI for an OCI model)."""
        return "oci://" + self.ref

    # -- registry ---------------------------------------------------------------------------

    def _insecure(self, registry: str) -> bool:
        return self.insecure if self.insecure is not None else registry in self.insecure_hosts

    def _client(self, *also: str):
        """The artifact's reference and a client for its registry (and the registries in ``also``)."""
        from .images.auth import resolve_credentials
        from .images.reference import ImageRef
        from .images.registry import RegistryClient

        ref = ImageRef.parse(self.ref)
        insecure = [r for r in dict.fromkeys((ref.registry, *also)) if self._insecure(r)]
        return ref, RegistryClient(credentials=resolve_credentials(credentials=self.credentials),
                                   insecure=insecure or False)

    def modelcar(self, base_image: str, *, platform: str = "linux/amd64") -> Any:
        """These files as a KServe modelcar image: ``base_image`` (it needs a shell, ``sh``) plus the
        layer the job pushed with them (the files under ``/models``), composed in the artifact's
        repository and pinned by digest (a :class:`~fairing.artifacts.RegistryImage`). Serve it with
        ``InferenceServiceDeployer(storage_uri="oci://" + str(image))`` on a KServe whose
        ``storageInitializer`` has ``enableModelcar``: the predictor reads the files under
        ``/mnt/models`` (fairing's serving runtime links them into its working directory, so
        ``load()`` opens them as the training code wrote them). :meth:`delete` deletes it too.
        The model never passes through here: only the image's config and manifest are written,
        around layers mounted in the registry (see :mod:`fairing.images.modelcar`)."""
        from .artifacts import RegistryImage
        from .errors import ConfigurationError
        from .images.manifest import Descriptor
        from .images.modelcar import modelcar_image
        from .images.reference import ImageRef
        from .runtime.outputs import ARTIFACT_TYPE, MODELCAR_ANNOTATION, MODELCAR_TYPE

        if not self.is_artifact:
            raise ConfigurationError(
                f"The outputs {self.ref} are a local directory, not an artifact in a registry: a modelcar is made "
                "from a cluster job's outputs. Serve local files with PredictionEndpoint(..., model=handle).")
        base = ImageRef.parse(str(base_image))
        manifest, digest = self._manifest()
        if manifest.get("artifactType") != ARTIFACT_TYPE:
            raise ConfigurationError(
                f"{self.ref} is not a fairing job's outputs artifact (its artifact type is "
                f"{manifest.get('artifactType')!r}, not {ARTIFACT_TYPE!r}): a modelcar is made from the outputs "
                "a job pushed (handle.outputs_artifact()).")
        layers = [layer for layer in manifest.get("layers", [])
                  if (layer.get("annotations") or {}).get(MODELCAR_ANNOTATION)
                  and layer.get("mediaType") == MODELCAR_TYPE]  # a file blob is no image layer
        if not layers:
            raise ConfigurationError(
                f"The outputs artifact {self.ref} holds no modelcar layer: the job wrote no files, an output's name "
                "has a part starting with '.wh.' (a whiteout in an image layer), or an older fairing runtime "
                "pushed it. Write the model under other names and run the job again.")
        ref, client = self._client(base.registry)
        # the image's bytes never name the address the registry was reached by: the same modelcar
        # made from another process or address is the same manifest (one tag, nothing left untagged)
        target = ImageRef(ref.registry, ref.repository, "modelcar-" + digest.split(":", 1)[1][:16], None)
        with client:
            pushed = modelcar_image(client, ImageRef(ref.registry, ref.repository, None, digest),
                                    Descriptor.from_json(layers[0]), base, target, platform=platform,
                                    note=f"{len(self._files_of(manifest))} files of {ref.repository}@{digest}")
        image = RegistryImage.pin(target, pushed, plain_http=self._insecure(ref.registry))
        self._modelcars.append(image)
        return image

    def manifest(self) -> dict:
        return self._manifest()[0]

    def _manifest(self) -> tuple[dict, str]:
        ref, client = self._client()
        with client:
            data, _media_type, digest = client.get_manifest(ref)
        return json.loads(data), digest

    def files(self) -> list[str]:
        """The relative paths of the files."""
        if not self.is_artifact:
            root = Path(self.ref)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return self._files_of(self.manifest())

    @staticmethod
    def _files_of(manifest: dict) -> list[str]:
        from .runtime.outputs import RESULT_TYPE, TITLE

        return [layer["annotations"][TITLE] for layer in manifest.get("layers", [])
                if (layer.get("annotations") or {}).get(TITLE) and layer.get("mediaType") != RESULT_TYPE]

    def download(self, dest: "str | Path" = ".") -> dict[str, Path]:
        """Copy the files under ``dest`` with their relative paths; ``{relative path: local path}``.

        A file there of the same name is replaced (a link is replaced, never written
        through); a directory, or a file where a directory is needed, is a
        :class:`~fairing.errors.ConfigurationError` raised before anything is written."""
        from .runtime.outputs import RESULT_TYPE, TITLE

        dest = Path(dest)
        got: dict[str, Path] = {}
        if not self.is_artifact:
            targets = _targets(dest, self.files())
            for rel, target in targets.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(Path(self.ref) / rel, "rb") as src:
                    _replace(target, lambda fh, src=src: shutil.copyfileobj(src, fh, 1 << 20))
                got[rel] = target
            return got
        manifest = self.manifest()
        layers = {(layer.get("annotations") or {}).get(TITLE): layer for layer in manifest.get("layers", [])
                  if (layer.get("annotations") or {}).get(TITLE) and layer.get("mediaType") != RESULT_TYPE}
        targets = _targets(dest, layers)
        ref, client = self._client()
        with client:
            for title, target in targets.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                _replace(target, lambda fh, digest=layers[title]["digest"]: client.download_blob(ref, digest, fh))
                got[title] = target
        return got

    def result_line(self) -> str:
        """The full result line a job too large for its termination message sent along."""
        from .runtime.outputs import RESULT_TYPE

        manifest = self.manifest()
        ref, client = self._client()
        with client:
            for layer in manifest.get("layers", []):
                if layer.get("mediaType") == RESULT_TYPE:
                    return client.get_blob(ref, layer["digest"]).decode("ascii")
        raise RegistryError(f"The outputs artifact {self.ref} holds no result.")

    def delete(self) -> None:
        """Delete the artifact's manifest and blobs (a directory: nothing, the job's own
        cleanup removes it). Idempotent; one already gone is fine. Blobs the repository's other
        tagged images use (another pod's outputs, their modelcars) are kept."""
        self._delete(keep_shared=True)

    def _delete(self, keep_shared: bool) -> None:
        if self._deleted or not self.is_artifact:
            return
        while self._modelcars:  # the modelcar images made from it, in its repository
            Outputs(str(self._modelcars[-1]), insecure=self.insecure, credentials=self.credentials).delete()
            self._modelcars.pop()
        try:
            manifest, digest = self._manifest()
        except RegistryError as exc:
            if exc.status == 404:
                self._deleted = True
                return
            raise
        ref, client = self._client()
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest.get("layers", []))]
        with client:
            client.request("DELETE", ref.api_host, f"/v2/{ref.repository}/manifests/{digest}",
                           repository=ref.repository, actions="delete", ok=(202, 200), allow=(404,),
                           what=f"deleting the outputs artifact {self.ref}").close()
            # the repository's other artifacts and modelcars (a job's other pods) may share blobs: the
            # same files, the base image's layers; a blob deleted here would be gone for them too
            kept = _blobs_in_use(client, ref, digest) if keep_shared else set()
            for blob in dict.fromkeys(b for b in blobs if b not in kept):
                client.request("DELETE", ref.api_host, f"/v2/{ref.repository}/blobs/{blob}",
                               repository=ref.repository, actions="delete", ok=(202, 200), allow=(404,),
                               what=f"deleting a blob of {self.ref}").close()
        self._deleted = True


def _blobs_in_use(client: Any, ref: Any, deleted: str) -> set:
    """The blobs of the manifests still tagged in ``ref``'s repository (but ``deleted``)."""
    resp = client.request("GET", ref.api_host, f"/v2/{ref.repository}/tags/list", repository=ref.repository,
                          allow=(404,), what=f"listing the tags of {ref.repository}")
    tags = (resp.json().get("tags") or []) if resp.status_code == 200 else []
    resp.close()
    used: set = set()
    for tag in tags:
        try:
            data, _media_type, digest = client.get_manifest(replace(ref, tag=tag, digest=None))
        except RegistryError as exc:
            if exc.status == 404:  # deleted meanwhile
                continue
            raise
        if digest == deleted:
            continue
        manifest = json.loads(data)
        used.update(d["digest"] for d in [manifest.get("config") or {}, *manifest.get("layers", [])] if "digest" in d)
    return used


def delete_repository(repository: str, *, insecure: Optional[bool] = None, credentials: Any = None) -> int:
    """Delete every artifact tagged in ``host/repository`` (a job's outputs repository);
    how many. A repository that does not exist holds none."""
    listing = Outputs(f"{repository}:outputs", insecure=insecure, credentials=credentials)
    ref, client = listing._client()
    with client:
        resp = client.request("GET", ref.api_host, f"/v2/{ref.repository}/tags/list", repository=ref.repository,
                              allow=(404,), what=f"listing the outputs in {repository}")
        tags = (resp.json().get("tags") or []) if resp.status_code == 200 else []
    for tag in tags:  # all of them go: no blob is kept for another (which would cost a read of each per tag)
        Outputs(f"{repository}:{tag}", insecure=insecure, credentials=credentials)._delete(keep_shared=False)
    return len(tags)
