"""The profile fixture itself: the default-editor identity can do what kubeflow-edit allows,
nothing cluster-wide, and loses exactly the permission a test drops."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.e2e.kubeflow_profile import kubeflow_edit_rules


def test_default_editor_identity_is_namespace_scoped(make_profile):
    prof = make_profile()
    api = config.new_client_from_config(config_file=prof.kubeconfig)
    try:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
                namespace=prof.namespace, verb="create", group="kubeflow.org", resource="tfjobs"))))
        assert review.status.allowed
        assert client.CoreV1Api(api).list_namespaced_pod(prof.namespace).items == []
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(api).list_node()
        assert e.value.status == 403
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(api).list_namespaced_pod("default")
        assert e.value.status == 403
    finally:
        api.close()
    assert Path(prof.kubeconfig).stat().st_mode & 0o077 == 0
    prof.without("create", "kubeflow.org", "tfjobs")
    assert not prof.can("create", "kubeflow.org", "tfjobs")
    assert prof.can("get", "kubeflow.org", "tfjobs") and prof.can("create", "kubeflow.org", "pytorchjobs")


def test_dropping_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="no rule"):
        kubeflow_edit_rules(drop=[("create", "kubeflow.org", "tfjobz")])
    rules = kubeflow_edit_rules(drop=[("create", "kubeflow.org", "tfjobs")])
    assert not any("tfjobs" in r["resources"] and "create" in r["verbs"] for r in rules)
