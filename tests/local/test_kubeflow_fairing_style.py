"""Kubeflow Fairing 1.0.2-style code on the local backend: a TrainJob of a class with
train() (its positional arguments, output_map, requirements.txt among the input files)
and a PredictionEndpoint answering predict_nparray, as scripts run with python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("no_leftovers")
ROOT = Path(__file__).resolve().parents[2]

HOUSING = '''
import json

class HousingServe(object):
    def __init__(self):
        self.model_file = "trained_ames_model.dat"
        self.model = None

    def train(self):
        import six
        rows = [line.split(",") for line in open("ames_dataset/train.csv").read().splitlines()[1:]]
        coef = sum(float(r[1]) for r in rows) / len(rows) / 100000
        print("six", six.__version__, "coef", coef, flush=True)
        json.dump({"coef": coef}, open(self.model_file, "w"))

    def predict(self, X, feature_names=None):
        if not self.model:
            self.model = json.load(open(self.model_file))
        return [[self.model["coef"] * v for v in row] for row in X]
'''


def _run(project: Path, body: str, xdg: Path) -> subprocess.CompletedProcess:
    (project / "main.py").write_text(HOUSING + textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRING_")}
    env.update(XDG_CONFIG_HOME=str(xdg), PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    proc = subprocess.run([sys.executable, "-W", "always::FutureWarning", "main.py"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def project(workdir):
    (workdir / "ames_dataset").mkdir()
    (workdir / "ames_dataset" / "train.csv").write_text("Id,SalePrice\n1,200000\n2,100000\n")
    (workdir / "requirements.txt").write_text("six==1.16.0\n")
    return workdir


def test_trainjob_of_a_class_with_train_submits_and_waits(project, tmp_path):
    proc = _run(project, """
        from kubeflow.fairing import TrainJob
        # Kubeflow Fairing's positional order: entry_point, base_docker_image, docker_registry, input_files
        train_job = TrainJob(HousingServe, None, None, ["ames_dataset/train.csv", "requirements.txt"],
                             output_map={"ames_dataset/train.csv": "/app/ames_dataset/train.csv"}, backend="local")
        train_job.submit()
        print("finished")
    """, tmp_path / "xdg")
    assert proc.stdout.splitlines() == ["six 1.16.0 coef 1.5", "finished"]
    assert "arguments after the first are keyword-only now" in proc.stderr
    assert "requirements.txt among input_files is installed, as Kubeflow Fairing did" in proc.stderr


def test_prediction_endpoint_answers_predict_nparray(project, tmp_path):
    proc = _run(project, """
        import json
        import numpy as np
        from kubeflow.fairing import PredictionEndpoint

        HousingServe().train()
        endpoint = PredictionEndpoint(HousingServe, input_files=["trained_ames_model.dat"], service_type="ClusterIP",
                                      backend="local")
        endpoint.create()
        try:
            print(json.dumps(endpoint.predict_nparray(np.array([[1.0, 2.0]]), feature_names=["a", "b"])))
        finally:
            endpoint.delete()
    """, tmp_path / "xdg")
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "data": {"names": ["a", "b"], "tensor": {"shape": [1, 2], "values": [1.5, 3.0]}}}
    assert "service_type= is Kubeflow Fairing's option and has no effect here" in proc.stderr
