"""What a job carries: its origin, read from the build context, as labels and annotations."""

from fairing import __version__
from fairing.context import BuildContext
from fairing.deployers.job import JobDeployer
from fairing.deployers.training import PyTorchJobDeployer
from fairing.jobs import JobOrigin, origin_of, stamped
from fairing.kube.labels import PAYLOAD_LABEL, SOURCE_ANNOTATION, USER_LABEL, VERSION_LABEL
from fairing.preprocessors.python import PythonPreprocessor


def test_origin_comes_from_the_payload_and_the_preprocessor(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    pre = PythonPreprocessor(tmp_path / "train.py")
    origin = origin_of(pre.context(), pre)
    assert origin.payload == "script" and origin.source == str(tmp_path / "train.py")
    assert origin.version == __version__ and origin.user
    assert origin_of(BuildContext(files={}, entrypoint=("true",))).payload == "unknown"


def test_labels_are_valid_label_values_and_the_source_is_an_annotation():
    origin = JobOrigin("0.1.0+dev", "Jane Doe@corp", "function", "/home/jane/my notebooks/train.ipynb")
    labels = origin.labels()
    assert labels == {VERSION_LABEL: "0.1.0-dev", USER_LABEL: "Jane-Doe-corp", PAYLOAD_LABEL: "function"}
    assert origin.annotations() == {SOURCE_ANNOTATION: "/home/jane/my notebooks/train.ipynb"}
    assert JobOrigin("1", "x" * 100, "script", "").labels()[USER_LABEL] == "x" * 63


def test_stamped_deployers_put_the_origin_on_the_workload_and_its_pods():
    origin = JobOrigin("0.1.0", "jane", "script", "train.py")
    deployer = JobDeployer(labels={"team": "vision"}, pull_credentials=False, kube=object())
    job = stamped(deployer, origin).manifest("registry.example/x@sha256:" + "0" * 64, "fairing-1")
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"][USER_LABEL] == "jane" and meta["labels"]["team"] == "vision"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "fairing"
    assert job["metadata"]["annotations"][SOURCE_ANNOTATION] == "train.py"
    assert deployer.labels == {"team": "vision"}  # the deployer given is not changed
    torch = stamped(PyTorchJobDeployer({"Master": 1, "Worker": 2}, pull_credentials=False, kube=object()), origin)
    spec = torch.manifest("r.example/x@sha256:" + "1" * 64, "fairing-2")["spec"]["pytorchReplicaSpecs"]
    assert {s["template"]["metadata"]["labels"][PAYLOAD_LABEL] for s in spec.values()} == {"script"}
