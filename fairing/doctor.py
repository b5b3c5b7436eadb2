"""``fairing doctor``: check a setup before the first submit, one check at a time.

Each :class:`Check` says PASS, FAIL, WARN (works, but not as expected), SKIP (not needed
for the chosen backend, or an earlier check failed) or CANNOT TELL (the cluster did not let
fairing look), and for a failure the fix. What is checked:

* the kubeconfig and its context (cluster backends);
* who fairing is on the cluster (``SelfSubjectReview``) and whether it may do what the
  default deployer does in the namespace: create and delete Jobs and Secrets, read Pods and
  their logs (``SelfSubjectAccessReview``, the question ``kubectl auth can-i`` asks);
* the registry: reachable, and the credentials accepted (``GET /v2/``, the distribution
  API's version check, through fairing's own registry client and credentials);
* the resource types of each deployer (TFJob, PyTorchJob, TrainJob, InferenceService), by
  API discovery of their group/version;
* the Docker engine (a ping, its version);
* the base image's Python against the local one (a function is pickled here and loaded
  there: both need the same ``major.minor``).

It sits with the facade: it reads the settings and calls the stages' own clients, so a
check passes exactly when the real submit path would get that far.
"""

from __future__ import annotations

import logging
import platform as _platform
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from .errors import FairingError
from .settings import Settings, resolve

__all__ = ["Check", "run_checks", "PASS", "FAIL", "WARN", "SKIP", "UNKNOWN"]

log = logging.getLogger(__name__)

PASS, FAIL, WARN, SKIP, UNKNOWN = "PASS", "FAIL", "WARN", "SKIP", "CANNOT TELL"

