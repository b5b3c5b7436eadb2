"""Image repository names derived from a build context, shared by the registry builders."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

from ..context import BuildContext
from ..runtime import PAYLOAD_FILE

__all__ = ["DEFAULT_REPOSITORY", "repository_name"]

DEFAULT_REPOSITORY = "fairing-job"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text.lower()).strip("-")[:60].strip("-")


def repository_name(context: BuildContext) -> str:
    """``fairing-<script or notebook stem>``, else ``fairing-job``."""
    candidates = [a for a in context.entrypoint if a.endswith((".py", ".ipynb"))]
    payload = context.files.get(PAYLOAD_FILE)
    if isinstance(payload, bytes):
        try:
            path = json.loads(payload).get("path")
        except ValueError:
            path = None
        if path:
            candidates.append(path)
    for candidate in candidates:
        slug = _slug(PurePosixPath(candidate).stem)
        if slug:
            return f"fairing-{slug}"
    return DEFAULT_REPOSITORY
