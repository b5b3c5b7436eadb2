"""queue=: checked when given, from every place a setting comes from; Kueue's label on each
batch workload (and no endpoint); what Kueue's Workload conditions say, read as a QueueState.
(The cluster side, a real Kueue holding and admitting jobs, is tests/e2e/test_kueue.py.)"""

from __future__ import annotations

import pytest

from fairing import ConfigurationError, QueueNotFoundError
from fairing.backends import with_settings
from fairing.deployers.job import JobDeployer
from fairing.deployers.kserve import InferenceServiceDeployer
from fairing.deployers.serving import ServingDeployer
from fairing.deployers.training import PyTorchJobDeployer, TFJobDeployer
from fairing.deployers.trainjob import TrainJobDeployer
from fairing.kube.kueue import QUEUE_LABEL, QueueState, _state, check_queue_name, queue_of, suspended
from fairing.settings import Settings, resolve

IMAGE = "registry.example.com/team/job:1"


@pytest.mark.parametrize("bad", ["", "Team", "team a", "-team", "team-", "a" * 64, "team/a", "tëam", 7, ["q"],
                                 "q\n", "../q", "a..b", "a.-b", "a-.b", ".a"])
def test_a_bad_queue_name_is_a_configuration_error_naming_it(bad):
    with pytest.raises(ConfigurationError, match="LocalQueue") as err:
        JobDeployer(queue=bad, pull_credentials=False)
    assert repr(bad)[:20] in str(err.value)


def test_good_names_pass():
    for name in ("team-a", "a", "q.1", "a" * 63, "a.b-c.d"):
        assert check_queue_name(name) == name
    assert check_queue_name(None) is None


def test_the_label_is_on_every_batch_workload_and_not_on_its_pods():
    manifests = {
        "Job": JobDeployer(queue="team-a", pull_credentials=False).manifest(IMAGE, "j"),
        "map": JobDeployer(queue="team-a", pull_credentials=False).manifest(IMAGE, "m", count=3, parallelism=2),
        "TFJob": TFJobDeployer({"Chief": 1, "Worker": 2}, queue="team-a", pull_credentials=False).manifest(IMAGE, "t"),
        "PyTorchJob": PyTorchJobDeployer(queue="team-a", pull_credentials=False).manifest(IMAGE, "p"),
        "TrainJob": TrainJobDeployer(queue="team-a", pull_credentials=False).manifest(IMAGE, "tj"),
    }
    for kind, body in manifests.items():
        assert body["metadata"]["labels"][QUEUE_LABEL] == "team-a", kind
        assert "suspend" not in body["spec"], kind  # Kueue's webhook suspends it; without Kueue it would never run
        assert QUEUE_LABEL not in repr(body["spec"]), kind
    assert manifests["map"]["spec"]["completionMode"] == "Indexed"
    plain = JobDeployer(pull_credentials=False).manifest(IMAGE, "j")
    assert QUEUE_LABEL not in plain["metadata"]["labels"]


@pytest.mark.parametrize("factory", [ServingDeployer, InferenceServiceDeployer])
def test_an_endpoint_takes_no_queue(factory):
    with pytest.raises(ConfigurationError, match="endpoint"):
        factory(queue="team-a")


def test_the_setting_fills_job_deployers_only_and_an_argument_wins():
    settings = Settings(queue="from-settings")
    assert with_settings(JobDeployer(pull_credentials=False), settings).queue == "from-settings"
    assert with_settings(JobDeployer(queue="mine", pull_credentials=False), settings).queue == "mine"
    serving = ServingDeployer()
    assert with_settings(serving, Settings(queue="from-settings", insecure_registries=("r:5000",))).queue is None
    assert with_settings(JobDeployer(pull_credentials=False), Settings()).queue is None


def test_fairing_queue_and_the_project_file_are_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.fairing]\nqueue = "team-a"\n')
    assert resolve(environ={"HOME": str(tmp_path)}).queue == "team-a"
    settings = resolve(environ={"HOME": str(tmp_path), "FAIRING_QUEUE": "team-b"})
    assert settings.queue == "team-b" and settings.sources["queue"] == "FAIRING_QUEUE"
    with pytest.raises(ConfigurationError, match="FAIRING_QUEUE"):
        resolve(environ={"HOME": str(tmp_path), "FAIRING_QUEUE": "Team B"})
    (tmp_path / "pyproject.toml").write_text('[tool.fairing]\nqueue = ["team-a"]\n')
    with pytest.raises(ConfigurationError, match="queue"):
        resolve(environ={"HOME": str(tmp_path)})
    (tmp_path / "pyproject.toml").write_text('[tool.fairing]\nqueu = "team-a"\n')
    with pytest.raises(ConfigurationError, match="Did you mean 'queue'"):
        resolve(environ={"HOME": str(tmp_path)})


