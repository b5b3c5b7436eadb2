"""Kubeflow Fairing's ``kubernetes`` package: only ``utils.get_resource_mutator`` is kept."""
