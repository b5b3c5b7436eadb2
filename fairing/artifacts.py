"""The values that pass from a builder to a deployer, and the protocols of both stages.

A builder turns a :class:`~fairing.context.BuildContext` into one *artifact*; a deployer
runs an artifact and returns a :class:`~fairing.handle.Handle`::

    Builder[T].build(context) -> T          T is one of the artifact types below
    Deployer[T].deploy(artifact: T) -> Handle

* :class:`RegistryImage` - an image in a registry, pinned by digest (append, cluster,
  and Docker builders with a registry). Every cluster deployer runs it; so does the
  Docker deployer.
* :class:`DockerImage` - an image held only by a local Docker engine (the Docker builder
  without a registry). Only the Docker deployer runs it.
* :class:`LocalDir` - the context plus its installed requirements on this machine (the
  local builder). Only the local deployer runs it.

A builder says what it makes in ``produces``, a deployer what it runs in ``accepts``;
:func:`check_pair` refuses a pair that share no artifact type when they are put
together (a :class:`~fairing.backends.Backend` is made), not at deploy time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, TypeVar, Union, runtime_checkable

from .errors import ConfigurationError
from .images.reference import ImageRef

__all__ = ["RegistryImage", "DockerImage", "LocalDir", "WarmImage", "Artifact", "Builder", "Deployer", "check_pair",
           "pairs_that_work", "produced_by", "accepted_by"]


@dataclass(frozen=True)
class RegistryImage(ImageRef):
    """An :class:`~fairing.images.ImageRef` that is pinned: ``digest`` is always set, so what
    runs is exactly what was built. ``str()`` is ``registry/repository[:tag]@sha256:...``.
    ``plain_http``: the builder reached the registry over plain HTTP (an insecure registry),
    so a job that pushes back to it (its outputs) does the same."""

    plain_http: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.digest:
            raise ConfigurationError(
                f"A RegistryImage must be pinned by digest, got {self.name}:{self.tag or 'latest'}. "
                "Use RegistryImage.pin(ref, digest) with the digest the registry returned."
            )

    @classmethod
    def pin(cls, ref: "ImageRef | str", digest: str, *, plain_http: bool = False) -> "RegistryImage":
        """``ref`` (its name and tag) pinned to ``digest``."""
        ref = ImageRef.parse(ref) if isinstance(ref, str) else ref
        return cls(ref.registry, ref.repository, ref.tag, digest, plain_http=plain_http)

    @property
    def ref(self) -> ImageRef:
        """The same reference as a plain :class:`ImageRef`."""
        return ImageRef(self.registry, self.repository, self.tag, self.digest)

    # Dropping the digest leaves a plain reference, not an artifact.
    def with_tag(self, tag: str) -> ImageRef:
        return self.ref.with_tag(tag)

    def with_repository(self, repository: str) -> ImageRef:
        return self.ref.with_repository(repository)

    def with_digest(self, digest: str) -> "RegistryImage":
        return replace(self, digest=digest)


@dataclass(frozen=True)
class DockerImage:
    """An image in a local Docker engine only (not pushed): ``id`` is its image ID
    (``sha256:...``), ``name`` the local tag it was given."""

    id: str
    name: str = ""

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class LocalDir:
    """What the local deployer runs: the context, the interpreter, and a site dir of
    installed requirements (None when the interpreter already has them)."""

    context: Any  # fairing.context.BuildContext (not imported: this module stays light)
    python: str
    site_dir: Optional[Path] = None


@dataclass(frozen=True)
class WarmImage:
    """What the warm deployer runs: ``image``, the worker's image (base and requirements,
    no code), and ``context``, whose files go to the worker at each call."""

    image: RegistryImage
    context: Any  # fairing.context.BuildContext

    def __str__(self) -> str:
        return str(self.image)


Artifact = Union[RegistryImage, DockerImage, LocalDir, WarmImage]
T = TypeVar("T", RegistryImage, DockerImage, LocalDir)
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


@runtime_checkable
class Builder(Protocol[T_co]):
    """``build(context, *, on_event=None) -> T``; ``produces`` is the artifact class (or a
    tuple of the classes one builder may make, when its options decide)."""

    produces: Any

    def build(self, context: Any, *, on_event: Any = None) -> T_co:
        ...


@runtime_checkable
class Deployer(Protocol[T_contra]):
    """``deploy(artifact, *, name=None, on_event=None) -> Handle``; ``accepts`` is the
    tuple of artifact classes it runs."""

    accepts: tuple

    def deploy(self, artifact: T_contra, *, name: Optional[str] = None, on_event: Any = None) -> Any:
        ...


def _types(value: Any) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list, set, frozenset)) else (value,)


def produced_by(builder: Any) -> tuple:
    """The artifact classes ``builder`` may return (empty: it does not say)."""
    return _types(getattr(builder, "produces", None))


def accepted_by(deployer: Any) -> tuple:
    """The artifact classes ``deployer`` runs (empty: it does not say)."""
    return _types(getattr(deployer, "accepts", None))


def _works_with(produces: tuple, accepts: tuple) -> bool:
    return any(issubclass(p, a) for p in produces for a in accepts)


def pairs_that_work(builders: Mapping[str, Any], deployers: Mapping[str, Any]) -> list[str]:
    """'T: builders a, b -> deployers c, d' lines for named builder and deployer classes."""
    made = {name: produced_by(cls) for name, cls in builders.items()}
    runs = {name: accepted_by(cls) for name, cls in deployers.items()}
    lines = []
    for kind in (LocalDir, DockerImage, RegistryImage):
        makers = [b for b, p in made.items() if _works_with(p, (kind,))]
        runners = [d for d, a in runs.items() if _works_with((kind,), a)]
        lines.append(f"{kind.__name__}: builders {', '.join(makers)} -> deployers {', '.join(runners)}")
    return lines


def check_pair(builder: Any, deployer: Any, *, what: str = "deployer",
               known_pairs: Optional[Callable[[], Iterable[str]]] = None) -> None:
    """Raise ConfigurationError when ``deployer`` cannot run anything ``builder`` makes.

    Stages that do not declare ``produces``/``accepts`` (your own classes) are trusted.
    ``known_pairs`` gives the lines of pairs that work for the message (see
    :func:`pairs_that_work`); it is called only when the pair is refused.
    """
    produces, accepts = produced_by(builder), accepted_by(deployer)
    if not produces or not accepts or _works_with(produces, accepts):
        return
    made = " or ".join(t.__name__ for t in produces)
    runs = " or ".join(t.__name__ for t in accepts)
    hint = ""
    if DockerImage in produces and RegistryImage in accepts:
        hint = " Give the Docker builder registry= so that it pushes (and returns a RegistryImage)."
    pairs = "\n  ".join(known_pairs()) if known_pairs else ""
    raise ConfigurationError(
        f"{type(builder).__name__} makes a {made}, which {type(deployer).__name__} (the {what}) cannot run: "
        f"it runs a {runs}.{hint}" + (f" The pairs that work:\n  {pairs}" if pairs else "")
    )
