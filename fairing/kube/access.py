"""Permission pre-flight: before anything is packaged or pushed, ask the API server whether
the identity fairing runs as may do everything the builder and the deployer will do.

Builders and deployers that act on a cluster say what they need with
``required_access()`` (a list of :class:`Access`) and where with ``kube``;
:func:`preflight` checks all of it in one pass of SelfSubjectAccessReviews (one request per
(verb, resource), sent side by side; any authenticated identity may send them) and raises one
:class:`~fairing.errors.PermissionDeniedError` listing every refusal, who was refused, and
the RoleBinding that fixes it. A server that cannot answer (an old one, a webhook
authorizer that refuses the review itself) leaves the decision to the calls themselves.

SelfSubjectAccessReview rather than SelfSubjectRulesReview: the rules review is documented
as incomplete where a webhook or another authorizer is used, and it cannot say "denied"
for sure; an access review is the authorizer's own answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..errors import PermissionDeniedError

__all__ = ["Access", "preflight", "check", "identity", "WORKLOAD_VERBS"]

#: Seconds one review may take; a server that takes longer cannot tell (the calls will).
REVIEW_TIMEOUT = 10  # an int: the client ignores a float _request_timeout

#: What fairing does with the workload object it starts.
WORKLOAD_VERBS = ("create", "get", "list", "watch", "delete")


@dataclass(frozen=True)
class Access:
    """One permission: ``verb`` on ``resource`` (plural; ``pods/log`` for a subresource) of
    API ``group`` ('' for the core group)."""

    verb: str
    resource: str
    group: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def workload_access(group: str, plural: str, *, result_key: bool = True) -> list[Access]:
    """What a deployer needs to start, watch and delete its workload and read its pods;
    ``result_key``: it also writes, reads and deletes the Secret with the job's result key.
    Events are not asked for: every reader of them (the refused-pods watch, the diagnosis)
    works without them, so an identity that may not read events must not be refused."""
    return [*(Access(v, plural, group) for v in WORKLOAD_VERBS),
            *(Access(v, "pods") for v in ("get", "list", "watch")), Access("get", "pods/log"),
            *((Access(v, "secrets") for v in ("create", "get", "delete", "patch")) if result_key else ())]


def identity(kube: Any) -> Optional[str]:
    """The username the API server sees (SelfSubjectReview, Kubernetes 1.28+), or None."""
    try:
        k8s = kube.k8s
        review = k8s.client.AuthenticationV1Api(kube.api_client).create_self_subject_review(
            k8s.client.V1SelfSubjectReview(), _request_timeout=10)
        return review.status.user_info.username
    except Exception:  # an older server or client: the message says "the kubeconfig's user"
        return None


def check(kube: Any, needs: Iterable[Access], namespace: Optional[str] = None) -> list[tuple[str, str, str]]:
    """The ``(verb, resource, namespace)`` of ``needs`` the identity may not do in
    ``namespace`` [kube's]; [] when all are allowed or the server cannot tell."""
    namespace = namespace or kube.namespace
    try:
        k8s = kube.k8s
        api = k8s.client.AuthorizationV1Api(kube.api_client)
    except Exception:  # not a real connection (a test double): nothing to ask
        return []

    def allowed(need: Access) -> Optional[bool]:
        resource, _, sub = need.resource.partition("/")
        body = k8s.client.V1SelfSubjectAccessReview(spec=k8s.client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.client.V1ResourceAttributes(
                namespace=namespace, verb=need.verb, group=need.group, resource=resource, subresource=sub or None)))
        try:
            return bool(api.create_self_subject_access_review(body, _request_timeout=REVIEW_TIMEOUT).status.allowed)
        except Exception:  # cannot ask: the real calls will say
            return None

    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(needs))  # each once, in order
    if not unique:
        return []
    # One first: a server that cannot answer (no such API, a refused or hanging review)
    # costs one timeout, not one per batch, before the real calls decide.
    first = allowed(unique[0])
    if first is None:
        return []
    # the rest 4 at once: within the client's connection pool (a fuller one logs warnings)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fairing-access") as pool:
        answers = [first, *pool.map(allowed, unique[1:])]
    if None in answers:
        return []
    return [(need.verb, need.full_resource, namespace) for need, ok in zip(unique, answers) if not ok]


def _fix(namespace: str, who: Optional[str]) -> str:
    if who and who.startswith("system:serviceaccount:"):
        sa_ns, sa = who.split(":")[2:4]
        subject = f"  - kind: ServiceAccount\n    name: {sa}\n    namespace: {sa_ns}"
    else:
        subject = f"  - kind: User\n    name: {who or '<your user>'}\n    apiGroup: rbac.authorization.k8s.io"
    return ("Ask the namespace's owner to bind the identity to Kubeflow's kubeflow-edit role (or a role with "
            "these rules), e.g. kubectl apply -f - with:\n"
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n"
            f"  name: fairing-edit\n  namespace: {namespace}\n"
            "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: kubeflow-edit\n"
            f"subjects:\n{subject}\n"
            "or run in a namespace where it has them (namespace=...).")


def preflight(*parts: Any) -> None:
    """Check what each of ``parts`` (a builder, a deployer) needs on its cluster, in one pass;
    raise PermissionDeniedError listing every permission missing. Parts that need nothing
    on a cluster (no ``required_access``) are skipped."""
    groups: dict = {}
    for part in parts:
        needs_fn = getattr(part, "required_access", None)
        if needs_fn is None:
            continue
        needs = list(needs_fn())
        if not needs:
            continue
        kube = part.kube
        groups.setdefault((id(kube), kube.namespace), (kube, []))[1].extend(needs)
    missing: list = []
    first_kube = None
    for kube, needs in groups.values():
        first_kube = first_kube or kube
        for item in check(kube, needs):
            if item not in missing:
                missing.append(item)
    if not missing:
        return
    who = identity(first_kube)
    namespaces = sorted({ns for _v, _r, ns in missing})
    rows = "\n".join(f"  {verb} {resource} in namespace {ns}" for verb, resource, ns in missing)
    fix = _fix(namespaces[0], who)
    if any(resource == "trainjobs.trainer.kubeflow.org" and verb in ("create", "delete")
           for verb, resource, _ns in missing):
        # kubeflow/trainer's kubeflow-trainer-edit names the kubeflow.org group for trainjobs
        fix += ("\nNote: Kubeflow's kubeflow-edit lets its users read TrainJobs (trainer.kubeflow.org) but, as "
                "kubeflow/trainer ships it, create them only in the kubeflow.org group: the namespace's owner needs "
                "a rule with apiGroups [trainer.kubeflow.org], resources [trainjobs], verbs [create, delete].")
    raise PermissionDeniedError(
        f"{who or 'The kubeconfig user'} may not do what this job needs (checked before anything was built or "
        f"pushed):\n{rows}\n{fix}", missing=tuple(missing), identity=who)
