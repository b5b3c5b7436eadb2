"""The warm builder: builds, with any registry builder, the image of a warm worker (the
base, the requirements and fairing's runtime; not the code) and hands it on with the
context whose files the warm deployer sends at each call (see :mod:`fairing.deployers.warm`).

The worker image depends only on the base, the requirements and the runtime, so a code
change builds nothing: the image is remembered in this process by those inputs, and the
registry builder's own caches cover a new process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Optional

from ..artifacts import RegistryImage, WarmImage
from ..context import BuildContext
from ..events import EventCallback
from ..runtime import PACKAGE, RUNTIME_DIR

__all__ = ["WarmBuilder", "worker_context", "WORKER_ENTRYPOINT"]

WORKER_ENTRYPOINT = ("python3", "-m", f"{PACKAGE}.warm")


def worker_context(context: BuildContext) -> BuildContext:
    """``context`` without the code: the runtime's files, its requirements, the worker's entrypoint."""
    runtime = {path: source for path, source in context.files.items()
               if path.startswith(f"{RUNTIME_DIR}/{PACKAGE}/")}
    return BuildContext(files=runtime, entrypoint=WORKER_ENTRYPOINT,
                        env={"PYTHONPATH": RUNTIME_DIR, "PYTHONUNBUFFERED": "1"}, workdir=context.workdir,
                        requirements=context.requirements, pip_indexes=context.pip_indexes,
                        constraints=context.constraints)


class WarmBuilder:
    """Wraps a builder that makes a :class:`~fairing.artifacts.RegistryImage`; builds the worker's image."""

    produces = WarmImage

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self._images: dict = {}
        self._lock = threading.Lock()

    @property
    def unwarmed(self) -> Any:
        """The registry builder this one wraps (what an endpoint builds with)."""
        return self.builder

    def build(self, context: BuildContext, *, on_event: Optional[EventCallback] = None) -> WarmImage:
        worker = worker_context(context)
        key = hashlib.sha256(json.dumps([worker.digest(), list(worker.requirements), list(worker.constraints),
                                         repr(worker.pip_indexes), worker.workdir]).encode()).hexdigest()
        with self._lock:
            image = self._images.get(key)
        if image is None:
            image = self.builder.build(worker, on_event=on_event)
            if not isinstance(image, RegistryImage):
                from ..errors import ConfigurationError

                raise ConfigurationError(f"warm=True needs a builder that pushes to a registry; "
                                         f"{type(self.builder).__name__} made a {type(image).__name__}.")
            with self._lock:
                self._images[key] = image
        return WarmImage(image, context)