def test_a_misspelled_option_names_queue():
    with pytest.raises(ConfigurationError, match="Did you mean 'queue'"):
        JobDeployer(queu="team-a")


def test_suspended_and_queue_of_read_each_kind():
    assert suspended({"spec": {"suspend": True}}) and suspended({"spec": {"runPolicy": {"suspend": True}}})
    assert not suspended({"spec": {"runPolicy": {}}}) and not suspended(None)
    assert queue_of({"metadata": {"labels": {QUEUE_LABEL: "q"}}}) == "q" and queue_of({}) is None


def _workload(*conditions):
    return {"status": {"conditions": [dict(zip(("type", "status", "reason", "message"), c)) for c in conditions]}}


def test_workload_conditions_read_as_a_queue_state():
    pending = _state("q", _workload(("QuotaReserved", "False", "Pending",
                                     "couldn't assign flavors to pod set main: insufficient unused quota for cpu")))
    assert not pending.admitted and not pending.missing and pending.reason == "Pending"
    assert pending.describe() == ("queued in the LocalQueue q: couldn't assign flavors to pod set main: "
                                  "insufficient unused quota for cpu")
    missing = _state("q", _workload(("QuotaReserved", "False", "Inadmissible", "LocalQueue q doesn't exist")))
    assert missing.missing
    assert _state("q", _workload(("QuotaReserved", "False", "Inadmissible", "ClusterQueue cq doesn't exist"))).missing
    assert not _state("q", _workload(("QuotaReserved", "False", "Inadmissible", "ClusterQueue cq is stopped"))).missing
    assert _state("q", _workload(("QuotaReserved", "True", "QuotaReserved", ""),
                                 ("Admitted", "True", "Admitted", ""))).admitted
    assert _state("q", None) == QueueState("q", False, "", "waiting for Kueue to see it")
    assert _state("q", {"status": {}}).describe().startswith("queued in the LocalQueue q")


def test_queue_not_found_is_a_configuration_error():
    err = QueueNotFoundError("no queue", queue="q", namespace="ns")
    assert isinstance(err, ConfigurationError) and err.queue == "q" and err.namespace == "ns"


def test_the_command_line_queue_reaches_each_deployer():
    import click

    from fairing.cli import _backend_options

    assert _backend_options("kubernetes", {"queue": "team-a"})["queue"] == "team-a"  # to the backend's JobDeployer
    for deployer in ("tfjob", "pytorchjob", "trainjob"):
        assert _backend_options("kubernetes", {"deployer": deployer, "queue": "team-a"})["deployer"].queue == "team-a"
    with pytest.raises(click.UsageError, match="--queue does not apply to the local backend"):
        _backend_options("local", {"queue": "team-a"})
    with pytest.raises(click.UsageError, match="--queue does not apply to the docker backend"):
        _backend_options("docker", {"queue": "team-a"})


def test_a_bad_queue_on_the_command_line_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    from fairing.cli import _main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.py").write_text("print(1)\n")
    code = _main(["run", "job.py", "--backend", "kubernetes", "--deployer", "tfjob", "--queue", "Team A",
                  "--registry", "r.example:5000", "--base-image", "python:3"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "LocalQueue" in err and "'Team A'" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", [" team", "team ", "team\n", "", "Team"])
def test_a_queue_argument_is_refused_when_given_as_it_is_not_stripped(bad):
    # The argument is used as given: a name with whitespace around it must fail at train(),
    # not pass there (stripped) and fail only later, when the job is made.
    import fairing

    with pytest.raises(ConfigurationError, match="queue= of train") as err:
        fairing.train(backend="kubernetes", queue=bad)
    assert repr(bad) in str(err.value)


def test_a_request_over_the_maximum_capacity_reads_as_too_small_and_a_busy_queue_does_not():
    never = ("couldn't assign flavors to pod set main: insufficient quota for cpu in flavor f, previously considered "
             "podsets requests (0) + current podset request (500m) > maximum capacity (300m)")
    busy = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor f, 100m more needed"
    assert QueueState("q", False, "Pending", never).too_small
    assert not QueueState("q", False, "Pending", busy).too_small
    assert not QueueState("q", True).too_small
    from fairing import QueueTooSmallError

    assert issubclass(QueueTooSmallError, ConfigurationError)
