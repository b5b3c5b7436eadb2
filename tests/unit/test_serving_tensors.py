"""The serving runtime's tensor codec against numpy's own bytes (what tritonclient sends)."""

import json
import struct

import numpy as np
import pytest

from fairing.runtime.tensors import DATATYPES, ProtocolError, decode_request, encode_response

NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
         "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
         "FP32": np.float32, "FP64": np.float64}


def _binary(name, datatype, array, raw):
    header = json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": list(array.shape),
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, str(len(header))


@pytest.mark.parametrize("datatype", sorted(NUMPY))
def test_numeric_tensors_decode_from_and_encode_to_numpys_bytes(datatype):
    array = np.array([[0, 1, 2], [3, 4, 5]]).astype(NUMPY[datatype])
    body, length = _binary("x", datatype, array, array.tobytes())
    _, [(name, dt, shape, flat)] = decode_request(body, length)
    assert (name, dt, shape) == ("x", datatype, [2, 3]) and flat == array.flatten().tolist()
    content, headers = encode_response({}, [("y", datatype, shape, flat)], {"y": True}, False)
    header_length = int(headers["inference-header-content-length"])
    assert content[header_length:] == array.tobytes()
    assert json.loads(content[:header_length])["outputs"][0]["parameters"] == {"binary_data_size": array.nbytes}


def test_bytes_and_bf16():
    values = [b"ab", "h\u00e9llo".encode(), b"\xff\xfe"]
    raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
    body, length = _binary("s", "BYTES", np.array(values, dtype=object), raw)
    _, [(_, _, _, flat)] = decode_request(body, length)
    assert flat == ["ab", "h\u00e9llo", b"\xff\xfe"]  # str when UTF-8, else bytes
    content, headers = encode_response({}, [("s", "BYTES", [3], flat)], None, True)
    assert content[int(headers["inference-header-content-length"]):] == raw
    bf16 = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    raw = (bf16.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    body, length = _binary("b", "BF16", bf16, raw)
    assert decode_request(body, length)[1][0][3] == [1.0, -2.5, 3.140625]
    content, headers = encode_response({}, [("b", "BF16", [3], [1.0, -2.5, 3.140625])], None, True)
    assert content[int(headers["inference-header-content-length"]):] == raw


def test_json_outputs_and_what_json_cannot_carry():
    content, headers = encode_response({"id": "1"}, [("y", "FP32", [2], [0.5, 1.0])], None, False)
    assert headers == {"content-type": "application/json"}
    assert json.loads(content)["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2], "data": [0.5, 1.0]}]
    with pytest.raises(ValueError, match="not UTF-8"):
        encode_response({}, [("s", "BYTES", [1], [b"\xff"])], None, False)
    with pytest.raises(ProtocolError, match="unknown output"):
        encode_response({}, [("y", "FP32", [1], [1.0])], {"z": False}, False)
    assert set(DATATYPES) == set(NUMPY) | {"BF16", "BYTES"}
