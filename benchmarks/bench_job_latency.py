"""Latency of the decorator flow on a cluster, split into stages, beside a bare pod.

Not a test (pytest does not collect it). With the local cluster up (tests/cluster/up)
or KUBECONFIG pointing at another one::

    python3 benchmarks/bench_job_latency.py [--repeat 3] [--json benchmarks/job_latency.json]

Each round first warms the base image and the dependency layer (one call), then
measures a call of a fresh function (a new code layer, as after an edit):

* package      preprocessor -> BuildContext (cloudpickle, tar)            client clock
* build/push   AppendBuilder: code layer, config, manifest                   client clock
* create       POST of the Job                                               client clock
* schedule     Job created -> pod's PodScheduled condition                  API timestamps
* image pull   scheduled -> container started, minus the run's own time     API timestamps
* first log    call -> first LogLine event                                  client clock
* result back  container finished -> value returned to the caller           client clock

The peer, measured in the same run on the same node and base image: a bare pod that
runs ``python3 -c 'print(1)'``, created and watched to completion with the kubernetes
client, as ``kubectl run --rm`` would. The ratio total(fairing) / total(bare pod) says
how much fairing adds to what pod start costs anyway.

The warm path (``warm=True``, :mod:`fairing.deployers.warm`), in the same run: a worker is
started by one call, then each round calls a function with a one-line change (a new code
layer's worth of change) and times call -> result on the worker. ``warm / bare pod`` is
the ratio the warm path is judged by (the goal: 0.25 or less).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fairing  # noqa: E402
from fairing.backends import Backend  # noqa: E402
from fairing.builders.append import AppendBuilder  # noqa: E402
from fairing.builders.warm import WarmBuilder  # noqa: E402
from fairing.deployers.warm import WarmDeployer  # noqa: E402
from fairing.deployers.job import JobDeployer  # noqa: E402
from fairing.events import LogLine, Stage  # noqa: E402
from fairing.kube import KubeClient  # noqa: E402

STATE = Path("/var/lib/fairing-cluster")


def _ts(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _namespace(kube: KubeClient) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    return name


def fairing_round(backend: Backend, kube: KubeClient) -> dict:
    marks: dict = {}
    start = time.perf_counter()
    wall0 = time.time()

    def on_event(event):
        now = time.perf_counter() - start
        if isinstance(event, Stage) and event.status == "finished":
            marks.setdefault(event.name, now)
        if isinstance(event, LogLine):
            marks.setdefault("first_log", now)

    token = uuid.uuid4().hex  # a new function body: a new code layer each round

    @fairing.train(backend=backend, on_event=on_event, timeout=600, cleanup="never")
    def job(token=token):
        print("started", token, flush=True)
        return token

    handle = job.submit()
    try:
        assert handle.result(600) == token
        marks["result"] = time.perf_counter() - start
        pods = kube.core.list_namespaced_pod(kube.namespace, label_selector=f"fairing.dev/job={handle.name}").items
        pod = pods[0]
        created = _ts(kube.batch.read_namespaced_job(handle.name, kube.namespace).metadata.creation_timestamp)
        scheduled = next(_ts(c.last_transition_time) for c in pod.status.conditions if c.type == "PodScheduled")
        state = pod.status.container_statuses[0].state.terminated
        started, finished = _ts(state.started_at), _ts(state.finished_at)
    finally:
        handle.delete()
    return {
        "package": marks["package"],
        "build/push": marks["build"] - marks["package"],
        "create": marks["deploy"] - marks["build"],
        "schedule": max(0.0, scheduled - created),
        "pull+start": max(0.0, started - scheduled),
        "first log": marks.get("first_log", float("nan")),
        "result back": max(0.0, (wall0 + marks["result"]) - finished),
        "total": marks["result"],
    }


def warm_round(backend: Backend) -> float:
    token = uuid.uuid4().hex  # a one-line change: a new function body each round
    start = time.perf_counter()

    @fairing.train(backend=backend, timeout=600, quiet=True, on_event=lambda e: None)
    def job(token=token):
        return token

    assert job() == token
    return time.perf_counter() - start


def bare_pod_round(kube: KubeClient, image: str) -> float:
    name = f"bare-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    kube.core.create_namespaced_pod(kube.namespace, {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image,
                                                             "command": ["python3", "-c", "print(1)"]}]}})
    w = kube.watch()
    for event in w.stream(kube.core.list_namespaced_pod, kube.namespace, field_selector=f"metadata.name={name}",
                          timeout_seconds=600):
        if event["object"].status.phase in ("Succeeded", "Failed"):
            w.stop()
    elapsed = time.perf_counter() - start
    kube.core.delete_namespaced_pod(name, kube.namespace, grace_period_seconds=0)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from tests.services.base_image import push_base_image

    kubeconfig = os.environ.get("KUBECONFIG") or str(STATE / "kubeconfig")
    registry = (STATE / "registry").read_text().strip()
    base = str(push_base_image(registry, insecure=True))
    admin = KubeClient(kubeconfig=kubeconfig)
    namespace = _namespace(admin)
    kube = KubeClient(kubeconfig=kubeconfig, namespace=namespace)
    try:
        backend = Backend("bench", AppendBuilder(base, f"{registry}/bench", insecure=True), JobDeployer(kube=kube))
        fairing_round(backend, kube)  # warm: base image on the node, dependency layer in the registry
        bare_pod_round(kube, base)
        warm_backend = Backend("bench-warm", WarmBuilder(AppendBuilder(base, f"{registry}/bench", insecure=True)),
                               WarmDeployer(kube=kube, idle=120))
        warm_round(warm_backend)  # starts the worker
        rows, bare, warm = [], [], []
        for _ in range(args.repeat):  # interleaved: the machine's load falls on all three alike
            rows.append(fairing_round(backend, kube))
            bare.append(bare_pod_round(kube, base))
            warm.append(warm_round(warm_backend))
    finally:
        admin.core.delete_namespace(namespace)
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    result = {"fairing": median, "bare_pod_total": statistics.median(bare),
              "ratio_total_to_bare_pod": median["total"] / statistics.median(bare),
              "warm_total": statistics.median(warm), "ratio_warm_to_bare_pod": statistics.median(warm) / statistics.median(bare),
              "rounds": rows, "bare": bare, "warm": warm}
    for key, value in median.items():
        print(f"{key:>12}: {value:6.2f} s")
    print(f"{'bare pod':>12}: {result['bare_pod_total']:6.2f} s")
    print(f"{'warm re-run':>12}: {result['warm_total']:6.2f} s")
    print(f"ratio fairing total / bare pod: {result['ratio_total_to_bare_pod']:.2f}")
    print(f"ratio warm re-run / bare pod: {result['ratio_warm_to_bare_pod']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
