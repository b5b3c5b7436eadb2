"""Kubeflow Trainer v2 on the real cluster (tests/cluster builds JobSet and Trainer v2 from
their Go modules and installs the torch-distributed ClusterTrainingRuntime): a function runs
as a TrainJob on two nodes with the image fairing built in place of the runtime's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fairing
from fairing import ConfigurationError, JobFailedError, MissingCRDError
from fairing.deployers import mutators as m
from fairing.deployers.trainjob import TRAINER_API, TrainJobDeployer

pytestmark = pytest.mark.e2e

SMALL = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def _left_in(kube) -> list[str]:
    group, version = TRAINER_API.split("/")
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
    trainjobs = [o["metadata"]["name"] for o in
                 kube.custom.list_namespaced_custom_object(group, version, kube.namespace, "trainjobs")["items"]]
    jobsets = [o["metadata"]["name"] for o in
               kube.custom.list_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", kube.namespace, "jobsets")["items"]]
    secrets = [s.metadata.name for s in kube.core.list_namespaced_secret(kube.namespace).items
               if s.metadata.name.endswith("-result-key")]
    return pods + jobs + trainjobs + jobsets + secrets


def rendezvous(tag):
    """Runs on every node: node 0 listens on PET_MASTER_PORT, the others connect to
    PET_MASTER_ADDR and send their rank (a real use of the address the runtime gave)."""
    import os
    import socket
    import time

    env = {k: os.environ.get(k) for k in ("PET_NODE_RANK", "PET_NNODES", "PET_NPROC_PER_NODE", "PET_MASTER_ADDR",
                                          "PET_MASTER_PORT", "FAIRING_RESULT_FILE")}
    rank, world = int(env["PET_NODE_RANK"]), int(env["PET_NNODES"])
    addr, port = env["PET_MASTER_ADDR"], int(env["PET_MASTER_PORT"])
    print("PET", rank, world, addr, port, flush=True)
    heard = []
    if rank == 0:
        server = socket.create_server(("", port))
        heard = sorted(int(server.accept()[0].recv(16)) for _ in range(world - 1))
        print("node 0 heard from ranks", heard, flush=True)
    else:
        for _ in range(180):
            try:
                socket.create_connection((addr, port), timeout=2).sendall(str(rank).encode())
                break
            except OSError:
                time.sleep(1)
        else:
            raise RuntimeError(f"node {rank} could not reach {addr}:{port}")
    return {"tag": tag, "env": env, "heard": heard, "hostname": socket.gethostname()}


def test_a_function_runs_as_a_trainjob_on_two_nodes(builder, kube):
    deployer = TrainJobDeployer(kube=kube, num_nodes=2, resources_per_node=SMALL)
    handle = fairing.submit(fairing.api.preprocessor_for(rendezvous, args=("v2",)), builder=builder,
                            deployer=deployer, quiet=True)
    try:
        obj = kube.custom.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", kube.namespace,
                                                       "trainjobs", handle.name)
        value = handle.result(timeout=600)
        logs = list(handle.logs(follow=False))
    finally:
        handle.delete()
    # The TrainJob names the default runtime and overrides its trainer image with fairing's.
    assert obj["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert obj["spec"]["trainer"]["numNodes"] == 2
    assert "fairing-e2e" in obj["spec"]["trainer"]["image"]
    # node 0's value: its torch environment as the Trainer's torch plugin set it
    env = value["env"]
    assert value["tag"] == "v2" and value["heard"] == [1]
    assert env["PET_NODE_RANK"] == "0" and env["PET_NNODES"] == "2"
    assert env["PET_MASTER_ADDR"] == f"{handle.name}-node-0-0.{handle.name}"
    assert env["PET_MASTER_PORT"] == "29500" and env["PET_NPROC_PER_NODE"]
    assert env["FAIRING_RESULT_FILE"] == "/dev/termination-log"  # fairing's env reached the node container
    assert value["hostname"].startswith(f"{handle.name}-node-0-0")
    # every node's log, prefixed by node
    pet = sorted(line for line in logs if "] PET " in line)
    assert pet == [f"[node-0] PET 0 2 {env['PET_MASTER_ADDR']} 29500",
                   f"[node-1] PET 1 2 {env['PET_MASTER_ADDR']} 29500"], logs
    assert "[node-0] node 0 heard from ranks [1]" in logs
    assert _left_in(kube) == []


def test_a_function_that_raises_on_node_0_raises_here(builder, kube):
    def fails():
        import os

        raise ValueError(f"the learning rate is negative on node {os.environ['PET_NODE_RANK']}")

    deployer = TrainJobDeployer(kube=kube, num_nodes=1, resources_per_node=SMALL)
    handle = fairing.submit(fairing.api.preprocessor_for(fails), builder=builder, deployer=deployer, quiet=True)
    try:
        # raised from node 0's first container: the runtime's restarts (OnFailure, up to the
        # Job's backoff limit) are not waited for
        with pytest.raises(ValueError, match="the learning rate is negative on node 0") as err:
            handle.result(timeout=600)
        restarts = [cs.restart_count for p in kube.core.list_namespaced_pod(kube.namespace).items
                    for cs in p.status.container_statuses or []]
    finally:
        handle.delete()
    assert max(restarts) <= 1, restarts
    assert "in fails" in str(err.value.__cause__)  # the node's traceback
    assert any(handle.name in note for note in err.value.__notes__)
    assert _left_in(kube) == []


def test_ctrl_c_deletes_the_trainjob(base_image, registry_address, kubeconfig, namespace, kube, tmp_path):
    submitter = tmp_path / "submit.py"
    submitter.write_text(textwrap.dedent(f"""
        import fairing
        from fairing.backends import Backend
        from fairing.builders.append import AppendBuilder
        from fairing.deployers.trainjob import TrainJobDeployer
        from fairing.kube import KubeClient

        kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={namespace!r})
        backend = Backend("e2e", AppendBuilder({base_image!r}, {registry_address + '/fairing-e2e'!r}, insecure=True),
                          TrainJobDeployer(kube=kube, num_nodes=2, resources_per_node={SMALL!r}))

        @fairing.train(backend=backend, on_event=lambda e: print(e, flush=True))
        def slow():
            import os, time
            print("started", os.environ["PET_NODE_RANK"], flush=True)
            time.sleep(600)
        slow()
    """))
    proc = subprocess.Popen([sys.executable, str(submitter)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    seen, started = [], set()
    for line in proc.stdout:
        seen.append(line)
        if "LogLine" in line and "started" in line:
            started.add("node-0" if "started 0" in line else "node-1")
            if len(started) == 2:
                break
    assert len(_left_in(kube)) >= 3, "".join(seen)  # a TrainJob, its JobSet, Job, pods, result key
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=180)[0]
    assert "KeyboardInterrupt" in rest
    assert _left_in(kube) == []


def test_without_trainer_v2_the_error_names_it(kube):
    # An API version the cluster does not serve: what a cluster without Trainer v2 answers.
    deployer = TrainJobDeployer(kube=kube, api_version="trainer.kubeflow.org/v1beta9")
    with pytest.raises(MissingCRDError) as err:
        deployer.deploy("registry.invalid/fairing/x:1", name="no-trainer")
    assert "Kubeflow Trainer v2" in str(err.value) and "pytorchjob" in str(err.value)
    assert _left_in(kube) == []  # the result key made before the TrainJob is gone again


def test_options_are_checked_when_given(kube):
    with pytest.raises(ConfigurationError, match="num_nodes"):
        TrainJobDeployer(kube=kube, num_nodes=0)
    with pytest.raises(ConfigurationError, match="Did you mean 'num_nodes'"):
        TrainJobDeployer(kube=kube, num_node=2)
    with pytest.raises(ConfigurationError, match="cannot set backoff_limit"):
        TrainJobDeployer(kube=kube, backoff_limit=3)
    with pytest.raises(ConfigurationError, match="runtime_kind"):
        TrainJobDeployer(kube=kube, runtime_kind="JobSet")
    with pytest.raises(ConfigurationError, match="resources_per_node"):
        TrainJobDeployer(kube=kube, resources_per_node={"cpu": "1"})
    with pytest.raises(ConfigurationError, match="workingDir"):
        TrainJobDeployer(kube=kube, mutators=[lambda spec: {**spec, "containers": [
            {**spec["containers"][0], "workingDir": "/tmp"}]}]).manifest("img:1", "x")
    # the resources mutator is carried as resourcesPerNode when resources_per_node is not given
    body = TrainJobDeployer(kube=kube, mutators=[m.resources(cpu="2")]).manifest("img:1", "x")
    assert body["spec"]["trainer"]["resourcesPerNode"] == {"requests": {"cpu": "2"}}
