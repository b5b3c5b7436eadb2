"""How `fairing list` and `delete --all-finished` read a workload's phase from what the API
server reports (the conditions as Kubernetes 1.34 sets them)."""

import pytest

from fairing.jobs import _workload_phase


def _cond(kind, status="True"):
    return {"type": kind, "status": status}


@pytest.mark.parametrize("conditions, expected", [
    # a Job is failing as soon as FailureTarget is set; Failed follows once its pods are cleaned up
    ([_cond("FailureTarget")], ("Failed", None)),
    ([_cond("FailureTarget"), _cond("Failed")], ("Failed", None)),
    ([_cond("SuccessCriteriaMet")], ("Succeeded", 0)),
    ([_cond("SuccessCriteriaMet"), _cond("Complete")], ("Succeeded", 0)),
    ([_cond("FailureTarget", "False")], ("Pending", None)),
])
def test_a_jobs_outcome_counts_from_its_first_terminal_condition(conditions, expected):
    assert _workload_phase("Job", {"status": {"conditions": conditions}}) == expected


def test_a_trainjob_with_active_jobs_is_running():
    status = {"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0}]}
    assert _workload_phase("TrainJob", {"status": status}) == ("Running", None)
    assert _workload_phase("TrainJob", {"status": {"conditions": [_cond("Complete")]}}) == ("Succeeded", 0)
