"""The per-job image pull secret against what is already in the namespace: a user's Secret
of the same name, a running job of the same name, a workload the API server refuses.
fairing never overwrites, adopts or deletes a Secret it did not make, and leaves none of
its own behind when the workload is not made."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fairing import DeployError, FairingError
from fairing.deployers.job import JobDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.images.auth import StaticCredentials

pytestmark = pytest.mark.e2e


def _deployer(cls, kube, registry_address):
    return cls(kube=kube, pull_credentials=StaticCredentials("robot", "s3cret", host=registry_address))


def _user_secret(kube, name: str) -> None:
    kube.core.create_namespaced_secret(kube.namespace, {"metadata": {"name": name}, "type": "Opaque",
                                                        "data": {"mine": base64.b64encode(b"keep me").decode()}})


def _intact(kube, name: str) -> None:
    secret = kube.core.read_namespaced_secret(name, kube.namespace)
    assert base64.b64decode(secret.data["mine"]) == b"keep me"
    assert not secret.metadata.owner_references  # not adopted by a fairing workload
    assert set(secret.data) == {"mine"}


def _secrets(kube) -> set:
    return {s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items}


@pytest.mark.parametrize("cls", [JobDeployer, ServingDeployer])
def test_a_users_secret_named_like_the_pull_secret_is_neither_overwritten_nor_adopted(kube, registry_address, cls):
    _user_secret(kube, "mine-pull")
    before = _secrets(kube)
    with pytest.raises(DeployError, match="mine-pull already exists") as err:
        _deployer(cls, kube, registry_address).deploy(f"{registry_address}/fairing-e2e/none:1", name="mine")
    assert "s3cret" not in str(err.value)
    _intact(kube, "mine-pull")
    assert _secrets(kube) == before  # no result key left either
    assert not kube.batch.list_namespaced_job(kube.namespace).items
    assert not kube.apps.list_namespaced_deployment(kube.namespace).items


def test_a_users_result_key_namesake_is_not_deleted_with_the_failed_deploy(kube, registry_address):
    _user_secret(kube, "theirs-result-key")
    before = _secrets(kube)
    with pytest.raises(DeployError, match="theirs-result-key already exists"):
        _deployer(JobDeployer, kube, registry_address).deploy(f"{registry_address}/fairing-e2e/none:1", name="theirs")
    _intact(kube, "theirs-result-key")
    assert _secrets(kube) == before  # the pull secret it made is gone again
    assert not kube.batch.list_namespaced_job(kube.namespace).items


def test_a_second_deploy_of_a_running_jobs_name_leaves_the_first_jobs_secrets(kube, registry_address):
    deployer = _deployer(JobDeployer, kube, registry_address)
    image = f"{registry_address}/fairing-e2e/none:1"
    first = deployer.deploy(image, name="twice")
    try:
        made = {"twice-pull", "twice-result-key"}
        assert made <= _secrets(kube)
        uids = {n: kube.core.read_namespaced_secret(n, kube.namespace).metadata.uid for n in made}
        with pytest.raises(FairingError):
            deployer.deploy(image, name="twice")
        # the first job's secrets: the same objects, still owned by it
        for n in made:
            secret = kube.core.read_namespaced_secret(n, kube.namespace)
            assert secret.metadata.uid == uids[n]
            assert [o.name for o in secret.metadata.owner_references] == ["twice"]
    finally:
        first.delete()
    assert not {"twice-pull", "twice-result-key"} & _secrets(kube)


def test_a_workload_the_quota_refuses_leaves_no_secret(kube, registry_address):
    kube.core.create_namespaced_resource_quota(kube.namespace, {"metadata": {"name": "no-jobs"},
                                                                "spec": {"hard": {"count/jobs.batch": "0"}}})
    before = _secrets(kube)
    with pytest.raises(FairingError, match="(?i)quota") as err:
        _deployer(JobDeployer, kube, registry_address).deploy(f"{registry_address}/fairing-e2e/none:1", name="refused")
    assert "s3cret" not in str(err.value)
    assert _secrets(kube) == before


def test_a_users_deployment_namesake_survives_a_failed_endpoint_deploy(kube, registry_address):
    user = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop"}},
                                  "spec": {"containers": [{"name": "c", "image": "nothing:1"}]}}}}
    kube.apps.create_namespaced_deployment(kube.namespace, user)
    before = _secrets(kube)
    with pytest.raises(DeployError, match="409|already exists"):
        _deployer(ServingDeployer, kube, registry_address).deploy(f"{registry_address}/fairing-e2e/none:1", name="shop")
    assert kube.apps.read_namespaced_deployment("shop", kube.namespace).spec.template.metadata.labels == {"app": "shop"}
    assert _secrets(kube) == before


def test_a_sigterm_between_the_secrets_and_the_workload_leaves_no_secret(kube, kubeconfig, registry_address,
                                                                         tmp_path):
    script = tmp_path / "submit.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from fairing.deployers.job import JobDeployer
        from fairing.images.auth import StaticCredentials
        from fairing.kube import KubeClient

        static = StaticCredentials("robot", "s3cret", host={registry_address!r})

        def slow(host):  # the result key exists by now, the workload not yet
            print("asked", flush=True)
            time.sleep(120)
            return static(host)

        kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={kube.namespace!r})
        JobDeployer(kube=kube, pull_credentials=slow).deploy({registry_address + '/fairing-e2e/none:1'!r}, name="term")
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert proc.stdout.readline().strip() == "asked"
        assert "term-result-key" in _secrets(kube)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM, out
    assert "s3cret" not in out
    assert not {"term-result-key", "term-pull"} & _secrets(kube)
    assert not kube.batch.list_namespaced_job(kube.namespace).items


def test_deleting_a_job_without_a_pull_secret_leaves_a_users_namesake(kube, registry_address):
    """No credentials for the image's registry: the job has no pull secret, so a user's
    Secret named like one was no conflict; deleting the job must not take it along."""
    _user_secret(kube, "plain-pull")
    handle = JobDeployer(kube=kube, pull_credentials=False).deploy(f"{registry_address}/fairing-e2e/none:1",
                                                                   name="plain")
    assert "plain-result-key" in _secrets(kube)
    handle.delete()
    _intact(kube, "plain-pull")
    assert "plain-result-key" not in _secrets(kube)


def test_a_tfjob_of_several_replicas_gets_one_pull_secret(kube, registry_address):
    """Each replica's pod template asks for the job's pull secret: it is made once, and every
    replica refers to it."""
    from fairing.deployers.training import TFJobDeployer

    deployer = TFJobDeployer({"Chief": 1, "PS": 1, "Worker": 2}, kube=kube,
                             pull_credentials=StaticCredentials("robot", "s3cret", host=registry_address))
    handle = deployer.deploy(f"{registry_address}/fairing-e2e/none:1", name="several")
    try:
        tfjob = kube.custom.get_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, "tfjobs", "several")
        specs = tfjob["spec"]["tfReplicaSpecs"]
        assert {r: [s["name"] for s in spec["template"]["spec"]["imagePullSecrets"]] for r, spec in specs.items()} \
            == {r: ["several-pull"] for r in ("Chief", "PS", "Worker")}
        secret = kube.core.read_namespaced_secret("several-pull", kube.namespace)
        assert [(o.kind, o.name) for o in secret.metadata.owner_references] == [("TFJob", "several")]
    finally:
        handle.delete()
    assert not {"several-pull", "several-result-key"} & _secrets(kube)
