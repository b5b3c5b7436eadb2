"""Warm workers on the real cluster: a re-run reaches the same worker pod through the API
server's port-forward, with the semantics of a Job (values, exceptions, exit codes,
outputs, Ctrl-C), and the worker goes by itself when idle, also after its submitter was
SIGKILLed. A second identity cannot use the first one's worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fairing
from fairing import ConfigurationError, DeployError, JobFailedError
from fairing.backends import Backend
from fairing.builders.warm import WarmBuilder
from fairing.deployers.warm import WARM_LABEL, WarmDeployer
from fairing.kube import KubeClient

from conftest import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def _warm(builder, kube, token_dir, idle=300) -> Backend:
    return Backend("e2e-warm", WarmBuilder(builder), WarmDeployer(kube=kube, idle=idle, token_dir=token_dir))


def _worker_pods(kube) -> list:
    return [p for p in kube.core.list_namespaced_pod(kube.namespace, label_selector=WARM_LABEL).items
            if not p.metadata.deletion_timestamp]


def test_a_rerun_reaches_the_same_worker_with_the_new_code_and_a_jobs_semantics(builder, kube, tmp_path):
    backend = _warm(builder, kube, tmp_path / "tokens")

    @fairing.train(backend=backend, timeout=600, quiet=True)
    def first():
        return "one"

    assert first() == "one"
    (pod,) = _worker_pods(kube)

    @fairing.train(backend=backend, timeout=120, quiet=True, outputs_dir=tmp_path / "out")
    def second(x):
        import os

        with open(os.path.join(os.environ["FAIRING_OUTPUTS"], "model.txt"), "w") as fh:
            fh.write("weights")
        return x * 3

    assert second(14) == 42
    assert (tmp_path / "out" / "model.txt").read_text() == "weights"

    @fairing.train(backend=backend, timeout=120, quiet=True)
    def raises():
        raise ValueError("bad alpha")

    with pytest.raises(ValueError, match="bad alpha") as err:
        raises()
    assert "bad alpha" in str(err.value.__cause__)  # the job's traceback, chained

    @fairing.train(backend=backend, timeout=120, quiet=True)
    def exits():
        import sys

        sys.exit(3)

    with pytest.raises(JobFailedError) as failed:
        exits()
    assert failed.value.exit_code == 3

    @fairing.train(backend=backend, timeout=3, quiet=True)
    def too_slow():
        import time

        time.sleep(60)

    with pytest.raises(fairing.JobTimeoutError):
        too_slow()

    @fairing.train(backend=backend, timeout=120, quiet=True)
    def no_state_carried():
        import builtins

        seen = getattr(builtins, "_fairing_seen", False)
        builtins._fairing_seen = True
        return seen

    assert no_state_carried() is False and no_state_carried() is False
    (still,) = _worker_pods(kube)
    assert still.metadata.name == pod.metadata.name  # every call ran on the one worker
    assert kube.batch.list_namespaced_job(kube.namespace).items[0].metadata.labels[WARM_LABEL]


_SUBMITTER = """
import sys, fairing
from fairing.backends import Backend
from fairing.builders.append import AppendBuilder
from fairing.builders.warm import WarmBuilder
from fairing.deployers.warm import WarmDeployer
from fairing.kube import KubeClient

kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={namespace!r})
backend = Backend("e2e", WarmBuilder(AppendBuilder({base!r}, {repo!r}, insecure=True)),
                  WarmDeployer(kube=kube, idle={idle}, token_dir={tokens!r}))

@fairing.train(backend=backend, on_event=lambda e: print(e, flush=True))
def job(seconds):
    import time
    print("started", flush=True)
    time.sleep(seconds)
    return seconds

