"""map/starmap, sweep, output files and serving a job's outputs on the local backend: the
same API the e2e tier runs on the cluster (tests/e2e/test_map_outputs.py)."""

from __future__ import annotations

import _thread
import os
import threading
import time

import pytest

import fairing
from fairing import ConfigurationError, JobFailedError, JobTimeoutError, MapError, PredictionEndpoint


def _leftover_jobs(prefix: str) -> list:
    from fairing.jobs import jobs_dir

    return [p.name for p in jobs_dir().glob(f"{prefix}*")] if jobs_dir().exists() else []


@fairing.train(backend="local", quiet=True, timeout=300)
def square_unless_bad(x):
    if x in (2, 5):
        print(f"about to fail on {x}")
        raise ValueError(f"bad input {x}")
    return x * x


def test_map_over_8_inputs_with_2_failing_keeps_6_results_and_names_the_2(workdir, no_leftovers):
    with pytest.raises(MapError) as info:
        square_unless_bad.map(range(8), parallelism=3)
    err = info.value
    assert isinstance(err, fairing.FairingError)
    assert err.failed_indexes == [2, 5]
    assert err.results == [0, 1, None, 9, 16, None, 36, 49]
    assert [type(e) for e in err.failures.values()] == [ValueError, ValueError]  # as one call would raise it
    assert str(err.failures[5]) == "bad input 5"
    message = str(err)
    assert "2 of 8 calls" in message and "[2] ValueError: bad input 2" in message and "[5] ValueError" in message
    assert "about to fail on 5" in err.logs[5]  # each failure's log tail
    assert "about to fail on 2" not in err.logs[5]


