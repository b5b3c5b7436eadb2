"""The labels fairing puts on what it creates in a cluster (and finds it by)."""

__all__ = ["JOB_LABEL", "MANAGED_BY"]

#: Names the workload (Job, TFJob, build pod...) an object belongs to; pods are selected by it.
JOB_LABEL = "fairing.dev/job"
#: On every object fairing creates.
MANAGED_BY = {"app.kubernetes.io/managed-by": "fairing"}
