"""Notebook helpers: finding the current notebook, and rendering progress in a cell."""
