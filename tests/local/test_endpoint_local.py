"""PredictionEndpoint on the local backend: a real server process, real HTTP."""

import pickle

import pytest

import fairing
from fairing import JobFailedError, PredictionEndpoint, PredictionError
from fairing.deployers.serving import _http

pytestmark = pytest.mark.usefixtures("no_leftovers")


class IrisModel:
    def load(self):
        with open("model.pkl", "rb") as fh:
            self.model = pickle.load(fh)

    def predict(self, X):
        return self.model.predict(X)


class BrokenModel:
    def load(self):
        raise FileNotFoundError("model.pkl is not in the image")

    def predict(self, X):
        return X


def test_train_then_serve_then_predict(workdir):
    @fairing.train(timeout=300)
    def train():
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        X, y = load_iris(return_X_y=True)
        return pickle.dumps(LogisticRegression(max_iter=500).fit(X, y))

    blob = train()
    (workdir / "model.pkl").write_bytes(blob)
    local_model = pickle.loads(blob)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    with PredictionEndpoint(IrisModel, input_files=["model.pkl"], model_name="iris") as endpoint:
        assert endpoint.predict(rows) == local_model.predict(rows).tolist()
        status, body = _http(endpoint.url + "/v2/models/iris/infer", "POST",
                             {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64",
                                          "data": [v for r in rows for v in r]}]}, 10)
        assert status == 200 and body["outputs"][0]["data"] == local_model.predict(rows).tolist()
        assert _http(endpoint.url + "/v1/models/iris", "GET", None, 5) == (200, {"name": "iris", "ready": True})
        with pytest.raises(PredictionError, match="HTTP 500"):
            endpoint.predict([[1.0]])  # wrong number of features
        url = endpoint.url
    with pytest.raises(OSError):
        _http(url + "/v2/health/live", "GET", None, 2)  # the server is gone


def test_a_failing_load_is_a_clear_error_with_its_log(workdir):
    endpoint = PredictionEndpoint(BrokenModel)
    with pytest.raises(JobFailedError) as err:
        endpoint.create(timeout=60)
    assert "load()" in str(err.value) and "model.pkl is not in the image" in str(err.value)
    assert endpoint.handle is None


def test_a_class_without_predict_is_refused():
    with pytest.raises(fairing.ConfigurationError, match="predict"):
        PredictionEndpoint(dict)
