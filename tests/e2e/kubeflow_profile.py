"""A Kubeflow-profile-like namespace for e2e tests: where a Kubeflow user's notebook sits.
(Not named ``profile.py``: tests/e2e is on sys.path, and that would shadow the standard
library's ``profile``, which IPython imports.)

``make_profile(drop=...)`` (function-scoped factory; ``profile`` is one with every rule) creates

* a namespace ``fairing-prof-<uuid>``;
* a namespace Role ``kubeflow-edit`` holding the namespace-scoped rules of Kubeflow's aggregated
  ``kubeflow-edit`` ClusterRole (data in ``tests/cluster/manifests/kubeflow-edit-role.yaml``,
  which names the upstream files), minus the (verb, group, resource) triples in ``drop``;
* a ``default-editor`` ServiceAccount bound to it (RoleBinding ``default-editor``, as the profile
  controller names it);
* a token for that account (TokenRequest, one hour) and a kubeconfig file for that identity
  (the admin kubeconfig's server and CA, the token as the user; context ``default-editor``
  with the profile's namespace).

``Profile.without(verb, group, resource)`` narrows the Role later (e.g. no ``create`` on
``kubeflow.org/tfjobs``, the kubeflow/kubeflow#4375 case) and waits until the identity sees it.
Cleanup deletes the namespace (and waits for it) and the kubeconfig's directory.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import wait_until

ROLE_FILE = Path(__file__).resolve().parents[1] / "cluster" / "manifests" / "kubeflow-edit-role.yaml"
SERVICE_ACCOUNT = "default-editor"


def kubeflow_edit_rules(drop=(), trainer_fix=False) -> list[dict]:
    """The Role's rules as dicts, without the (verb, api_group, resource) triples in `drop`;
    ``trainer_fix``: with the file's platform_additions (create on trainer.kubeflow.org
    TrainJobs, which upstream's kubeflow-trainer-edit grants on the wrong group)."""
    doc = yaml.safe_load(ROLE_FILE.read_text())
    rules = doc["rules"] + (doc["platform_additions"] if trainer_fix else [])
    drop = {tuple(d) for d in drop}
    if not drop:
        return rules
    out = []
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs = [v for v in rule["verbs"] if (v, group, resource) not in drop]
                if verbs:
                    out.append({"apiGroups": [group], "resources": [resource], "verbs": verbs})
    known = {(v, g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    unknown = drop - known
    if unknown:
        raise ValueError(f"kubeflow-edit has no rule {sorted(unknown)} to drop")
    return out


@dataclass
class Profile:
    namespace: str
    kubeconfig: str  # a file for the default-editor identity
    token: str
    service_account: str = SERVICE_ACCOUNT
    _api: object = field(default=None, repr=False)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def without(self, verb: str, group: str, resource: str) -> None:
        """Drops one permission from the Role and waits until the identity no longer has it."""
        from kubernetes import client

        rbac = client.RbacAuthorizationV1Api(self._api)
        role = rbac.read_namespaced_role("kubeflow-edit", self.namespace)
        current = [r.to_dict() for r in role.rules]
        current = [{"apiGroups": r["api_groups"], "resources": r["resources"], "verbs": r["verbs"]} for r in current]
        drop = {(verb, group, resource)}
        rules = []
        for rule in current:
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    verbs = [v for v in rule["verbs"] if (v, g, res) not in drop]
                    if verbs:
                        rules.append({"apiGroups": [g], "resources": [res], "verbs": verbs})
        rbac.patch_namespaced_role("kubeflow-edit", self.namespace, {"rules": rules})
        wait_until(lambda: not self.can(verb, group, resource), 30, f"{self.username} losing {verb} {group}/{resource}")

    def can(self, verb: str, group: str, resource: str) -> bool:
        """What the API server answers the admin's SubjectAccessReview for this identity."""
        from kubernetes import client

        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=self.username, groups=["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=self.namespace, verb=verb, group=group, resource=resource)))
        return bool(client.AuthorizationV1Api(self._api).create_subject_access_review(review).status.allowed)


def _kubeconfig_for(admin_kubeconfig: str, namespace: str, token: str, path: Path) -> None:
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    ctx_name = admin.get("current-context")
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == ctx_name)
    cluster = dict(next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx["cluster"]))
    if "certificate-authority" in cluster:  # inline it: the file is self-contained
        ca = Path(admin_kubeconfig).parent / cluster.pop("certificate-authority")
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "profile-cluster", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": SERVICE_ACCOUNT, "context": {
            "cluster": "profile-cluster", "user": SERVICE_ACCOUNT, "namespace": namespace}}],
        "current-context": SERVICE_ACCOUNT,
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)


@pytest.fixture
def make_profile(kubeconfig, api_client, core_v1):
    """Factory: make_profile(drop=[(verb, group, resource), ...]) -> Profile; everything made is
    deleted after the test."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    made: list[tuple[str, Path]] = []

    def make(drop=(), trainer_fix=False) -> Profile:
        rules = kubeflow_edit_rules(drop, trainer_fix)
        ns = f"fairing-prof-{uuid.uuid4().hex[:10]}"
        tmp = Path(tempfile.mkdtemp(prefix="fairing-profile-"))
        core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=ns, labels={"app.kubernetes.io/part-of": "kubeflow-profile"})))
        made.append((ns, tmp))
        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(ns, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                         "metadata": {"name": "kubeflow-edit"}, "rules": rules})
        core_v1.create_namespaced_service_account(ns, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=SERVICE_ACCOUNT)))
        rbac.create_namespaced_role_binding(ns, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeflow-edit"},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]})
        token = core_v1.create_namespaced_service_account_token(SERVICE_ACCOUNT, ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
        path = tmp / "kubeconfig"
        _kubeconfig_for(kubeconfig, ns, token, path)
        prof = Profile(namespace=ns, kubeconfig=str(path), token=token, _api=api_client)
        wait_until(lambda: prof.can("create", "", "pods"), 30, f"the RoleBinding in {ns} to take effect")
        return prof

    yield make
    for ns, tmp in made:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            core_v1.delete_namespace(ns, propagation_policy="Foreground")
        except ApiException as e:
            if e.status != 404:
                raise

    def gone(ns):
        try:
            core_v1.read_namespace(ns)
            return False
        except ApiException as e:
            return e.status == 404

    for ns, _ in made:
        wait_until(lambda ns=ns: gone(ns), 180, f"deletion of namespace {ns}")


@pytest.fixture
def profile(make_profile) -> Profile:
    """A profile namespace whose default-editor holds every kubeflow-edit rule."""
    return make_profile()


__all__ = ["Profile", "kubeflow_edit_rules", "make_profile", "profile"]