print("result", job(float(sys.argv[1])), flush=True)
{after}
"""


def _submitter(tmp_path, kubeconfig, namespace, base_image, registry_address, *, idle, after="") -> Path:
    path = tmp_path / "submit.py"
    path.write_text(_SUBMITTER.format(kubeconfig=kubeconfig, namespace=namespace, base=base_image,
                                      repo=f"{registry_address}/fairing-e2e", idle=idle, tokens=str(tmp_path / "tokens"),
                                      after=after))
    return path


def _start(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _read_until(proc: subprocess.Popen, marker) -> list:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker(line):
            return seen
    raise AssertionError("the submitter ended before it got there:\n" + "".join(seen[-40:]))


def test_ctrl_c_stops_the_run_and_the_next_call_uses_the_same_worker(base_image, registry_address, kubeconfig,
                                                                       namespace, kube, builder, tmp_path):
    path = _submitter(tmp_path, kubeconfig, namespace, base_image, registry_address, idle=300)
    proc = _start(path, "600")
    try:
        seen = _read_until(proc, lambda line: "started" in line and "LogLine" in line)
        (pod,) = _worker_pods(kube)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in rest, "".join(seen) + rest

    @fairing.train(backend=_warm(builder, kube, tmp_path / "tokens"), timeout=120, quiet=True)
    def runs_alone():
        import os

        mine, others = os.getpid(), []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if int(pid) != mine and (b"runpy" in cmd or b"fairing_runtime\x00" in cmd):
                others.append(cmd)
        return others

    assert runs_alone() == []  # the interrupted run is gone
    (same,) = _worker_pods(kube)
    assert same.metadata.name == pod.metadata.name and same.status.phase == "Running"


def test_an_idle_worker_goes_and_leaves_nothing_after_its_submitter_was_killed(base_image, registry_address, kubeconfig,
                                                                                namespace, kube, tmp_path):
    path = _submitter(tmp_path, kubeconfig, namespace, base_image, registry_address, idle=8,
                      after="import time; time.sleep(3600)")
    proc = _start(path, "0")
    try:
        _read_until(proc, lambda line: line.startswith("result"))
        assert len(_worker_pods(kube)) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    wait_until(lambda: not kube.core.list_namespaced_pod(namespace).items
               and not kube.batch.list_namespaced_job(namespace).items, 120, "the idle worker's pod to go")


def test_a_requirements_change_starts_a_new_worker_and_workers_are_listed_and_deleted(builder, kube, kubeconfig,
                                                                                    tmp_path):
    backend = _warm(builder, kube, tmp_path / "tokens")

    @fairing.train(backend=backend, timeout=600, quiet=True)
    def plain():
        return 1

    assert plain() == 1
    (first,) = _worker_pods(kube)

    @fairing.train(backend=backend, timeout=600, quiet=True, requirements=["tomli==2.0.1"])
    def with_tomli():
        import tomli

        return tomli.loads("a = 1")["a"]

    assert with_tomli() == 1
    names = {p.metadata.name for p in _worker_pods(kube)}
    assert len(names) == 2 and first.metadata.name in names
    # `fairing list` shows the workers, `fairing delete` removes one (its pod with it)
    from fairing import jobs

    listed = {j.name: j for j in jobs.jobs(backend="kubernetes", namespace=kube.namespace, kubeconfig=kubeconfig)}
    worker = first.metadata.labels["fairing.dev/job"]
    assert worker in listed and listed[worker].phase == "Running"
    jobs.delete(worker, namespace=kube.namespace, kubeconfig=kubeconfig)
    wait_until(lambda: first.metadata.name not in {p.metadata.name for p in _worker_pods(kube)}, 60,
               "the deleted worker's pod to go")


def _other_identity(kube) -> KubeClient:
    """A client for another ServiceAccount of the namespace that may edit it (create Jobs,
    port-forward to pods)."""
    core = kube.core
    core.create_namespaced_service_account(kube.namespace, {"metadata": {"name": "second"}})
    kube.k8s.client.RbacAuthorizationV1Api(kube.api_client).create_namespaced_role_binding(kube.namespace, {
        "metadata": {"name": "second-edits"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "second", "namespace": kube.namespace}]})
    token = core.create_namespaced_service_account_token(
        "second", kube.namespace, {"spec": {"expirationSeconds": 900}}).status.token
    configuration = kube.api_client.configuration.__class__()
    configuration.host = kube.api_client.configuration.host
    configuration.ssl_ca_cert = kube.api_client.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}", "BearerToken": f"Bearer {token}"}
    return KubeClient(api_client=kube.k8s.client.ApiClient(configuration), namespace=kube.namespace)


def test_a_second_identity_cannot_use_the_first_ones_worker(builder, kube, tmp_path):
    tokens = tmp_path / "tokens"  # one machine, one cache directory: the worst case
    mine = WarmDeployer(kube=kube, idle=300, token_dir=tokens)

    @fairing.train(backend=Backend("e2e", WarmBuilder(builder), mine), timeout=600, quiet=True)
    def who():
        import os

        return os.environ.get("HOSTNAME")

    first_pod = who()
    other = WarmDeployer(kube=_other_identity(kube), idle=300, token_dir=tokens)
    assert other.identity != mine.identity

    @fairing.train(backend=Backend("e2e", WarmBuilder(builder), other), timeout=600, quiet=True)
    def who_else():
        import os

        return os.environ.get("HOSTNAME")

    second_pod = who_else()
    assert second_pod != first_pod  # it started its own
    (pod,) = [p for p in _worker_pods(kube) if p.metadata.name == first_pod]
    assert not other.check_identity(pod) and mine.check_identity(pod)
    # and through the port-forward itself, without the first one's token: refused
    sock = other.connect(first_pod)
    with pytest.raises(DeployError, match="refused"):
        other._hello(sock, "0" * 64, {}, first_pod)


def test_warm_with_a_distributed_kind_or_an_option_it_cannot_take_names_what_it_runs():
    with pytest.raises(ConfigurationError, match="TFJob, PyTorchJob, TrainJob"):
        fairing.train(backend="kubernetes", warm=True, deployer="tfjob", registry="r.example/x",
                      base_image="python:3.11")(lambda: 1).submit()
    with pytest.raises(ConfigurationError, match="warm=True"):
        fairing.train(backend="kubernetes", warm_idle=5, registry="r.example/x", base_image="python:3.11")(
            lambda: 1).submit()
    with pytest.raises(ConfigurationError, match="warm_idle"):
        WarmDeployer(kube=object(), idle=-1)


def test_a_script_runs_warm_through_the_kubernetes_backend_with_its_arguments(builder, kubeconfig, namespace, kube,
                                                                           tmp_path, monkeypatch):
    from fairing import TrainJob

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("import sys\nprint('epochs', sys.argv[1:])\nsys.exit(int(sys.argv[2]))\n")
    options = dict(backend="kubernetes", builder=builder, warm=True, warm_idle=60, namespace=namespace,
                   kubeconfig=kubeconfig, quiet=True)
    assert TrainJob("train.py", args=["--exit", "0"], **options).run(timeout=600) is None
    with pytest.raises(JobFailedError) as failed:
        TrainJob("train.py", args=["--exit", "4"], **options).run(timeout=120)
    assert failed.value.exit_code == 4 and "epochs ['--exit', '4']" in failed.value.logs_tail
    (pod,) = _worker_pods(kube)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["FAIRING_WARM_IDLE"] == "60.0" and len(env["FAIRING_WARM_TOKEN_SHA256"]) == 64


def test_a_run_leaves_no_process_and_no_tmp_file_for_the_next_one_in_the_pod(builder, kube, tmp_path):
    backend = _warm(builder, kube, tmp_path / "tokens")

    @fairing.train(backend=backend, timeout=600, quiet=True)
    def leave():
        import subprocess
        import sys

        for session in (False, True):  # in the background, and daemonized (its own session)
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "left-by-run-1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=session)
        with open("/tmp/left-by-run-1", "w") as fh:
            fh.write("run 1's scratch")
        return "left"

    @fairing.train(backend=backend, timeout=120, quiet=True)
    def look():
        import os

        procs = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"left-by-run-1" in fh.read():
                        procs.append(pid)
            except OSError:
                continue
        return procs, os.path.exists("/tmp/left-by-run-1"), os.path.isdir("/tmp/fairing-warm/cas")

    assert leave() == "left"
    assert look() == ([], False, True)  # nothing of run 1 is there; the worker's own cache is
    (pod,) = _worker_pods(kube)
    assert pod.status.phase == "Running"
