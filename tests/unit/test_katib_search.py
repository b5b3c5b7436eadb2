"""The Katib search's pure parts: the search space as Katib takes it, the trial's side in
the runtime (Katib's text values back to Python values, the metric lines Katib's StdOut
collector parses) and the Experiment's manifest."""

from __future__ import annotations

import math
import re

import pytest

import fairing
from fairing import Categorical, ConfigurationError, DoubleRange, IntRange
from fairing.deployers.job import JobDeployer
from fairing.deployers.katib import KatibDeployer, katib_space
from fairing.runtime import trial

# Katib's StdOut collector's default filter (pkg/metricscollector/v1beta1/common, v0.19.0)
KATIB_FILTER = re.compile(trial.METRICS_FORMAT)  # the Experiment's collector filter (Go RE2; the same here)


def test_the_space_takes_katibs_kinds_and_lists():
    params, runtime = katib_space({"lr": DoubleRange(0.01, 0.1, step=0.01), "depth": IntRange(2, 8),
                                   "opt": ["sgd", "adam"], "flag": Categorical([True, False])})
    assert params == [
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1", "step": "0.01"}},
        {"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "8"}},
        {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
        {"name": "flag", "parameterType": "categorical", "feasibleSpace": {"list": ["True", "False"]}},
    ]
    env = {"FAIRING_TRIAL_0": "0.03", "FAIRING_TRIAL_1": "5", "FAIRING_TRIAL_2": "adam", "FAIRING_TRIAL_3": "False"}
    assert trial.parameters(runtime, env) == {"lr": 0.03, "depth": 5, "opt": "adam", "flag": False}


@pytest.mark.parametrize("space, words", [
    ({}, "takes a space"),
    ([("a", [1])], "takes a space"),
    ({"not valid": [1]}, "identifier"),
    ({"a": IntRange(5, 1)}, "above max"),
    ({"a": IntRange(1, 5, step=0)}, "positive"),
    ({"a": IntRange(1.5, 5)}, "integer"),
    ({"a": DoubleRange("0", 1)}, "number"),
    ({"a": DoubleRange(0, 1, step=-0.1)}, "positive"),
    ({"a": []}, "no values"),
    ({"a": [1, "1"]}, "twice"),
    ({"a": [{"x": 1}]}, "index or a name"),
    ({"a": ['x"; rm -rf /']}, "cannot travel"),
    ({"a": ["${trialParameters.b}"]}, "cannot travel"),
    ({"a": ["x" * 201]}, "cannot travel"),
    ({"a": ["bad\nline"]}, "cannot travel"),
    ({"a": range(3)}, "not a search space kind"),
    ({"a": DoubleRange(math.nan, 1.0)}, "finite"),  # nan > max is False: it passed the order check
    ({"a": DoubleRange(0.0, math.inf)}, "finite"),
    ({"a": IntRange(0, 10 ** 30)}, "64 bits"),
    ({"a": [f"v{i:06d}" for i in range(20000)]}, "over 65536"),  # would overflow the annotation after building
])
def test_a_space_katib_cannot_carry_is_refused(space, words):
    with pytest.raises(ConfigurationError, match=words):
        katib_space(space)


def test_a_value_katib_sends_that_does_not_fit_is_a_trial_error():
    _, runtime = katib_space({"n": IntRange(1, 3), "c": ["a", "b"]})
    with pytest.raises(trial.TrialError, match="not a number"):
        trial.parameters(runtime, {"FAIRING_TRIAL_0": "1.5e", "FAIRING_TRIAL_1": "a"})
    with pytest.raises(trial.TrialError, match="not one of"):
        trial.parameters(runtime, {"FAIRING_TRIAL_0": "1", "FAIRING_TRIAL_1": "z"})
    with pytest.raises(trial.TrialError, match="no value"):
        trial.parameters(runtime, {"FAIRING_TRIAL_0": "1"})
    with pytest.raises(trial.TrialError, match="not a number"):  # unsubstituted by Katib
        trial.parameters(runtime, {"FAIRING_TRIAL_0": "${trialParameters.n}", "FAIRING_TRIAL_1": "a"})


@pytest.mark.parametrize("value, lines", [
    (0.5, ["fairing-metric:score=0.5"]),
    (3, ["fairing-metric:score=3.0"]),
    (1e-12, ["fairing-metric:score=1e-12"]),
    ({"score": 0.25, "loss": 2, "note": "text"}, ["fairing-metric:loss=2.0", "fairing-metric:score=0.25"]),
    # keys that would print a line parsing as another name are left out
    ({"score": 0.25, "x\nscore": 999, "a=b": 1, "x score": 5, "préc": 2, 7: 3}, ["fairing-metric:score=0.25"]),
])
def test_metric_lines_are_what_katibs_stdout_collector_parses(value, lines):
    got = trial.metric_lines(value, "score")
    assert got == lines
    parsed = {m.group(1): float(m.group(2)) for m in map(KATIB_FILTER.match, got)}
    assert parsed["score"] == pytest.approx(value["score"] if isinstance(value, dict) else value)


@pytest.mark.parametrize("value, words", [
    ("0.5", "not a number"),
    (None, "not a number"),
    (math.nan, "not a number"),
    (math.inf, "not a number"),
    (True, "not a number"),  # a bool is no score (float(True) is 1.0)
    (10 ** 400, "not a number"),  # past a float: a TrialError, not an OverflowError
    ({"score": False}, "objective metric 'score'"),
    ({"loss": 1.0}, "objective metric 'score'"),
    ({"score": "high"}, "objective metric 'score'"),
])
def test_a_result_without_the_metric_fails_the_trial_with_a_reason(value, words):
    with pytest.raises(trial.TrialError, match=words):
        trial.metric_lines(value, "score")


def _fake_proc(tmp_path, collector: bool):
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "cmdline").write_bytes(b"/pause\0")
    (proc / "self").mkdir()
    if collector:
        (proc / "42").mkdir()
        (proc / "42" / "cmdline").write_bytes(b"/manager\0-t\0trial-x\0-m\0acc\0-s-db\0katib-db-manager.kubeflow:6789\0")
    return str(proc)


def test_the_trial_runs_the_function_with_katibs_values_and_prints_the_metric_last(capsys, tmp_path):
    _, runtime = katib_space({"a": IntRange(1, 3), "b": DoubleRange(0, 1)})
    got = trial.run(lambda a, b: {"acc": a * b, "loss": 1.0}, {"space": runtime, "metric": "acc"},
                    {"FAIRING_TRIAL_0": "2", "FAIRING_TRIAL_1": "0.25"}, proc=_fake_proc(tmp_path, True))
    assert got == {"acc": 0.5, "loss": 1.0}
    assert capsys.readouterr().out.strip().splitlines()[-1] == "fairing-metric:acc=0.5"


@pytest.mark.parametrize("line", [
    "acc=999",
    "2026-12-08T01:00:00Z epoch 3 acc=999",  # timestamped: Katib would sort it after the runtime's line
    "fairing-metric acc=999",
])
def test_the_functions_own_metric_like_output_is_not_read_by_the_collector(line):
    assert not [m for m in re.finditer(trial.METRICS_FORMAT, line) if m.group(1) == "acc"]


def test_a_trial_ends_only_once_katibs_collector_is_up(tmp_path):
    import time

    started = time.monotonic()
    assert trial.wait_for_collector(_fake_proc(tmp_path, True), timeout=5, settle=0.5) is True
    assert 0.5 <= time.monotonic() - started < 3
    started = time.monotonic()
    assert trial.wait_for_collector(_fake_proc(tmp_path / "none", False), timeout=1, settle=0) is False
    assert time.monotonic() - started >= 1
    assert trial.wait_for_collector(str(tmp_path / "no-such-proc"), timeout=5) is False


def _deployer(**search):
    _, runtime = katib_space({"a": IntRange(1, 3), "c": ["x", "y"]})
    params, _ = katib_space({"a": IntRange(1, 3), "c": ["x", "y"]})
    base = JobDeployer(namespace="ns", pull_credentials=False, kube=object())
    return KatibDeployer.from_deployer(base, parameters=params, space=runtime, metric="acc",
                                       **{"mode": "min", "algorithm": "random", "max_trials": 6,
                                          "parallel_trials": 2, **search})


def test_the_experiment_runs_the_image_as_batch_job_trials_with_the_parameters_in_the_environment():
    body = _deployer().manifest("10.0.0.1:5000/fit@sha256:" + "0" * 64, "fairing-x")
    spec = body["spec"]
    assert body["kind"] == "Experiment" and body["apiVersion"] == "kubeflow.org/v1beta1"
    assert spec["objective"]["type"] == "minimize" and spec["objective"]["objectiveMetricName"] == "acc"
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"},
                                            "source": {"filter": {"metricsFormat": [trial.METRICS_FORMAT]}}}
    assert ";" not in trial.METRICS_FORMAT  # the collector splits its filters on ';'
    assert len(re.compile(trial.METRICS_FORMAT).groupindex) == 0 and re.compile(trial.METRICS_FORMAT).groups == 2
    assert spec["maxTrialCount"] == 6 and spec["parallelTrialCount"] == 2 and spec["maxFailedTrialCount"] == 6
    job = spec["trialTemplate"]["trialSpec"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python3", "-m", "fairing_runtime"]  # Katib wraps an explicit command
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FAIRING_TRIAL_0"] == "${trialParameters.a}" and env["FAIRING_TRIAL_1"] == "${trialParameters.c}"
    assert "FAIRING_RESULT_LOG" not in env  # stdout goes to Katib's collector
    # trials push no outputs: the registry credentials stay out of the function's reach
    assert "FAIRING_OUTPUTS_AUTH_FILE" not in env and "fairing-registry" not in str(pod["spec"])
    assert [p["name"] for p in spec["trialTemplate"]["trialParameters"]] == ["a", "c"]
    # the trial Jobs are not fairing's to list: only the Experiment is
    assert "labels" not in job.get("metadata", {})


def test_sweep_refuses_what_katib_cannot_do_before_building():
    @fairing.train(backend="local")
    def fit(a):
        return a

    with pytest.raises(ConfigurationError, match="Kubernetes"):
        fairing.sweep(fit, {"a": [1, 2]}, engine="katib", metric="a")
    with pytest.raises(ConfigurationError, match="metric's name"):
        fairing.sweep(fit, {"a": [1, 2]}, engine="katib", metric=lambda r: r)
    for bad in (0, -3, 2 ** 31, True, 2.0):
        with pytest.raises(ConfigurationError, match="max_trials"):
            fairing.sweep(fit, {"a": [1, 2]}, engine="katib", max_trials=bad)
    for bad in (True, -1, 2 ** 31):
        with pytest.raises(ConfigurationError, match="max_failed_trials"):
            fairing.sweep(fit, {"a": [1, 2]}, engine="katib", max_failed_trials=bad)
    for bad in ("préc", "a b", "a=b", "", "1a"):  # Katib's collector matches names with ASCII \w
        with pytest.raises(ConfigurationError, match="metric is a name"):
            fairing.sweep(fit, {"a": [1, 2]}, engine="katib", metric=bad)
    with pytest.raises(ConfigurationError, match="did you mean 'katib'"):
        fairing.sweep(fit, {"a": [1, 2]}, engine="katip")
    with pytest.raises(ConfigurationError, match="Did you mean 'parallel_trials'"):
        fairing.sweep(fit, {"a": [1, 2]}, engine="katib", paralel_trials=2)
    with pytest.raises(ConfigurationError, match="apply to engine='katib'"):
        fairing.sweep(fit, {"a": [1, 2]}, max_trials=3)


def test_a_search_name_katib_would_refuse_is_refused_before_building():
    """Katib's webhook takes at most 40 characters, a DNS label: said before the image is built
    (the kube client here is no client: reaching the cluster would fail otherwise)."""
    from fairing.backends import Backend
    from fairing.builders.append import AppendBuilder

    def backend(prefix):
        return Backend("kubernetes", AppendBuilder("python:3.11", "127.0.0.1:1/x", insecure=True),
                       JobDeployer(namespace="ns", kube=object(), name_prefix=prefix))

    @fairing.train(backend=backend("a-prefix-over-22-chars-x"))
    def fit(a):
        return a

    with pytest.raises(ConfigurationError, match="at most 40"):
        fairing.sweep_submit(fit, {"a": [1, 2]})
    fit = fairing.train(backend=backend("fairing"))(fit.func)
    for bad in ("My_Search", "x" * 41, "-a", "a;b"):
        with pytest.raises(ConfigurationError, match="at most 40"):
            fairing.sweep_submit(fit, {"a": [1, 2]}, name=bad)


def test_a_credential_among_the_values_is_refused_with_the_payload():
    """Categorical values enter the payload and the Experiment (readable by anyone who may get
    experiments): the payload's credential scan refuses a token before anything is created."""
    from fairing.deployers.katib import trial_call
    from fairing.errors import SecretInContextError
    from fairing.preprocessors.function import FunctionPreprocessor

    def fit(tok):
        return 1.0

    _, runtime = katib_space({"tok": ["ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "b"]})
    with pytest.raises(SecretInContextError, match="GitHub token"):
        FunctionPreprocessor(fit, (), trial_call(runtime, "objective")).context()


def test_the_trial_log_stream_takes_what_the_watch_passes():
    """The watch starts a pod's stream with its main container: the Katib handle's override
    (which reads the collector sidecar instead) must take that argument, else no trial log
    ever streams (a TypeError in the stream's thread)."""
    import inspect

    from fairing.deployers.katib import KatibHandle
    from fairing.kube.watch import Workload

    base = inspect.signature(Workload._stream)
    inspect.signature(KatibHandle._stream).bind(*[None] * len(base.parameters))
