"""Notebook helpers: finding the current notebook, what its kernel ran, and rendering progress in a cell."""
