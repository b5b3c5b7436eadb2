"""The command line in a real pseudo-terminal against the cluster: options anywhere, a job
started with --detach found and controlled from other processes by its labels, replica
logs of a PyTorchJob, and a job started from a Jupyter kernel attached after a restart."""

from __future__ import annotations

import re
import textwrap

import pexpect
import pytest

from tests.cli_terminal import Terminal, plain
from tests.kernel_session import Kernel

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster_term(workdir, tmp_path_factory, kubeconfig, namespace):
    (workdir / "job.py").write_text("import sys\nprint('got', sys.argv[1:], flush=True)\n")
    (workdir / "slow.py").write_text(textwrap.dedent("""
        import time
        for i in range(8):
            print("tick", i, flush=True)
            time.sleep(1)
    """))
    # No Docker engine: the append builder pushes to the cluster's plain-HTTP registry.
    return Terminal(workdir, tmp_path_factory.mktemp("cache"),
                    env={"KUBECONFIG": kubeconfig, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})


@pytest.fixture
def cluster_flags(registry_address, base_image, namespace):
    return ["--backend", "kubernetes", "--registry", f"{registry_address}/fairing-cli", "--base-image", base_image,
            "--insecure-registry", "--namespace", namespace]


def _left(kube) -> list:
    jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(kube.namespace).items]
    pods = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    crs = [o["metadata"]["name"] for plural in ("tfjobs", "pytorchjobs")
           for o in kube.custom.list_namespaced_custom_object("kubeflow.org", "v1", kube.namespace, plural)["items"]]
    crs += [o["metadata"]["name"] for o in kube.custom.list_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", kube.namespace, "trainjobs")["items"]]
    return jobs + pods + crs


def test_cluster_run_with_options_before_and_after_the_script(cluster_term, cluster_flags, kube):
    code, out = cluster_term.run("run", *cluster_flags[:4], "job.py", *cluster_flags[4:], "--timeout", "600",
                                 "--", "--epochs", "3", timeout=900)
    assert code == 0, out
    assert "got ['--epochs', '3']" in out and "succeeded" in out
    assert _left(kube) == []


def test_cluster_detach_then_list_logs_attach_and_delete(cluster_term, cluster_flags, kube, namespace, kubeconfig):
    code, out = cluster_term.run("run", "--detach", "slow.py", "--name", "cli-slow", *cluster_flags, timeout=900)
    assert code == 0, out
    job = kube.batch.read_namespaced_job("cli-slow", namespace)
    labels = job.metadata.labels
    assert labels["fairing.dev/payload"] == "script" and labels["fairing.dev/user"]
    assert labels["fairing.dev/version"] and job.metadata.annotations["fairing.dev/source"] == "slow.py"

    code, rows = cluster_term.json("list", "--backend", "kubernetes", "--namespace", namespace)
    (row,) = [r for r in rows if r["name"] == "cli-slow"]
    assert row["kind"] == "Job" and row["phase"] in ("Pending", "Running") and "@sha256:" in row["image"]
    code, out = cluster_term.run("list")  # the record says which namespace to look in
    assert "cli-slow" in out and "Job" in out
    elsewhere = Terminal(cluster_term.cwd, cluster_term.cwd / "other-cache", env={"KUBECONFIG": kubeconfig})
    code, state = elsewhere.json("status", "cli-slow", "--namespace", namespace)  # no record: found by its labels
    assert code == 0 and state["status"] in ("Pending", "Running", "Succeeded")

    code, out = cluster_term.run("logs", "--follow", "cli-slow", timeout=600)
    assert code == 0, out
    assert [line for line in out.splitlines() if line.startswith("tick")] == [f"tick {i}" for i in range(8)]
    code, out = cluster_term.run("attach", "cli-slow", "--namespace", namespace, timeout=600)
    assert code == 0 and "job cli-slow succeeded" in out, out
    code, state = cluster_term.json("status", "cli-slow")
    assert state["status"] == "Succeeded"

    code, out = cluster_term.run("delete", "cli-slow", "--keep-logs", timeout=300)
    assert code == 0 and "deleted cli-slow" in out
    assert _left(kube) == []
    code, out = cluster_term.run("logs", "cli-slow")  # kept after the job is gone
    assert code == 0 and "tick 7" in out


def test_cluster_attach_takes_a_failed_jobs_exit_code(cluster_term, cluster_flags, kube):
    (cluster_term.cwd / "bad.py").write_text("print('reading', flush=True)\nraise ValueError('bad rows')\n")
    code, out = cluster_term.run("run", "-d", "bad.py", "--name", "cli-bad", *cluster_flags, timeout=900)
    assert code == 0, out
    child = cluster_term.spawn("attach", "cli-bad")
    child.expect(pexpect.EOF, timeout=600)
    child.close()
    assert child.exitstatus == 1
    assert "ValueError: bad rows" in plain(child.before)
    code, out = cluster_term.run("delete", "--all-finished", timeout=300)
    assert code == 0 and "deleted cli-bad" in out
    assert _left(kube) == []


def test_cluster_pytorchjob_replica_logs(cluster_term, cluster_flags, kube):
    # A real rendezvous, so that the worker runs before the master ends the job.
    (cluster_term.cwd / "rank.py").write_text(textwrap.dedent("""
        import os, socket, time
        rank, addr, port = int(os.environ["RANK"]), os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        print("rank", rank, flush=True)
        if rank == 0:
            socket.create_server(("", port)).accept()
        else:
            for _ in range(120):
                try:
                    socket.create_connection((addr, port), timeout=2).close()
                    break
                except OSError:
                    time.sleep(1)
    """))
    code, out = cluster_term.run("run", "rank.py", "-d", "--name", "cli-torch", "--deployer", "pytorchjob",
                                 "--replicas", "Master=1", "--replicas", "Worker=1", *cluster_flags, timeout=900)
    assert code == 0, out
    code, out = cluster_term.run("attach", "cli-torch", timeout=600)
    assert code == 0, out
    code, out = cluster_term.run("logs", "cli-torch", "--replica", "worker-0")
    assert code == 0 and out.strip().splitlines() == ["rank 1"], out
    code, out = cluster_term.run("logs", "cli-torch", "--replica", "worker-9")
    assert code == 2 and "has no replica 'worker-9' with log lines; its replicas: master-0, worker-0" in out
    code, out = cluster_term.run("delete", "cli-torch", timeout=300)
    assert code == 0
    assert _left(kube) == []


def test_cluster_trainjob_detach_list_attach_logs_and_delete(cluster_term, cluster_flags, kube, namespace):
    (cluster_term.cwd / "node.py").write_text(
        "import os\nprint('node', os.environ['PET_NODE_RANK'], 'of', os.environ['PET_NNODES'], flush=True)\n")
    code, out = cluster_term.run("run", "node.py", "-d", "--name", "cli-trainjob", "--deployer", "trainjob",
                                 "--nodes", "2", *cluster_flags, timeout=900)
    assert code == 0, out
    trainjob = kube.custom.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", namespace, "trainjobs",
                                                        "cli-trainjob")
    assert trainjob["spec"]["trainer"]["numNodes"] == 2 and "@sha256:" in trainjob["spec"]["trainer"]["image"]
    code, rows = cluster_term.json("list", "--backend", "kubernetes", "--namespace", namespace)
    (row,) = [r for r in rows if r["name"] == "cli-trainjob"]
    assert row["kind"] == "TrainJob" and row["image"] == trainjob["spec"]["trainer"]["image"]
    code, out = cluster_term.run("attach", "cli-trainjob", timeout=600)
    assert code == 0 and "job cli-trainjob succeeded" in out, out
    code, out = cluster_term.run("logs", "cli-trainjob", "--replica", "node-1")
    assert code == 0 and out.strip().splitlines() == ["node 1 of 2"], out
    code, out = cluster_term.run("delete", "cli-trainjob", timeout=300)
    assert code == 0 and "deleted cli-trainjob" in out
    assert _left(kube) == []