#: What the default (job) deployer does in the namespace: (verb, resource, subresource, group).
JOB_PERMISSIONS = (
    ("create", "jobs", "", "batch"),
    ("delete", "jobs", "", "batch"),
    ("create", "secrets", "", ""),
    ("delete", "secrets", "", ""),
    ("list", "pods", "", ""),
    ("watch", "pods", "", ""),
    ("get", "pods", "log", ""),
)


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``name`` (what was checked), ``status`` (PASS, FAIL, WARN, SKIP,
    CANNOT TELL), ``detail`` (what was found) and ``fix`` (what to do, for anything but PASS)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Doctor:
    def __init__(self, settings: Settings, backend: str, kubeconfig: Optional[str]) -> None:
        self.settings = settings
        self.backend = backend
        self.kubeconfig = kubeconfig
        self.cluster = backend in _cluster_backends()
        self.kube: Any = None
        self.checks: list[Check] = []

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        log.debug("doctor: %s: %s (%s)", name, status, detail)
        self.checks.append(Check(name, status, detail, fix))

    # -- Kubernetes ---------------------------------------------------------------------

    def kubeconfig_check(self) -> None:
        name = "kubeconfig and context"
        if not self.cluster:
            self.add(name, SKIP, f"the {self.backend} backend needs no cluster")
            return
        from .environment import current
        from .kube.client import KubeClient

        env = current()
        try:
            self.kube = KubeClient(kubeconfig=self.kubeconfig, namespace=self.settings.namespace)
        except FairingError as exc:
            self.add(name, FAIL, _first_line(exc),
                     "Point KUBECONFIG at your cluster's kubeconfig (kubectl config view shows what is read), "
                     "or choose the local or docker backend.")
            return
        host = self.kube.api_client.configuration.host
        where = "in-cluster service account" if env.in_cluster and not env.kubeconfig_env else \
            str(self.kubeconfig or env.kubeconfig)
        try:
            version = self.kube.k8s.client.VersionApi(self.kube.api_client).get_code(_request_timeout=10)
        except Exception as exc:
            self.kube = None
            self.add(name, FAIL, f"{where}: the API server at {host} does not answer: {_short(exc)}",
                     "Check that the cluster is up and that the kubeconfig's current context points at it "
                     "(kubectl cluster-info).")
            return
        self.add(name, PASS, f"{where}: API server {host} (Kubernetes {version.git_version}), "
                             f"namespace {self.kube.namespace}")

    def identity_check(self) -> None:
        name = "identity and permissions"
        if self.kube is None:
            self.add(name, SKIP, "needs a cluster" if not self.cluster else "the cluster could not be reached")
            return
        client = self.kube.k8s.client
        user = "?"
        try:
            review = client.AuthenticationV1Api(self.kube.api_client).create_self_subject_review(
                client.V1SelfSubjectReview(), _request_timeout=10)
            user = review.status.user_info.username or "?"
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 401:
                self.add(name, FAIL, "the API server did not accept the kubeconfig's credentials",
                         "Refresh your kubeconfig (log in to the cluster again).")
                return
            log.debug("SelfSubjectReview failed: %s", _short(exc))  # older clusters: identity unknown
        namespace = self.kube.namespace
        denied, unknown = [], []
        api = client.AuthorizationV1Api(self.kube.api_client)
        for verb, resource, sub, group in JOB_PERMISSIONS:
            attrs = client.V1ResourceAttributes(namespace=namespace, verb=verb, resource=resource,
                                                subresource=sub or None, group=group)
            what = f"{verb} {resource}{'/' + sub if sub else ''}"
            try:
                answer = api.create_self_subject_access_review(
                    client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=attrs)), _request_timeout=10)
            except Exception as exc:
                log.debug("SelfSubjectAccessReview %s failed: %s", what, _short(exc))
                unknown.append(what)
                continue
            if not answer.status.allowed:
                denied.append(what)
        if denied:
            self.add(name, FAIL, f"{user} may not {', '.join(denied)} in namespace {namespace}",
                     f"Bind {user} to a Role in {namespace} that allows these (kubectl auth can-i --list "
                     f"-n {namespace} shows what it may do), or choose a namespace where it may.")
        elif unknown:
            self.add(name, UNKNOWN, f"{user}: the cluster did not answer whether it may {', '.join(unknown)}",
                     "Ask the cluster's administrator for the permissions to create Jobs and Secrets and read "
                     "Pods and their logs.")
        else:
            self.add(name, PASS, f"{user} may run jobs in namespace {namespace} "
                                 "(create Jobs and Secrets, read Pods and their logs)")

    def crd_checks(self) -> None:
        from ._names import WORKLOAD_HANDLES
        from ._options import load

        for record_kind, target in WORKLOAD_HANDLES.items():
            workload = load(WORKLOAD_HANDLES, record_kind, "workload").WORKLOAD
            if not workload.custom:
                continue
            name = f"{workload.kind} resource type"
            if self.kube is None:
                self.add(name, SKIP, "needs a cluster" if not self.cluster else "the cluster could not be reached")
                continue
            group, version = workload.group_version
            try:
                found = self.kube.custom.get_api_resources(group, version, _request_timeout=10)
                plurals = {r.name for r in found.resources or ()}
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status == 404:
                    plurals = set()
                elif status in (401, 403):
                    self.add(name, UNKNOWN, f"cannot tell: the cluster does not let fairing list {group}/{version}",
                             "Ask the cluster's administrator whether the operator is installed.")
                    continue
                else:
                    self.add(name, UNKNOWN, f"cannot tell: {_short(exc)}", "Try again; check the cluster.")
                    continue
            if workload.plural in plurals:
                self.add(name, PASS, f"{workload.plural}.{group}/{version} is served")
            else:
                self.add(name, WARN, f"{workload.plural}.{group}/{version} is not installed; the deployers that "
                                     f"make a {workload.kind} cannot be used",
                         _OPERATORS.get(workload.kind, "Install the operator that provides it."))

    # -- registry and images --------------------------------------------------------------

    def _registry_client(self):
        from .images.registry.client import RegistryClient

        return RegistryClient(insecure=list(self.settings.insecure_registries) or False,
                              ca_bundle=self.settings.ca_bundle, retries=0, timeout=(5.0, 15.0))

    def registry_check(self) -> None:
        name = "registry"
        registry = self.settings.registry
        if self.backend == "local":
            self.add(name, SKIP, "the local backend pushes no image")
            return
        if not registry:
            self.add(name, FAIL, "no registry is set",
                     "Set one: registry = \"host:port/team\" in fairing.toml, FAIRING_REGISTRY, or --registry.")
            return
        from .errors import RegistryAuthError
        from .images.reference import parse_registry

        try:
            host = parse_registry(registry).host
            with self._registry_client() as client:
                client.request("GET", host, "/v2/", ok=(200,), what="checking the registry", retry=False)
        except RegistryAuthError as exc:
            self.add(name, FAIL, f"{registry}: credentials not accepted: {_first_line(exc)}",
                     f"Log in again: docker login {host} (fairing reads the same ~/.docker/config.json).")
            return
        except FairingError as exc:
            self.add(name, FAIL, f"{registry}: {_first_line(exc)}",
                     "Check the address (and insecure_registries for a plain-HTTP registry), and that the registry "
                     "is running and reachable from here.")
            return
        self.add(name, PASS, f"{registry} answers and accepts fairing's credentials")

    def base_image_check(self) -> None:
        name = "base image Python"
        local = ".".join(_platform.python_version_tuple()[:2])
        image = self.settings.base_image
        if self.backend == "local":
            self.add(name, SKIP, f"the local backend runs on this Python ({local})")
            return
        if not image:
            self.add(name, FAIL, "no base image is set",
                     "Set one: base_image = \"python:3.11-slim\" in fairing.toml, FAIRING_BASE_IMAGE or --base-image.")
            return
        try:
            found = self._base_python(image)
        except FairingError as exc:
            self.add(name, FAIL, f"{image}: {_first_line(exc)}",
                     "Check the base image's name and that the registry serves it.")
            return
        if found is None:
            self.add(name, WARN, f"{image}: its Python could not be told",
                     "Use an image with Python (python:X.Y-slim), or set python_version in the settings.")
        elif found != local:
            self.add(name, FAIL, f"{image} has Python {found}; this machine runs {local}",
                     f"Use a base image with Python {local} (e.g. python:{local}-slim): a function pickled here "
                     "loads only on the same Python.")
        else:
            self.add(name, PASS, f"{image} has Python {found}, as here")

    def _base_python(self, image: str) -> Optional[str]:
        import json

        from .environment import current
        from .images.base_python import base_image_python
        from .images.manifest import DOCKER_MANIFEST_LIST, OCI_INDEX, Platform, select_platform
        from .images.reference import ImageRef

        ref = ImageRef.parse(image)
        with self._registry_client() as client:
            data, media_type, _digest = client.get_manifest(ref)
            manifest = json.loads(data)
            if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in manifest:
                chosen = select_platform(manifest, Platform.parse(self.settings.platform or "linux/amd64"),
                                         name=image)
                data, _media_type, _digest = client.get_manifest(ref.with_digest(chosen.digest))
                manifest = json.loads(data)
            config_digest = manifest["config"]["digest"]
            config = json.loads(client.get_blob(ref, config_digest))
            return base_image_python(client, ref, manifest, config, config_digest=config_digest,
                                     cache_dir=current().cache_dir)

    # -- Docker -----------------------------------------------------------------------------

    def docker_check(self) -> None:
        name = "Docker engine"
        from .environment import current

        endpoint = current().docker_endpoint
        try:
            from ._docker import make_client

            client = make_client(None, timeout=10, purpose="fairing doctor")
            try:
                version = client.version().get("Version", "?")
            finally:
                client.close()
        except FairingError as exc:
            status = FAIL if self.backend == "docker" else WARN
            self.add(name, status, f"{endpoint}: {_first_line(exc)}" + (
                "" if status == FAIL else f" (the {self.backend} backend does not need it)"),
                "Start the Docker engine, or point DOCKER_HOST at one.")
            return
        self.add(name, PASS, f"{endpoint}: Docker {version}")


