"""Permission pre-flight with a Kubeflow profile's default-editor identity: a TFJob submit
whose role lacks `create` on TFJobs fails with PermissionDeniedError before any registry
request (counted through a proxy in front of the registry); with the whole role the same
identity's pre-flight passes and a Job runs; diagnosis works for a namespace-scoped identity."""

from __future__ import annotations

import textwrap

import pytest

import fairing
from fairing import PermissionDeniedError
from fairing.builders.append import AppendBuilder
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import TFJobDeployer
from fairing.kube import KubeClient
from fairing.kube.access import Access, check, preflight
from tests.services.proxy import Proxy

pytestmark = pytest.mark.e2e


def _script(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        print("trained", flush=True)
    """))
    return fairing.api.preprocessor_for(str(tmp_path / "train.py"))


def test_missing_create_on_tfjobs_fails_before_any_registry_request(make_profile, base_image, registry_address,
                                                                     tmp_path):
    prof = make_profile(drop=[("create", "kubeflow.org", "tfjobs")])
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    assert kube.namespace == prof.namespace  # from the kubeconfig's context
    with Proxy(registry_address) as proxy:
        builder = AppendBuilder(base_image.replace(registry_address, proxy.address, 1),
                                f"{proxy.address}/fairing-e2e", insecure=True)
        with pytest.raises(PermissionDeniedError) as err:
            fairing.submit(_script(tmp_path), builder=builder, deployer=TFJobDeployer({"Worker": 1}, kube=kube))
        assert proxy.connections == 0 and proxy.bytes_up == 0
    e = err.value
    assert e.missing == (("create", "tfjobs.kubeflow.org", prof.namespace),)
    assert e.identity == prof.username
    text = str(e)
    assert "create tfjobs.kubeflow.org in namespace " + prof.namespace in text
    assert "kind: RoleBinding" in text and "name: kubeflow-edit" in text and "name: default-editor" in text
    assert kube.core.list_namespaced_secret(prof.namespace).items == [] or all(
        not s.metadata.name.endswith("-result-key") for s in kube.core.list_namespaced_secret(prof.namespace).items)


def test_every_missing_permission_is_listed_at_once(make_profile):
    prof = make_profile(drop=[("create", "batch", "jobs"), ("get", "", "pods/log")])
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    with pytest.raises(PermissionDeniedError) as err:
        preflight(JobDeployer(kube=kube))
    assert set(err.value.missing) == {("create", "jobs.batch", prof.namespace), ("get", "pods/log", prof.namespace)}


def test_the_whole_role_passes_and_a_job_runs(make_profile, base_image, registry_address, tmp_path):
    prof = make_profile()
    kube = KubeClient(kubeconfig=prof.kubeconfig)
    for kind in (JobDeployer(kube=kube), TFJobDeployer({"Worker": 1}, kube=kube)):
        assert check(kube, kind.required_access()) == []
    # what kubeflow-edit does not give: nothing cluster-wide, nothing in another namespace
    assert check(kube, [Access("list", "nodes")], namespace="default") == [("list", "nodes", "default")]
    builder = AppendBuilder(base_image, f"{registry_address}/fairing-e2e", insecure=True)
    handle = fairing.submit(_script(tmp_path), builder=builder, deployer=JobDeployer(kube=kube))
    try:
        handle.result(timeout=300)
        assert any("trained" in line for line in handle.logs(follow=False))
    finally:
        handle.delete()
    assert kube.batch.list_namespaced_job(prof.namespace).items == []
