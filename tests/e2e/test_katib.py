"""Hyperparameter search on the cluster's Katib (tests/cluster/katib.sh): a random search
whose trials are fairing jobs, a failing trial named with its log, Ctrl-C removing the
Experiment with its trials and pods, the errors for a Katib that is absent (a CRD group
that discovery does not know: the real CRDs stay), an algorithm it does not serve and a
suggestion service that fails, and the README's "Many calls" block as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fairing
from fairing import (DoubleRange, IntRange, KatibAlgorithmError, KatibNotInstalledError, SuggestionError,
                     TrialFailedError)
from fairing.backends import Backend
from fairing.deployers.job import JobDeployer
from fairing.events import TrialUpdate

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


INJECTION = "katib.kubeflow.org/metrics-collector-injection"


@pytest.fixture
def katib_namespace(core_v1, namespace):
    """The test's namespace labelled for Katib, as a Kubeflow profile's namespace is."""
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {INJECTION: "enabled"}}})
    return namespace


@pytest.fixture
def katib_backend(builder, kube, katib_namespace):
    # named as a real backend: its job records are then valid ones (`fairing list` reads them)
    return Backend("kubernetes", builder, JobDeployer(kube=kube))


def _katib_left(kube) -> list:
    ns = kube.namespace
    left = []
    for plural in ("experiments", "trials", "suggestions"):
        items = kube.custom.list_namespaced_custom_object("kubeflow.org", "v1beta1", ns, plural).get("items", [])
        left += [f"{plural}/{i['metadata']['name']}" for i in items]
    left += [f"job/{j.metadata.name}" for j in kube.batch.list_namespaced_job(ns).items]
    left += [f"pod/{p.metadata.name}" for p in kube.core.list_namespaced_pod(ns).items]
    left += [f"secret/{s.metadata.name}" for s in kube.core.list_namespaced_secret(ns).items
             if s.metadata.name.endswith("-result-key")]
    return left


def _gone(kube, timeout: float = 120) -> list:
    """What of the search is still in the namespace after ``timeout`` seconds (terminating pods go
    after their grace period)."""
    import time

    deadline = time.monotonic() + timeout
    while (left := _katib_left(kube)) and time.monotonic() < deadline:
        time.sleep(2)
    return left


def test_a_random_search_reports_the_best_of_its_trials_own_values(katib_backend, kube, kubeconfig):
    events = []

    @fairing.train(backend=katib_backend, timeout=1200, on_event=events.append)
    def fit(lr, depth):
        print(f"fitting lr={lr} depth={depth}")
        return {"accuracy": round(1.0 - abs(lr - 0.05) * 5 - 0.01 * depth, 6), "lr_seen": lr}

    handle = fairing.sweep_submit(fit, {"lr": DoubleRange(0.01, 0.1), "depth": IntRange(2, 6)}, metric="accuracy",
                                  mode="max", algorithm="random", max_trials=6, parallel_trials=3)
    try:
        listed = {j.name: j for j in fairing.jobs(namespace=kube.namespace, kubeconfig=kubeconfig)}
        assert listed[handle.name].kind == "Experiment"  # `fairing list` shows the search
        best = handle.result(1200)
        logs = "\n".join(handle.logs(follow=False))
    finally:
        handle.delete()
    assert len(best.details) == 6 and {t.state for t in best.details} == {"Succeeded"}, best.details
    for t in best.details:
        assert isinstance(t.params["lr"], float) and isinstance(t.params["depth"], int)
        assert 0.01 <= t.params["lr"] <= 0.1 and 2 <= t.params["depth"] <= 6
        assert t.result["lr_seen"] == t.params["lr"]  # the function ran with Katib's values
        assert t.value == pytest.approx(t.result["accuracy"])  # Katib got the function's own number
    own_best = max(best.details, key=lambda t: t.result["accuracy"])
    assert best.score == pytest.approx(own_best.result["accuracy"])
    assert best.params == own_best.params and best.result == own_best.result
    assert best.trials == [(t.params, t.result) for t in best.details]
    assert best.experiment == handle.name
    updates = [e for e in events if isinstance(e, TrialUpdate)]
    assert {u.trial for u in updates if u.state == "Succeeded"} == {t.name for t in best.details}
    assert "fitting lr=" in logs
    assert _gone(kube) == []


def test_the_functions_own_metric_lines_cannot_forge_what_katib_sees(katib_backend, kube):
    """A training log printing ``accuracy=999`` (plain, or after a timestamp, which Katib's
    collector sorts after an untimestamped line for its 'latest' strategy) is not the metric:
    the value the function returns is."""
    @fairing.train(backend=katib_backend, timeout=900)
    def fit(lr):
        import datetime

        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        print("accuracy=999", flush=True)
        print(f"{now} epoch 9 accuracy=999", flush=True)
        print("fairing-metric accuracy=999", flush=True)
        return {"accuracy": lr}

    best = fairing.sweep(fit, {"lr": [0.25, 0.5]}, metric="accuracy", engine="katib", algorithm="random",
                         max_trials=2, parallel_trials=2)
    assert [t.state for t in best.details] == ["Succeeded", "Succeeded"], best.details
    for t in best.details:
        assert t.value == pytest.approx(t.result["accuracy"]) == pytest.approx(t.params["lr"]), best.details
    assert best.score in (0.25, 0.5)
    assert _gone(kube) == []


def test_a_failing_trial_is_named_with_its_log(katib_backend, kube):
    @fairing.train(backend=katib_backend, timeout=900)
    def fit(kind):
        print("about to fail: marker-7c1f", flush=True)
        raise ValueError(f"cannot fit {kind}")

    with pytest.raises(TrialFailedError) as err:
        fairing.sweep(fit, {"kind": ["linear"]}, metric="accuracy", engine="katib", max_trials=1, parallel_trials=1)
    exc = err.value
    assert exc.params == {"kind": "linear"} and exc.trial in str(exc)
    assert "cannot fit linear" in str(exc)
    assert "marker-7c1f" in (exc.logs_tail or ""), exc.logs_tail
    assert [t.state for t in exc.trials] == ["Failed"]
    assert _gone(kube) == []


@pytest.mark.parametrize("signum, when", [
    (signal.SIGINT, "trial running"),
    (signal.SIGTERM, "trial running"),
    (signal.SIGINT, "creating the Experiment"),  # the signal races the Experiment's creation
])
def test_ctrl_c_leaves_no_experiment_trial_or_pod(base_image, registry_address, kubeconfig, katib_namespace, kube,
                                                  tmp_path, signum, when):
    namespace = katib_namespace
    submitter = tmp_path / "submit.py"
    submitter.write_text(textwrap.dedent(f"""
        import fairing
        from fairing.backends import Backend
        from fairing.builders.append import AppendBuilder
        from fairing.deployers.job import JobDeployer
        from fairing.kube import KubeClient

        kube = KubeClient(kubeconfig={kubeconfig!r}, namespace={namespace!r})
        backend = Backend("e2e", AppendBuilder({base_image!r}, {registry_address + '/fairing-e2e'!r}, insecure=True),
                          JobDeployer(kube=kube))

        @fairing.train(backend=backend, on_event=lambda e: print(e, flush=True))
        def slow(n):
            import time
            print("started", flush=True)
            time.sleep(600)
        fairing.sweep(slow, {{"n": fairing.IntRange(1, 100)}}, metric="m", engine="katib", max_trials=4,
                      parallel_trials=2)
    """))
    proc = subprocess.Popen([sys.executable, str(submitter)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if when == "trial running" and "started" in line and "LogLine" in line:
                break
            if when == "creating the Experiment" and "name='deploy', status='started'" in line:
                break
        if when == "trial running":
            pods = kube.core.list_namespaced_pod(namespace).items
            assert any((p.metadata.labels or {}).get("katib.kubeflow.org/trial") for p in pods), "".join(seen)
        proc.send_signal(signum)
        rest = proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, rest[-2000:]
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in rest, rest[-2000:]
    assert _gone(kube, 240) == [], rest[-3000:]


def test_without_katib_the_error_names_it_and_how_to_install_it(katib_backend):
    @fairing.train(backend=katib_backend)
    def fit(a):
        return a

    with pytest.raises(KatibNotInstalledError) as err:  # a group discovery does not know: as if not installed
        fairing.sweep(fit, {"a": [1, 2]}, metric="a", engine="katib", katib_group="absent.fairing.example.org")
    message = str(err.value)
    assert "Katib is not installed" in message and "github.com/kubeflow/katib" in message
    assert isinstance(err.value, fairing.MissingCRDError)


def test_an_unlabelled_namespace_is_refused_before_the_build_saying_how_to_label_it(builder, kube, namespace):
    @fairing.train(backend=Backend("e2e", builder, JobDeployer(kube=kube)))
    def fit(a):
        return a

    with pytest.raises(fairing.ConfigurationError) as err:
        fairing.sweep(fit, {"a": [1, 2]}, metric="a", engine="katib")
    assert f"kubectl label namespace {namespace} {INJECTION}=enabled" in str(err.value)


def test_an_algorithm_the_installed_katib_lacks_is_named_with_those_it_has(katib_backend):
    @fairing.train(backend=katib_backend)
    def fit(a):
        return a

    with pytest.raises(KatibAlgorithmError) as err:
        fairing.sweep(fit, {"a": [1, 2]}, metric="a", engine="katib", algorithm="hyperband")
    assert "'hyperband'" in str(err.value) and "'random'" in str(err.value) and "'tpe'" in str(err.value)


def test_a_failing_suggestion_service_is_a_suggestion_error(katib_backend, kube):
    @fairing.train(backend=katib_backend, timeout=600)
    def fit(a):
        return float(a)

    with pytest.raises(SuggestionError) as err:
        fairing.sweep(fit, {"a": IntRange(1, 5)}, metric="a", engine="katib", max_trials=2,
                      algorithm_settings={"random_state": "not-a-number"})
    assert "random_state" in str(err.value) or "not-a-number" in str(err.value), str(err.value)
    assert _gone(kube) == []


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    marker = "<!-- katib: executed as written by tests/e2e/test_katib.py -->"
    assert marker in text
    return re.search(r"```python\n(.*?)```", text.split(marker, 1)[1], flags=re.S).group(1)


def test_the_readme_katib_block_runs(base_image, registry_address, kubeconfig, katib_namespace, kube, tmp_path):
    namespace = katib_namespace
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    env.update(FAIRING_BACKEND="kubernetes", FAIRING_BASE_IMAGE=base_image,
               FAIRING_REGISTRY=f"{registry_address}/fairing-e2e", FAIRING_INSECURE_REGISTRIES=registry_address,
               FAIRING_NAMESPACE=namespace, KUBECONFIG=kubeconfig, XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    block = _readme_block()
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("best: {'lr': ") and "'depth': " in last, proc.stdout[-2000:]
    assert _gone(kube) == []