def test_nodes_needs_the_trainjob_deployer(cluster_term, cluster_flags):
    code, out = cluster_term.run("run", "job.py", "--nodes", "2", *cluster_flags)
    assert code == 2 and "--nodes needs --deployer trainjob" in out


def test_cluster_ctrl_c_in_run_deletes_the_job(cluster_term, cluster_flags, kube):
    child = cluster_term.spawn("run", "slow.py", *cluster_flags)
    child.expect("tick 1", timeout=600)
    child.sendintr()
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    assert child.exitstatus == 130
    assert _left(kube) == []


def test_cluster_job_from_a_notebook_kernel_is_attached_after_a_restart(workdir, tmp_path_factory, kubeconfig,
                                                                       registry_address, base_image, namespace,
                                                                       kube):
    cache = tmp_path_factory.mktemp("cache")
    env = {"KUBECONFIG": kubeconfig, "XDG_CACHE_HOME": str(cache), "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    with Kernel(workdir, env=env) as kernel:
        out = kernel.run(textwrap.dedent(f"""
            import fairing
            from fairing.builders.append import AppendBuilder

            def train(rounds):
                import time
                for r in range(rounds):
                    print("round", r, flush=True)
                    time.sleep(1)
                return {{"rounds": rounds, "loss": 0.25}}

            builder = AppendBuilder({base_image!r}, {registry_address + "/fairing-nb"!r}, insecure=True)
            handle = fairing.TrainJob(train, args=(6,), backend="kubernetes", builder=builder,
                                      namespace={namespace!r}).submit()
            print("JOB", handle.name)
        """), timeout=900)
        name = re.search(r"JOB (\S+)", out).group(1)
        kernel.restart()
        out = kernel.run(textwrap.dedent(f"""
            import fairing
            print("LISTED", [j.name for j in fairing.jobs()])
            handle = fairing.attach({name!r})
            print("RESULT", handle.result(600))
            fairing.jobs.finish(handle)
        """), timeout=900)
    assert f"LISTED ['{name}']" in out
    assert "RESULT {'rounds': 6, 'loss': 0.25}" in out
    assert _left(kube) == []


def test_cluster_resources_env_and_secret_env_reach_the_pod(cluster_term, cluster_flags, kube, namespace):
    from kubernetes import client

    kube.core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="wandb"), string_data={"token": "s3cret-value"}))
    (cluster_term.cwd / "env.py").write_text(
        "import os\nprint('A', os.environ['A'], 'TOKEN', len(os.environ['TOKEN']), flush=True)\n")
    code, out = cluster_term.run("run", "env.py", "-d", "--name", "cli-env", "--cpu", "100m", "--memory", "96Mi",
                                 "--env", "A=1", "--secret-env", "TOKEN=wandb/token", *cluster_flags, timeout=900)
    assert code == 0, out
    (pod,) = kube.core.list_namespaced_pod(namespace, label_selector="fairing.dev/job=cli-env").items
    container = pod.spec.containers[0]
    assert container.resources.requests == {"cpu": "100m", "memory": "96Mi"}
    assert container.resources.limits == {"cpu": "100m", "memory": "96Mi"}  # --cpu: a request and a limit
    env = {e.name: e for e in container.env}
    assert env["A"].value == "1"
    assert env["TOKEN"].value is None and env["TOKEN"].value_from.secret_key_ref.name == "wandb"
    code, out = cluster_term.run("attach", "cli-env", timeout=600)
    assert code == 0 and "A 1 TOKEN 12" in out, out
    assert "s3cret-value" not in out
    assert cluster_term.run("delete", "cli-env", timeout=300)[0] == 0


