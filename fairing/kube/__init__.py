"""The Kubernetes layer shared by the in-cluster builder and the deployers.

* :mod:`.client` - :class:`KubeClient` (one connection; kubeconfig or service account
  from :mod:`fairing.environment`) and API errors as typed FairingErrors.
* :mod:`.kubeconfig` - every file of ``KUBECONFIG`` merged as kubectl merges them; the context.
* :mod:`.access` - the permission pre-flight: SelfSubjectAccessReviews for all a job needs.
* :mod:`.watch` - :class:`Workload`: watches on an object, its pods and their events, log
  streams, and the one waiting loop, :meth:`Workload.wait_until`.
* :mod:`.diagnose` - :func:`diagnose`: a pod's status as the error that explains it (pure).
* :mod:`.secrets` - Secrets: registry credentials as ``dockerconfigjson``, short-lived ones.
* :mod:`.pods` - :func:`run_pod`: a bare pod run to completion (the Kaniko build).
* :mod:`.labels` - the labels fairing finds its objects by.

The ``kubernetes`` package (extra ``kubernetes``) is imported on first use only.
"""

from .client import KubeClient, is_status, kubernetes_module, raise_for_api_error
from .diagnose import diagnose
from .labels import JOB_LABEL, MANAGED_BY
from .pods import Pod, pod_manifest, run_pod
from .secrets import delete_secret, registry_secret, write_secret
from .watch import Workload

__all__ = ["KubeClient", "kubernetes_module", "raise_for_api_error", "is_status", "diagnose", "Workload", "Pod",
           "run_pod", "pod_manifest", "write_secret", "delete_secret", "registry_secret", "JOB_LABEL", "MANAGED_BY"]