_OPERATORS = {
    "TFJob": "Install the Kubeflow training operator (v1) for the tfjob deployer.",
    "PyTorchJob": "Install the Kubeflow training operator (v1) for the pytorchjob deployer.",
    "TrainJob": "Install Kubeflow Trainer v2 (and JobSet) for the trainjob deployer.",
    "InferenceService": "Install KServe for PredictionEndpoint(deployer='kserve').",
}


def _short(exc: BaseException) -> str:
    from .images.registry.transport import short_reason

    return short_reason(exc)


def _cluster_backends() -> tuple:
    from ._names import CLUSTER_BACKENDS

    return CLUSTER_BACKENDS


#: The longest one step may take (a registry or API server that trickles a byte every few
#: seconds never trips a read timeout): past it, the step is a FAIL and doctor goes on.
STEP_LIMIT = 45.0

_STEP_NAMES = {"kubeconfig_check": "kubeconfig", "identity_check": "identity and permissions",
               "crd_checks": "resource types", "registry_check": "registry",
               "base_image_check": "base image Python", "docker_check": "Docker engine"}


def _bounded(doctor: "_Doctor", step: str) -> list[Check]:
    """Run ``step`` on a copy of ``doctor`` in a daemon thread for at most :data:`STEP_LIMIT`
    seconds; its checks, or one FAIL saying it did not finish (the thread is abandoned: what it
    adds later goes to its own list, and it ends with the process)."""
    import copy
    import threading

    worker = copy.copy(doctor)
    worker.checks = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            getattr(worker, step)()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"fairing-doctor-{step}", daemon=True)
    thread.start()
    thread.join(STEP_LIMIT)
    if thread.is_alive():
        return [Check(_STEP_NAMES.get(step, step), FAIL, f"no answer within {STEP_LIMIT:.0f} s (a server accepted "
                      "the connection but did not finish answering)",
                      "Check that the address is the registry's or the cluster's, and that nothing in between holds "
                      "connections open.")]
    if failure:
        raise failure[0]
    doctor.__dict__.update({k: v for k, v in worker.__dict__.items() if k != "checks"})  # e.g. the kube client
    return worker.checks


def run_checks(backend: Optional[str] = None, *, kubeconfig: Optional[str] = None,
               settings: Optional[Settings] = None,
               on_check: Optional[Callable[[Check], None]] = None) -> list[Check]:
    """Run every check for ``backend`` (default: the ``backend`` setting, else local) and
    return them in order; ``on_check`` sees each one as it finishes."""
    settings = settings or resolve()
    doctor = _Doctor(settings, backend or settings.backend or "local", kubeconfig)
    for step in _STEP_NAMES:
        before = len(doctor.checks)
        doctor.checks.extend(_bounded(doctor, step))
        if on_check is not None:
            for check in doctor.checks[before:]:
                on_check(check)
    return doctor.checks
