"""What a job carries: who and what started it (:class:`JobOrigin`), as labels and annotations."""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kube.labels import PAYLOAD_LABEL, SOURCE_ANNOTATION, USER_LABEL, VERSION_LABEL

__all__ = ["JobOrigin", "origin_of", "stamped"]


def _label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._")


@dataclass(frozen=True)
class JobOrigin:
    """Who and what started a job. ``payload``: 'function', 'script', 'notebook' or 'serve'."""

    version: str
    user: str
    payload: str
    source: str

    def labels(self) -> dict:
        return {VERSION_LABEL: _label_value(self.version), USER_LABEL: _label_value(self.user),
                PAYLOAD_LABEL: _label_value(self.payload)}

    def annotations(self) -> dict:
        return {SOURCE_ANNOTATION: self.source}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): the uid says enough
        return f"uid-{os.getuid()}"


def origin_of(context: Any, preprocessor: Any = None) -> JobOrigin:
    """The origin of a job running ``context`` (a BuildContext) made by ``preprocessor``:
    the payload kind from the context's payload description, the source from the preprocessor."""
    from .. import __version__
    from ..runtime import PAYLOAD_FILE

    payload: dict = {}
    data = context.files.get(PAYLOAD_FILE) if context is not None else None
    if isinstance(data, (bytes, Path)):
        try:
            payload = json.loads(data if isinstance(data, bytes) else data.read_bytes())
        except (OSError, ValueError):
            payload = {}
    kind = payload.get("kind", "unknown")
    source = str(payload.get("path", ""))
    notebook = getattr(preprocessor, "notebook", None)
    target = getattr(preprocessor, "target", None)
    if notebook is not None:  # a notebook converted to a script is still a notebook to its user
        kind, source = "notebook", str(notebook)
    elif getattr(preprocessor, "entry_point", None) is not None:
        source = str(preprocessor.entry_point)
    elif target is not None:
        source = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
    return JobOrigin(__version__, _user(), kind, source)


def stamped(deployer: Any, origin: JobOrigin) -> Any:
    """``deployer`` with the origin's labels and annotations added (a copy; a deployer
    that has no labels, such as the local one, is returned as it is)."""
    if not (isinstance(getattr(deployer, "labels", None), dict)
            and isinstance(getattr(deployer, "annotations", None), dict)):
        return deployer
    import copy

    new = copy.copy(deployer)
    new.labels = {**origin.labels(), **deployer.labels}
    new.annotations = {**origin.annotations(), **deployer.annotations}
    return new
