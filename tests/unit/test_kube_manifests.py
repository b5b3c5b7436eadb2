"""Pod mutators and workload manifests are plain values: checked here without a cluster
(the e2e tier runs them on a real one)."""

import copy

import pytest

from fairing import ConfigurationError
from fairing.deployers import mutators as m
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import PyTorchJobDeployer, TFJobDeployer

BASE = {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}


def test_mutators_return_new_specs_and_never_touch_their_input():
    before = copy.deepcopy(BASE)
    spec = m.apply(BASE, [
        m.resources(cpu="2", memory="4Gi"), m.gpus(1), m.env({"EPOCHS": "3"}),
        m.secret_env("wandb", {"WANDB_API_KEY": "key"}), m.pvc("data", "/data"),
        m.secret_volume("creds", "/secrets"), m.config_map_env("cfg", {"MODE": "mode"}),
        m.service_account("trainer"), m.node_selector({"pool": "gpu"}),
        m.tolerations([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        m.affinity({"nodeAffinity": {}}), m.image_pull_secrets("regcred", "regcred"),
    ])
    assert BASE == before
    c = spec["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                              "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}}
    env = {e["name"]: e for e in c["env"]}
    assert env["EPOCHS"]["value"] == "3"
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}}
    assert "value" not in env["WANDB_API_KEY"]  # the secret's value never enters the spec
    assert {v["name"] for v in spec["volumes"]} == {"pvc-data", "secret-creds"}
    assert {vm["mountPath"] for vm in c["volumeMounts"]} == {"/data", "/secrets"}
    assert spec["serviceAccountName"] == "trainer" and spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_job_manifest():
    d = JobDeployer(namespace="ns", mutators=[m.resources(cpu="1")], ttl_seconds_after_finished=60,
                    active_deadline_seconds=600)
    job = d.manifest("localhost:5000/x@sha256:" + "a" * 64, "j1")
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 60 and spec["activeDeadlineSeconds"] == 600
    pod = spec["template"]
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert pod["metadata"]["labels"]["fairing.dev/job"] == "j1"
    container = pod["spec"]["containers"][0]
    assert container["image"].endswith("a" * 64) and container["resources"]["requests"] == {"cpu": "1"}
    assert {"name": "FAIRING_RESULT_FILE", "value": "/dev/termination-log"} in container["env"]


def test_training_manifests_put_gpus_only_where_asked():
    tf = TFJobDeployer({"Chief": 1, "PS": 1, "Worker": 2}, replica_mutators={"Worker": [m.gpus(1)]}).manifest("img", "t")
    specs = tf["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Chief": 1, "PS": 1, "Worker": 2}
    assert specs["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "resources" not in specs["PS"]["template"]["spec"]["containers"][0]
    assert specs["Chief"]["template"]["spec"]["containers"][0]["name"] == "tensorflow"
    pt = PyTorchJobDeployer({"Master": 1, "Worker": 2}).manifest("img", "p")
    assert pt["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"] == "pytorch"


@pytest.mark.parametrize("replicas", [{"Boss": 1}, {}, {"Worker": 0}])
def test_bad_replicas_are_clear_errors(replicas):
    with pytest.raises(ConfigurationError, match="replica"):
        TFJobDeployer(replicas)
