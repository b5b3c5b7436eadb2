"""Every table of names fairing knows: backends, builders, deployers, serving deployers,
preprocessors, and the workload kinds a job can be.

At the bottom of fairing's import graph, with :mod:`fairing._options`: plain data, no
imports, so settings, the compatibility layer, the stages and the CLI all read the same
tables instead of writing their own. Each value is a ``'module:attr'`` string that
:func:`fairing._options.load` resolves on first use.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "CLUSTER_BACKENDS", "BUILDERS", "DEPLOYERS", "SERVING_DEPLOYERS", "PREPROCESSORS",
           "WORKLOAD_HANDLES"]

BACKENDS = {
    "local": "fairing.backends.local:local_backend",
    "docker": "fairing.backends.docker:docker_backend",
    "kubernetes": "fairing.backends.kubernetes:kubernetes_backend",
    "kubeflow": "fairing.backends.kubernetes:kubeflow_backend",
    "gke": "fairing.backends.cloud:gke_backend",
    "aws": "fairing.backends.cloud:aws_backend",
}

#: The backends whose jobs run on a Kubernetes cluster.
CLUSTER_BACKENDS = ("kubernetes", "kubeflow", "gke", "aws")

BUILDERS = {
    "local": "fairing.builders.local:LocalBuilder",
    "append": "fairing.builders.append:AppendBuilder",
    "docker": "fairing.builders.docker:DockerBuilder",
    "cluster": "fairing.builders.cluster:ClusterBuilder",
}

DEPLOYERS = {
    "local": "fairing.deployers.local:LocalDeployer",
    "docker": "fairing.deployers.docker:DockerDeployer",
    "job": "fairing.deployers.job:JobDeployer",
    "tfjob": "fairing.deployers.training:TFJobDeployer",
    "pytorchjob": "fairing.deployers.training:PyTorchJobDeployer",
    "trainjob": "fairing.deployers.trainjob:TrainJobDeployer",
    "serving": "fairing.deployers.serving:ServingDeployer",
    "kserve": "fairing.deployers.kserve:InferenceServiceDeployer",
}

#: The deployers ``PredictionEndpoint(deployer=...)`` takes by name.
SERVING_DEPLOYERS = {
    "serving": "fairing.deployers.serving:ServingDeployer",
    "kserve": "fairing.deployers.kserve:InferenceServiceDeployer",
}

PREPROCESSORS = {
    "function": "fairing.preprocessors.function:FunctionPreprocessor",
    "python": "fairing.preprocessors.python:PythonPreprocessor",
    "notebook": "fairing.preprocessors.notebook:NotebookPreprocessor",
    "full_notebook": "fairing.preprocessors.notebook:FullNotebookPreprocessor",
}

#: The handle classes of the cluster workloads fairing starts, by the kind recorded for
#: them. Each class declares its workload (``WORKLOAD``: api version, kind, plural), how
#: to read its phase and how to attach to it; job records, listing, attach and logs
#: iterate this table instead of naming kinds.
WORKLOAD_HANDLES = {
    "Job": "fairing.deployers.job:JobHandle",
    "TFJob": "fairing.deployers.training:TFJobHandle",
    "PyTorchJob": "fairing.deployers.training:PyTorchJobHandle",
    "TrainJob": "fairing.deployers.trainjob:TrainJobHandle",
    "Endpoint": "fairing.deployers.serving:KubeEndpointHandle",
    "InferenceService": "fairing.deployers.kserve:InferenceServiceHandle",
    "Experiment": "fairing.deployers.katib:KatibHandle",
}
