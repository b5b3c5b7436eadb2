"""Kubeflow Fairing's backend classes, as ``fairing.compat`` maps them."""

from fairing.compat import (AWSBackend, AzureBackend, GCPManagedBackend, GKEBackend, IBMCloudBackend,  # noqa: F401
                            KubeflowAWSBackend, KubeflowAzureBackend, KubeflowBackend, KubeflowGKEBackend,
                            KubernetesBackend)

__all__ = ["KubernetesBackend", "KubeflowBackend", "GKEBackend", "KubeflowGKEBackend", "AWSBackend",
           "KubeflowAWSBackend", "AzureBackend", "KubeflowAzureBackend", "IBMCloudBackend", "GCPManagedBackend"]
