"""Python preprocessor: an entry script plus its input files and requirements."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from ..context import BuildContext
from ..errors import ConfigurationError, EntryPointNotFoundError
from .base import add_generated, default_requirements, payload_context
from .files import collect_input_files, image_path

__all__ = ["PythonPreprocessor"]


class PythonPreprocessor:
    """Run ``entry_point`` (a .py file) with ``args``.

    Paths are relative to ``base_dir`` (default: the entry script's directory), and the
    image keeps that layout, so ``open('data/train.csv')`` works in the job as it does
    here. ``requirements`` defaults to ``base_dir/requirements.txt`` when it exists.
    """

    def __init__(
        self,
        entry_point: os.PathLike | str,
        *,
        input_files: Any = (),
        args: Iterable[str] = (),
        requirements: Any = None,
        base_dir: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        entry = Path(entry_point)
        if not entry.is_file():
            raise EntryPointNotFoundError(
                f"The entry point {str(entry_point)!r} does not exist (current directory: {os.getcwd()!r}). "
                "Check the path of the script to run."
            )
        if entry.suffix != ".py":
            raise ConfigurationError(
                f"The entry point {str(entry_point)!r} is not a .py file. Use NotebookPreprocessor for a notebook."
            )
        self.entry_point = entry
        self.base_dir = Path(base_dir) if base_dir is not None else entry.resolve().parent
        self.input_files = input_files
        self.args = [str(a) for a in args]
        self.requirements = default_requirements(requirements, self.base_dir)
        self.env = dict(env or {})

    def context(self) -> BuildContext:
        files: dict = dict(collect_input_files(self.input_files, self.base_dir))
        entry_rel = image_path(self.entry_point, self.base_dir)
        add_generated(files, entry_rel, self.entry_point, f"The entry script {self.entry_point}")
        payload = {"kind": "script", "path": entry_rel, "args": self.args}
        return payload_context(payload, files, requirements=self.requirements, env=self.env)