def test_map_returns_results_in_input_order(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def slow_first(x):
        import time

        time.sleep(1.5 if x == 0 else 0)
        return f"r{x}"

    assert slow_first.map([0, 1, 2, 3], parallelism=4) == ["r0", "r1", "r2", "r3"]
    assert slow_first.map([]) == []


def test_starmap_takes_tuples_and_dicts(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def power(base, exp=2):
        return base ** exp

    assert power.starmap([(2,), (2, 3), {"base": 3, "exp": 3}], parallelism=2) == [4, 8, 27]
    with pytest.raises(ConfigurationError, match="starmap takes tuples"):
        power.starmap([5])


def test_map_options_are_checked(workdir):
    with pytest.raises(ConfigurationError, match="parallelism must be a positive integer, got 0"):
        square_unless_bad.map([1], parallelism=0)


def test_ctrl_c_during_a_map_removes_every_process(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def sleeps(x):
        import time

        time.sleep(60)

    threading.Timer(4.0, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sleeps.map(range(4), parallelism=2)
    assert time.monotonic() - started < 30
    assert _leftover_jobs("map-") == []


def test_a_map_past_its_timeout_is_stopped(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=3)
    def sleeps(x):
        import time

        time.sleep(60)

    with pytest.raises(JobTimeoutError, match="did not finish within 3 s"):
        sleeps.map(range(3))
    assert _leftover_jobs("map-") == []


@fairing.train(backend="local", quiet=True, timeout=300)
def fit(alpha, depth):
    return {"accuracy": 1.0 - abs(alpha - 0.5) - 0.01 * depth, "alpha": alpha}


def test_sweep_returns_the_best_of_the_grid(workdir, no_leftovers):
    best = fairing.sweep(fit, {"alpha": [0.1, 0.5, 1.0], "depth": [3, 5]}, metric="accuracy", mode="max")
    assert best.params == {"alpha": 0.5, "depth": 3}
    assert best.result["alpha"] == 0.5 and best.score == pytest.approx(0.97)
    assert len(best.trials) == 6 and best.trials[0][0] == {"alpha": 0.1, "depth": 3}
    worst = fairing.sweep(fit, {"alpha": [0.1, 0.5], "depth": [3]}, metric=lambda r: r["accuracy"], mode="min")
    assert worst.params == {"alpha": 0.1, "depth": 3}


def test_sweep_options_are_checked(workdir):
    with pytest.raises(ConfigurationError, match=r"mode must be one of \('max', 'min'\), got 'maximum'"):
        fairing.sweep(fit, {"alpha": [1]}, metric="accuracy", mode="maximum")
    with pytest.raises(ConfigurationError, match="takes a grid"):
        fairing.sweep(fit, {}, metric="accuracy")
    with pytest.raises(ConfigurationError, match="decorated with @fairing.train"):
        fairing.sweep(lambda alpha: alpha, {"alpha": [1]})
    with pytest.raises(ConfigurationError, match="The metric 'loss' is not in the result"):
        fairing.sweep(fit, {"alpha": [0.5], "depth": [1]}, metric="loss")


@fairing.train(backend="local", quiet=True, timeout=300, outputs=["model.txt", "metrics/"], outputs_dir="back")
def writes_outputs(a):
    import json
    import os

    with open("model.txt", "w") as fh:
        fh.write(f"model {a}")
    os.makedirs("metrics/deep", exist_ok=True)
    with open("metrics/deep/scores.json", "w") as fh:
        json.dump({"a": a}, fh)
    with open(os.path.join(os.environ["FAIRING_OUTPUTS"], "extra.bin"), "wb") as fh:
        fh.write(b"\0" * 1000)
    return a


def test_outputs_come_back_before_cleanup(workdir, no_leftovers):
    assert writes_outputs(7) == 7
    assert (workdir / "back" / "model.txt").read_text() == "model 7"
    assert (workdir / "back" / "metrics" / "deep" / "scores.json").read_text() == '{"a": 7}'
    assert (workdir / "back" / "extra.bin").stat().st_size == 1000


def test_handle_outputs_downloads_them_and_delete_removes_them(workdir, no_leftovers):
    handle = writes_outputs.submit(1)
    try:
        got = handle.outputs(workdir / "here")
        assert sorted(got) == ["extra.bin", "metrics/deep/scores.json", "model.txt"]
        assert got["model.txt"].read_text() == "model 1"
        where = handle.outputs_artifact().ref
    finally:
        handle.delete()
    assert not os.path.exists(where)


def test_a_listed_output_the_job_did_not_write_fails_it(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300, outputs=["model.joblib"])
    def forgets():
        return 1

    with pytest.raises(JobFailedError, match="the output 'model.joblib' was not written by the job") as info:
        forgets()
    assert info.value.exit_code == 4


def test_output_paths_are_checked(workdir):
    for bad in ("../model.joblib", "/tmp/model.joblib"):
        with pytest.raises(ConfigurationError, match="outputs are paths relative to the job's working directory"):
            fairing.train(backend="local", outputs=[bad])(lambda: 1)


def test_a_map_keeps_each_index_outputs_and_sweep_returns_the_best_ones(workdir, no_leftovers):
    best = fairing.sweep(writes_outputs, {"a": [3, 9, 4]}, mode="max", outputs_dir="best")
    assert best.params == {"a": 9}
    assert (workdir / "best" / "model.txt").read_text() == "model 9"
    assert sorted(best.outputs) == ["extra.bin", "metrics/deep/scores.json", "model.txt"]


class Doubler:
    def load(self):
        with open("weights.txt") as fh:
            self.w = float(fh.read())

    def predict(self, X):
        return [[v * self.w for v in row] for row in X]


def test_an_endpoint_serves_a_jobs_outputs(workdir, no_leftovers):
    @fairing.train(backend="local", quiet=True, timeout=300)
    def trains():
        import os

        with open(os.path.join(os.environ["FAIRING_OUTPUTS"], "weights.txt"), "w") as fh:
            fh.write("2.5")

    handle = trains.submit()
    try:
        with PredictionEndpoint(Doubler, model=handle, backend="local") as endpoint:
            assert endpoint.predict([[1.0, 2.0]]) == [[2.5, 5.0]]
    finally:
        handle.delete()


def test_an_endpoint_refuses_a_model_it_cannot_serve(workdir, no_leftovers):
    with pytest.raises(ConfigurationError, match="model takes a job's handle or its Outputs"):
        PredictionEndpoint(Doubler, model="model.joblib", backend="local")

    @fairing.train(backend="local", quiet=True, timeout=300)
    def writes_nothing():
        return 1

    handle = writes_nothing.submit()
    try:
        with pytest.raises(ConfigurationError, match=f"The job {handle.name} wrote no outputs to serve"):
            PredictionEndpoint(Doubler, model=handle, backend="local")
    finally:
        handle.delete()


def test_a_map_on_a_deployer_that_cannot_run_one_is_refused():
    from fairing.api import _MapDeployer
    from fairing.deployers.training import PyTorchJobDeployer

    with pytest.raises(ConfigurationError, match="map\\(\\) runs on the local backend or as a Kubernetes Job; "
                                                 "the PyTorchJobDeployer cannot run a map"):
        _MapDeployer(PyTorchJobDeployer(), 2, 1)


def test_a_trainjob_script_names_its_outputs(workdir, no_leftovers):
    from fairing import TrainJob

    (workdir / "train.py").write_text("open('model.txt', 'w').write('from a script')\n")
    handle = TrainJob("train.py", backend="local", outputs=["model.txt"], quiet=True).submit()
    try:
        assert handle.outputs(workdir / "got")["model.txt"].read_text() == "from a script"
    finally:
        handle.delete()


def test_a_local_endpoint_refuses_a_registry_artifact(workdir):
    from fairing.outputs import Outputs

    artifact = Outputs("registry.example:5000/img-outputs/job@sha256:" + "a" * 64)
    with pytest.raises(ConfigurationError, match="is an artifact in a registry, which the local backend's endpoint "
                                                 "cannot pull"):
        PredictionEndpoint(Doubler, model=artifact, backend="local")
    assert artifact.uri == "oci://registry.example:5000/img-outputs/job@sha256:" + "a" * 64  # KServe's storage URI
