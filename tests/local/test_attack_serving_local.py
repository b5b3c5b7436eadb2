"""Hostile HTTP against the serving runtime (issue 29), on a real uvicorn server on 127.0.0.1.

The server is ``fairing.runtime.serving.build_app`` with a probe model, run by uvicorn in a
subprocess (so its RSS can be measured and a hang is a timeout, not a stuck test).
"""

import gzip
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

import fairing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fairing.__file__)))

SERVER = textwrap.dedent('''
    import math, sys
    import uvicorn
    from fairing.runtime.serving import build_app

    class Probe:
        def predict(self, X):
            cmd = X[0] if isinstance(X, list) and X and isinstance(X[0], str) else None
            if cmd == "nan":
                return [math.nan, math.inf]
            if cmd == "deep":
                v = [1]
                for _ in range(5000):
                    v = [v]
                return v
            if cmd == "object":
                return [object()]
            if cmd == "raise":
                raise RuntimeError("boom")
            if cmd == "set":
                return {1, 2}
            return X

    port, timeout = int(sys.argv[1]), float(sys.argv[2])
    uvicorn.run(build_app(Probe(), "m", "t", timeout), host="127.0.0.1", port=port, log_level="warning")
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    script = tmp / "server.py"
    script.write_text(SERVER)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(tmp / "cache")}
    proc = subprocess.Popen([sys.executable, str(script), str(port), "2"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr", "wb"))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp / "stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    yield {"port": port, "pid": proc.pid, "stderr": tmp / "stderr"}
    proc.terminate()
    proc.wait(10)


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024


def _post(server, path, body, headers=None, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=timeout)
    conn.request("POST", path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _infer(server, body, headers=None, timeout=20):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return _post(server, "/v2/models/m/infer", body, headers, timeout)


def _json_error(status, headers, data, expected=400):
    assert status == expected, (status, data[:300])
    assert headers.get("content-type", "").startswith("application/json"), (headers, data[:300])
    msg = json.loads(data)["error"]
    assert "Traceback" not in msg
    return msg


def _binary(json_obj, raw):
    head = json.dumps(json_obj).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize("value", ["-1", "99999999999", "abc", "1.5", "", "9" * 5000])
def test_bad_header_length(server, value):
    body, _ = _binary({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1],
                                   "parameters": {"binary_data_size": 1}}]}, b"\x01")
    _json_error(*_infer(server, body, {"Inference-Header-Content-Length": value}))


def test_header_length_mid_utf8(server):
    head = json.dumps({"id": "\u00e9\u00e9", "inputs": [{"name": "x", "datatype": "INT8", "shape": [1],
                                                         "data": [1]}]}, ensure_ascii=False).encode()
    cut = head.index("\u00e9".encode()) + 1
    _json_error(*_infer(server, head, {"Inference-Header-Content-Length": str(cut)}))


def test_json_oddities(server):
    # duplicate keys: the last wins (as Python's json); NaN/Infinity in an FP input echo
    status, _, data = _infer(server, b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], '
                                     b'"data": [2]}]}')
    assert status == 200 and json.loads(data)["outputs"][0]["data"] == [2]
    status, _, data = _infer(server, b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], '
                                     b'"data": [1e400]}]}')
    _json_error(status, _, data)
    deep = b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": ' + b"[" * 100000 + b"]" * 100000 + b"}]}"
    _json_error(*_infer(server, deep))
    deep = b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}]}"
    _json_error(*_infer(server, deep))


@pytest.mark.parametrize("shape", [[-1], [2 ** 63], [2 ** 64, 2 ** 64], [1.0], [True], "3", [[1]], None])
def test_bad_shapes(server, shape):
    _json_error(*_infer(server, {"inputs": [{"name": "x", "datatype": "INT8", "shape": shape, "data": [1]}]}))


def test_zero_size_shape_with_huge_rows_is_refused_quickly(server):
    """shape [2**62, 0] holds no elements; building 2**62 empty rows for predict must not happen."""
    t0 = time.monotonic()
    for shape in ([2 ** 62, 0], [10 ** 9, 0], [0, 2 ** 62]):
        status, headers, data = _infer(server, {"inputs": [{"name": "x", "datatype": "INT8", "shape": shape,
                                                             "data": []}]}, timeout=15)
        if shape[0] == 0:
            assert status == 200, data
        else:
            _json_error(status, headers, data)
    assert time.monotonic() - t0 < 10
    assert _rss_mb(server["pid"]) < 1000


def test_many_dims_shape_product_is_cheap(server):
    """A shape of thousands of huge dims: its element count must not be a multi-megabyte integer product."""
    shape = [2 ** 63 - 1] * 20000
    t0 = time.monotonic()
    _json_error(*_infer(server, {"inputs": [{"name": "x", "datatype": "INT8", "shape": shape, "data": [1]}]},
                        timeout=30))
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("size", [1.0, True, "1", -1, None, [1], 2 ** 70])
def test_bad_binary_data_size(server, size):
    params = {"binary_data_size": size} if size is not None else {"binary_data_size": None, "x": 1}
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": params}]},
                            b"\x01")
    _json_error(*_infer(server, body, headers))


def test_bytes_prefix_beyond_body(server):
    raw = struct_pack_bytes(b"ab")[:4] + b"\xff\xff\xff\x7f" + b"x"
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2],
                                         "parameters": {"binary_data_size": len(raw) - 4}}]}, raw[:-4])
    _json_error(*_infer(server, body, headers))
    raw = b"\xff\xff\xff\xff" + b"abc"
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1],
                                         "parameters": {"binary_data_size": len(raw)}}]}, raw)
    _json_error(*_infer(server, body, headers))


def struct_pack_bytes(b):
    import struct
    return struct.pack("<I", len(b)) + b


def test_fp16_bf16_specials_and_bool_bytes(server):
    import struct
    raw = struct.pack("<3e", float("inf"), float("-inf"), float("nan"))
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "FP16", "shape": [3],
                                         "parameters": {"binary_data_size": len(raw)}}],
                             "parameters": {"binary_data_output": True}}, raw)
    status, h, data = _infer(server, body, headers)
    assert status == 200, data
    n = int(h["inference-header-content-length"])
    out = struct.unpack("<3d", data[n:])  # undeclared: the output's datatype is read from Python floats
    assert out[0] == float("inf") and out[1] == float("-inf") and out[2] != out[2]
    raw = b"\x00\x7f\x80\xff\xc0\x7f"  # BF16: 0x7f00?, -0?, NaN
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "BF16", "shape": [3],
                                         "parameters": {"binary_data_size": 6}}],
                             "parameters": {"binary_data_output": True}}, raw)
    status, h, data = _infer(server, body, headers)
    assert status == 200, data
    raw = b"\x00\x01\x02\xff"
    body, headers = _binary({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [4],
                                         "parameters": {"binary_data_size": 4}}]}, raw)
    status, h, data = _infer(server, body, headers)
    assert status == 200 and json.loads(data)["outputs"][0]["data"] == [False, True, True, True], data


def test_gzip_bomb_is_bounded(server):
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (64 << 20)
    bomb = b"".join([comp.compress(zeros) for _ in range(16)] + [comp.flush()])  # 1 GiB inflated
    assert len(bomb) < 2 << 20
    before = _rss_mb(server["pid"])
    msg = _json_error(*_infer(server, bomb, {"Content-Encoding": "gzip"}, timeout=60))  # 400 with the limit named (413 would be HTTP's own)
    assert "limit" in msg
    assert _rss_mb(server["pid"]) - before < 700


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "compress", "x" * 1000])
def test_unsupported_encodings(server, encoding):
    body = gzip.compress(gzip.compress(b'{"inputs": []}'))
    _json_error(*_infer(server, body, {"Content-Encoding": encoding}))  # 400 (415 would be HTTP's own)


def test_truncated_and_garbage_gzip(server):
    body = gzip.compress(b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}')
    _json_error(*_infer(server, body[:-5], {"Content-Encoding": "gzip"}))
    _json_error(*_infer(server, b"not gzip", {"Content-Encoding": "gzip"}))
    _json_error(*_infer(server, body + b"trailing", {"Content-Encoding": "gzip"}))


def test_content_length_over_limit_is_413(server):
    s = socket.create_connection(("127.0.0.1", server["port"]), 10)
    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
    s.settimeout(10)
    data = s.recv(65536)
    while b"}" not in data:  # the body may come in a packet of its own
        more = s.recv(65536)
        if not more:
            break
        data += more
    s.close()
    assert data.startswith(b"HTTP/1.1 400") and b"limit" in data, data[:300]


def test_chunked_without_length(server):
    s = socket.create_connection(("127.0.0.1", server["port"]), 10)
    body = b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [7]}]}'
    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    s.settimeout(10)
    data = s.recv(65536)
    while b"[7]" not in data and b"error" not in data:
        data += s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and b"[7]" in data, data[:300]


def test_slowloris_body_is_cut(server):
    s = socket.create_connection(("127.0.0.1", server["port"]), 10)
    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    t0 = time.monotonic()
    s.settimeout(1)
    data = b""
    while time.monotonic() - t0 < 15 and b"\r\n\r\n" not in data:
        try:
            s.sendall(b" ")
        except OSError:
            break
        try:
            data += s.recv(65536)
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1)) if b"content-length" in head.lower() else 0
    s.settimeout(5)
    while len(body) < length:  # the body may come in a packet of its own
        more = s.recv(65536)
        if not more:
            break
        body += more
    data = head + b"\r\n\r\n" + body
    s.close()
    assert data.startswith(b"HTTP/1.1 400") and b"did not arrive" in data, data[:300]
    assert time.monotonic() - t0 < 8


def test_concurrent_requests(server):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        return _infer(server, {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [i]}]})

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(200)))
    assert all(s == 200 and json.loads(d)["outputs"][0]["data"] == [i] for i, (s, _, d) in enumerate(results))


@pytest.mark.parametrize("cmd", ["raise", "object", "deep", "set"])
def test_bad_predict_v2(server, cmd):
    msg = _json_error(*_infer(server, {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1],
                                                    "data": [cmd]}]}), expected=500)
    assert msg


@pytest.mark.parametrize("cmd", ["raise", "object", "deep", "nan"])
def test_bad_predict_v1(server, cmd):
    status, headers, data = _post(server, "/v1/models/m:predict", json.dumps({"instances": [cmd]}).encode())
    if cmd == "nan":
        assert status == 200, data
        assert json.loads(data)["predictions"][0] != json.loads(data)["predictions"][0]
    else:
        _json_error(status, headers, data, expected=500)


def test_nan_output_v2(server):
    status, _, data = _infer(server, {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["nan"]}]})
    assert status == 200, data


@pytest.mark.parametrize("body", [{"instances": {"a": 1}}, {"instances": "x"}, [1], {"inputs": 3}, "null"])
def test_v1_instances_not_list(server, body):
    _json_error(*_post(server, "/v1/models/m:predict", json.dumps(body).encode()))


@pytest.mark.parametrize("name", ["a%2Fb", "%C3%A9", "m%00", "..%2Fm"])
def test_odd_model_names(server, name):
    status, headers, data = _infer_path(server, f"/v2/models/{name}/infer")
    assert status == 404 and b"Traceback" not in data, data  # %2F is decoded before routing: Starlette's 404


def _infer_path(server, path):
    return _post(server, path, b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}')
