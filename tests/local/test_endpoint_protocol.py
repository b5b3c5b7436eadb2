"""The Open Inference Protocol as clients use it, against a real local endpoint.

Hostile requests first (raw HTTP: truncated binary bodies, lengths that lie, wrong
datatypes, shapes the data does not fill, unknown tensors, huge declared sizes: each a
400 with an error saying what is wrong, never a 500 or a hang), then NVIDIA's
``tritonclient`` with its defaults (binary tensors) and with JSON, and KServe's v1.
"""

import gzip
import http.client
import json
import pickle
import struct
import urllib.parse

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import fairing
from fairing import PredictionEndpoint


class IrisModel:
    """No tensor declaration: the metadata is recorded from the first request."""

    def load(self):
        with open("model.pkl", "rb") as fh:
            self.model = pickle.load(fh)

    def predict(self, X):
        return self.model.predict(X)


class ScaleModel:
    """Several declared inputs and outputs, BYTES and BOOL among them."""

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]},
              {"name": "factor", "datatype": "INT32", "shape": [-1, 1]},
              {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": "scaled", "datatype": "FP32", "shape": [-1, 2]},
               {"name": "shout", "datatype": "BYTES", "shape": [-1]},
               {"name": "big", "datatype": "BOOL", "shape": [-1]}]

    def predict(self, x, factor, label):
        scaled = [[v * f[0] for v in row] for row, f in zip(x, factor)]
        return {"scaled": scaled, "shout": [s.upper() + "!" for s in label],
                "big": [sum(row) > 10 for row in scaled]}


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("iris") / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    with PredictionEndpoint(IrisModel, input_files={str(path): "model.pkl"}, model_name="iris") as endpoint:
        yield endpoint, model


@pytest.fixture(scope="module")
def scale():
    with PredictionEndpoint(ScaleModel, model_name="scale") as endpoint:
        yield endpoint


