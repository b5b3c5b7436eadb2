"""Kubeflow Fairing's ``kubernetes.utils``: ``get_resource_mutator``, as today's mutator."""

from fairing.compat import get_resource_mutator  # noqa: F401

__all__ = ["get_resource_mutator"]