def test_cluster_serve_detached_then_endpoints_predict_and_delete(cluster_term, cluster_flags, kube, namespace,
                                                                  kubeconfig):
    import fairing

    (cluster_term.cwd / "model.py").write_text(textwrap.dedent("""
        class Doubler:
            def predict(self, X):
                return [2 * x for x in X]
    """))
    code, doc = cluster_term.json("serve", "model:Doubler", "--detach", "--name", "cli-dbl", *cluster_flags,
                                  timeout=900)
    assert code == 0, doc
    url = f"http://cli-dbl.{namespace}.svc:8080"
    assert {k: doc[k] for k in ("endpoint", "url", "status", "model")} == {
        "endpoint": "cli-dbl", "url": url, "status": "Running", "model": "doubler"}
    assert "Doubler" in doc["model_names"] and f"GET {url}/v1/models/doubler" in doc["routes"]
    code, rows = cluster_term.json("endpoints")  # its record names the namespace
    assert [(r["name"], r["kind"], r["phase"]) for r in rows] == [("cli-dbl", "Endpoint", "Running")]
    # another process, no record: by its labels
    endpoint = fairing.attach("cli-dbl", namespace=namespace, kubeconfig=kubeconfig)
    status, body = endpoint.request("POST", "/v1/models/doubler:predict", {"instances": [1, 2]})
    assert (status, body["predictions"]) == (200, [2, 4])
    code, out = cluster_term.run("delete", "cli-dbl", timeout=300)
    assert code == 0 and "deleted cli-dbl" in out
    assert kube.apps.list_namespaced_deployment(namespace).items == []
    assert [s.metadata.name for s in kube.core.list_namespaced_service(namespace).items] == []
