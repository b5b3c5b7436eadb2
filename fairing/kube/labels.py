"""The labels fairing puts on what it creates in a cluster (and finds it by)."""

__all__ = ["JOB_LABEL", "MANAGED_BY", "VERSION_LABEL", "USER_LABEL", "PAYLOAD_LABEL", "SOURCE_ANNOTATION"]

#: Names the workload (Job, TFJob, build pod...) an object belongs to; pods are selected by it.
JOB_LABEL = "fairing.dev/job"
#: On every object fairing creates.
MANAGED_BY = {"app.kubernetes.io/managed-by": "fairing"}

# Who and what started a job (fairing.jobs.JobOrigin), on every workload a deployer creates.
VERSION_LABEL = "fairing.dev/version"
USER_LABEL = "fairing.dev/user"
PAYLOAD_LABEL = "fairing.dev/payload"
#: An annotation: a path is not a valid label value.
SOURCE_ANNOTATION = "fairing.dev/source"
