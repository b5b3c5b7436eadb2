"""Preprocessors capture user code into a BuildContext.

``function`` (cloudpickle), ``python`` (script + input files), ``notebook`` (converted to a
script), ``full_notebook`` (run whole with papermill). Each has ``context() -> BuildContext``.
"""

from __future__ import annotations

from .base import Preprocessor

__all__ = ["Preprocessor", "get_preprocessor", "PREPROCESSORS"]

PREPROCESSORS = {
    "function": "fairing.preprocessors.function:FunctionPreprocessor",
    "python": "fairing.preprocessors.python:PythonPreprocessor",
    "notebook": "fairing.preprocessors.notebook:NotebookPreprocessor",
    "full_notebook": "fairing.preprocessors.notebook:FullNotebookPreprocessor",
}


def get_preprocessor(name: str):
    """The preprocessor class registered under ``name``."""
    from .._registry import load

    return load(PREPROCESSORS, name, "preprocessor")