def _raw(url, path, body=b"", headers=None, method="POST", content_length=None):
    """(status, JSON body) of a raw request; a hang fails the test through the socket timeout."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=15)
    try:
        conn.putrequest(method, path)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body) if content_length is None else content_length))
        conn.endheaders()
        conn.send(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _binary_request(inputs, binary, **extra):
    header = json.dumps({"inputs": inputs, **extra}).encode()
    return header + binary, {"Inference-Header-Content-Length": str(len(header))}


FOUR = struct.pack("<4d", 5.1, 3.5, 1.4, 0.2)


HOSTILE = [
    ("truncated binary body",
     [{"name": "x", "datatype": "FP64", "shape": [1, 4], "parameters": {"binary_data_size": 32}}], FOUR[:20], None,
     "only 20 bytes of tensor data remain"),
    ("header length larger than the body",
     [{"name": "x", "datatype": "FP64", "shape": [1, 4], "parameters": {"binary_data_size": 32}}], FOUR,
     {"Inference-Header-Content-Length": "99999"}, "says the JSON is 99999 bytes"),
    ("header length not a number", [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}], b"",
     {"Inference-Header-Content-Length": "12abc"}, "must be an integer"),
    ("binary data without the header",
     [{"name": "x", "datatype": "FP64", "shape": [1, 4], "parameters": {"binary_data_size": 32}}], b"",
     {"Inference-Header-Content-Length": None}, "Inference-Header-Content-Length"),
    ("trailing bytes", [{"name": "x", "datatype": "FP64", "shape": [1, 4], "parameters": {"binary_data_size": 32}}],
     FOUR + b"xx", None, "add up to 32"),
    ("unknown datatype", [{"name": "x", "datatype": "FLOAT", "shape": [1, 4], "data": [1, 2, 3, 4]}], b"", None,
     "datatype 'FLOAT' is not one of"),
    ("JSON data of the wrong datatype", [{"name": "x", "datatype": "INT8", "shape": [1, 4], "data": [1, 2, 300, 4]}],
     b"", None, "element 2 (300) is not a INT8 value"),
    ("strings in a float tensor", [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": ["a", None]}], b"",
     None, "is not a FP32 value"),
    ("shape and data disagree", [{"name": "x", "datatype": "FP64", "shape": [2, 4], "data": [1, 2, 3, 4]}], b"",
     None, "holds 8 elements but data has 4"),
    ("binary size not the shape's",
     [{"name": "x", "datatype": "FP64", "shape": [1, 3], "parameters": {"binary_data_size": 32}}], FOUR, None,
     "shape [1, 3] holds 3 FP64 elements (24 bytes) but its binary_data_size is 32"),
    ("negative shape", [{"name": "x", "datatype": "FP64", "shape": [-1, 4], "data": [1, 2, 3, 4]}], b"", None,
     "non-negative integers"),
    ("huge binary_data_size",
     [{"name": "x", "datatype": "FP64", "shape": [1, 4], "parameters": {"binary_data_size": 10 ** 18}}], FOUR, None,
     "binary_data_size is 1000000000000000000 bytes but only 32"),
    ("huge shape", [{"name": "x", "datatype": "FP64", "shape": [10 ** 9, 10 ** 9],
                     "parameters": {"binary_data_size": 32}}], FOUR, None, "has more than 268435456 rows"),
    ("huge BYTES element", [{"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}],
     struct.pack("<I", 2 ** 31) + b"abcd", None, "declares 2147483648 bytes but only 4 remain"),
    ("ragged data", [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2], [3]]}], b"", None, "ragged"),
    ("two tensors of one name", [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}] * 2, b"", None,
     "appears twice"),
    ("data and binary", [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4],
                          "parameters": {"binary_data_size": 32}}], FOUR, None, "both data and a binary_data_size"),
    ("no inputs", [], b"", None, "expected"),
]


@pytest.mark.parametrize("case, inputs, binary, headers, expect", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_malformed_request_is_a_400_saying_what_is_wrong(iris, case, inputs, binary, headers, expect):
    endpoint, _ = iris
    body, binary_headers = _binary_request(inputs, binary)
    headers = {k: v for k, v in {**binary_headers, **(headers or {})}.items() if v is not None}
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", body, headers)
    assert status == 400, (case, answer)
    assert expect in answer["error"], (case, answer)


def test_a_body_that_is_not_json_or_too_big_or_compressed_is_a_400(iris):
    endpoint, _ = iris
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b'{"inputs": [')
    assert status == 400 and "not valid JSON" in answer["error"]
    assert "Inference-Header-Content-Length" in answer["error"]
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b"[" * 100000 + b"]" * 100000)
    assert status == 400 and "not valid JSON" in answer["error"]
    # a Content-Length of a terabyte is refused before the body is read: no hang waiting for it
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b"{}", content_length=10 ** 12)
    assert status == 400 and "over this server's limit" in answer["error"]
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b"\x1f\x8b", {"Content-Encoding": "gzip"})
    assert status == 400 and "truncated" in answer["error"]
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b"not gzip", {"Content-Encoding": "gzip"})
    assert status == 400 and "could not be decompressed" in answer["error"]
    bomb = gzip.compress(b" " * (300 * 2**20), compresslevel=9)  # 300 MiB of spaces in 300 kB
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 400 and "inflates past" in answer["error"]
    status, answer = _raw(endpoint.url, "/v2/models/iris/infer", b"{}", {"Content-Encoding": "br"})
    assert status == 400 and "not supported" in answer["error"]
    status, answer = _raw(endpoint.url, "/v1/models/iris:predict", b"nope")
    assert status == 400 and "instances" in answer["error"]


def test_declared_tensors_are_checked_by_name_datatype_and_shape(scale):
    def infer(inputs, **extra):
        return _raw(scale.url, "/v2/models/scale/infer", json.dumps({"inputs": inputs, **extra}).encode())

    x = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
    factor = {"name": "factor", "datatype": "INT32", "shape": [1, 1], "data": [3]}
    label = {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["a"]}
    status, answer = infer([x, factor, label, {**label, "name": "extra"}])
    assert status == 400 and "unknown input 'extra'; model 'scale' takes 'x', 'factor', 'label'" in answer["error"]
    status, answer = infer([{**x, "datatype": "FP64"}, factor, label])
    assert status == 400 and "input 'x' is FP64; model 'scale' takes FP32" in answer["error"]
    status, answer = infer([{**x, "shape": [2, 1]}, factor, label])
    assert status == 400 and "input 'x' has shape [2, 1]; model 'scale' takes [-1, 2]" in answer["error"]
    status, answer = infer([x, factor])
    assert status == 400 and "missing input(s) 'label'" in answer["error"]
    status, answer = infer([x, factor, label], outputs=[{"name": "nope"}])
    assert status == 400 and "unknown output(s) 'nope'" in answer["error"]
    assert _raw(scale.url, "/v2/models/other/infer", b"{}")[0] == 404
    assert _raw(scale.url, "/v2/models/scale/versions/7", method="GET")[0] == 404
    status, answer = infer([x, factor, label])
    assert status == 200 and answer["outputs"] == [
        {"name": "scaled", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 6.0]},
        {"name": "shout", "datatype": "BYTES", "shape": [1], "data": ["A!"]},
        {"name": "big", "datatype": "BOOL", "shape": [1], "data": [False]}]


def test_a_wrong_tensor_declaration_is_refused_when_the_endpoint_is_made():
    class Bad:
        inputs = [{"name": "x", "datatype": "FLOAT32", "shape": [-1, 4]}]

        def predict(self, x):
            return x

    with pytest.raises(fairing.ConfigurationError, match="datatype 'FLOAT32'; use one of BOOL"):
        PredictionEndpoint(Bad)

    class NoShape:
        outputs = [{"name": "y", "datatype": "FP32"}]

        def predict(self, x):
            return x

    with pytest.raises(fairing.ConfigurationError, match="has shape None"):
        PredictionEndpoint(NoShape)


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "json"])
def test_tritonclient_gets_the_models_predictions(iris, binary):
    endpoint, model = iris
    client = triton.InferenceServerClient(endpoint.url.split("//", 1)[1], connection_timeout=10, network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
        server = client.get_server_metadata()
        assert server["name"] == "fairing" and "binary_tensor_data" in server["extensions"]
        x = triton.InferInput("X", list(ROWS.shape), "FP64")
        x.set_data_from_numpy(ROWS, binary_data=binary)
        outputs = None if binary else [triton.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer("iris", [x], outputs=outputs, request_id="r1",
                              request_compression_algorithm="gzip" if binary else None)
        assert result.get_response()["id"] == "r1"
        assert (result.get_response()["outputs"][0].get("parameters", {}).get("binary_data_size") is not None) == binary
        assert result.as_numpy("predict").tolist() == model.predict(ROWS).tolist()
        metadata = client.get_model_metadata("iris")
        assert metadata["inputs"] == [{"name": "X", "datatype": "FP64", "shape": [-1, 4]}]
        assert metadata["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
        bad = triton.InferInput("X", [2, 4], "FP64")
        bad.set_data_from_numpy(ROWS[:2], binary_data=binary)
        bad.set_shape([3, 4])  # the data no longer fills the shape
        with pytest.raises(InferenceServerException, match=r"\[3, 4\] holds 12 .*(64|8)"):
            client.infer("iris", [bad])
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "json"])
def test_tritonclient_sends_several_tensors_and_reads_several(scale, binary):
    client = triton.InferenceServerClient(scale.url.split("//", 1)[1], connection_timeout=10, network_timeout=30)
    try:
        metadata = client.get_model_metadata("scale", model_version="1")
        assert [t["name"] for t in metadata["inputs"]] == ["x", "factor", "label"]
        assert metadata["outputs"][1] == {"name": "shout", "datatype": "BYTES", "shape": [-1]}
        tensors = {"x": np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32),
                   "factor": np.array([[2], [3]], dtype=np.int32),
                   "label": np.array(["ab", "héllo"], dtype=np.object_)}
        inputs = []
        for name, value in tensors.items():
            tensor = triton.InferInput(name, list(value.shape), {"x": "FP32", "factor": "INT32"}.get(name, "BYTES"))
            tensor.set_data_from_numpy(value, binary_data=binary)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("scaled", "shout")]
        result = client.infer("scale", inputs, outputs=outputs)
        assert result.as_numpy("scaled").dtype == np.float32
        assert result.as_numpy("scaled").tolist() == [[3.0, 4.0], [9.0, 12.0]]
        shout = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("shout").tolist()]
        assert shout == ["AB!", "HÉLLO!"]
        assert result.as_numpy("big") is None  # not asked for
    finally:
        client.close()


def test_v1_instances_and_model_list(iris):
    endpoint, model = iris
    rows = ROWS.tolist()
    status, answer = _raw(endpoint.url, "/v1/models/iris:predict", json.dumps({"instances": rows}).encode())
    assert status == 200 and answer == {"predictions": model.predict(ROWS).tolist()}
    assert endpoint.predict(rows) == model.predict(ROWS).tolist()
    assert _raw(endpoint.url, "/v1/models", method="GET") == (200, {"models": ["iris"]})


class FileScaleModel:
    def load(self):
        with open("model.json") as fh:  # from the model directory, linked into the working directory
            self.w = json.load(fh)["w"]

    def predict(self, X):
        return [self.w * x for x in X]


def test_the_model_directory_is_linked_into_the_working_directory(tmp_path):
    # on KServe the directory is /mnt/models (a modelcar's files); here FAIRING_MODEL_DIR names one
    (tmp_path / "model.json").write_text('{"w": 3}')
    with PredictionEndpoint(FileScaleModel, env={"FAIRING_MODEL_DIR": str(tmp_path)}) as endpoint:
        assert endpoint.predict([1, 2]) == [3, 6]


def test_a_body_that_never_arrives_is_a_400_not_a_hang(tmp_path):
    (tmp_path / "model.json").write_text('{"w": 1}')
    with PredictionEndpoint(FileScaleModel, env={"FAIRING_SERVING_BODY_TIMEOUT": "1",
                                                 "FAIRING_MODEL_DIR": str(tmp_path)}) as endpoint:
        # 10 bytes of the 1000 announced, and the connection kept open
        status, answer = _raw(endpoint.url, "/v2/models/filescalemodel/infer", b'{"inputs":', content_length=1000)
        assert status == 400 and "did not arrive within 1 s (Content-Length 1000, 10 bytes received)" in \
            answer["error"]


def test_a_wrong_body_timeout_stops_the_server_with_its_reason():
    with pytest.raises(fairing.JobFailedError, match="FAIRING_SERVING_BODY_TIMEOUT must be a number"):
        PredictionEndpoint(FileScaleModel, env={"FAIRING_SERVING_BODY_TIMEOUT": "soon"}).create(timeout=60)
