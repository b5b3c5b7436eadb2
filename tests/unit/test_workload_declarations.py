"""Each cluster handle declares what it is; job records, listing and attaching read those
declarations (fairing._names.WORKLOAD_HANDLES), and a workload's outcome is read from its
conditions in one place (fairing.kube.workloads) for every kind."""

import pytest

from fairing import ConfigurationError
from fairing.jobs.listing import workload_handles
from fairing.kube.workloads import WorkloadKind, condition_phase, listed_phase


def test_every_recorded_kind_names_a_handle_that_declares_it():
    handles = workload_handles()
    assert set(handles) == {"Job", "TFJob", "PyTorchJob", "TrainJob", "Endpoint", "InferenceService", "Experiment"}
    for kind, handle_class in handles.items():
        workload = handle_class.WORKLOAD
        assert isinstance(workload, WorkloadKind) and workload.record_kind == kind
        assert workload.api_version and workload.plural and callable(handle_class.attach)
    assert handles["InferenceService"].WORKLOAD.endpoint and handles["Endpoint"].WORKLOAD.endpoint
    assert handles["InferenceService"].service_for("iris") == ("iris-predictor", 80)  # KServe's Service
    assert handles["Endpoint"].service_for("iris") == ("iris", 8080)


@pytest.mark.parametrize("kind", ["Job", "TFJob", "PyTorchJob", "TrainJob", "Experiment"])
@pytest.mark.parametrize("condition, phase", [("SuccessCriteriaMet", "Succeeded"), ("Complete", "Succeeded"),
                                              ("Succeeded", "Succeeded"), ("FailureTarget", "Failed"),
                                              ("Failed", "Failed")])
def test_every_kind_reads_its_outcome_from_the_same_conditions(kind, condition, phase):
    obj = {"status": {"conditions": [{"type": condition, "status": "True"}]}}
    assert condition_phase(obj) == phase
    assert listed_phase(workload_handles()[kind].WORKLOAD, obj)[0] == phase


def test_endpoints_are_known_by_their_declaration():
    from fairing.jobs import JobInfo

    kinds = {kind: JobInfo("x", "kubernetes", kind, "Running", 0.0).is_endpoint
             for kind in ("Endpoint", "InferenceService", "Job", "TrainJob", "local")}
    assert kinds == {"Endpoint": True, "InferenceService": True, "Job": False, "TrainJob": False, "local": False}


def test_an_inference_service_is_running_once_ready():
    workload = workload_handles()["InferenceService"].WORKLOAD
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert listed_phase(workload, ready) == ("Running", None)
    assert listed_phase(workload, {"status": {}}) == ("Pending", None)


def test_a_kserve_endpoint_is_recorded_as_an_inference_service(tmp_path, monkeypatch):
    # the record a later process attaches by: its kind says where to look (not a Deployment)
    import kubernetes
    from fairing.deployers.kserve import InferenceServiceHandle
    from fairing.jobs import JobOrigin, forget, remember
    from fairing.jobs.records import check_record, read_record
    from fairing.kube import KubeClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = kubernetes.client.Configuration()
    config.host = "https://cluster.invalid"
    kube = KubeClient(api_client=kubernetes.client.ApiClient(config), namespace="team")
    handle = InferenceServiceHandle(kube, "iris-isvc", "team", on_event=None, replicas=1)
    remember(handle, JobOrigin("0", "me", "serve", "model:Iris"), backend="kubernetes", endpoint=True)
    record = read_record("iris-isvc")
    assert record["kubernetes"]["kind"] == "InferenceService" and record["kubernetes"]["plural"] == "inferenceservices"
    assert check_record("iris-isvc", record) == ""
    forget("iris-isvc")
    with pytest.raises(ConfigurationError):
        forget("../etc")
