"""The serving runtime: a model class behind the KServe v1 and Open Inference (v2) REST protocols.

Runs inside the image (payload kind "serve") on Starlette + uvicorn, which the
endpoint's build context lists as requirements. The model class has ``predict(X)``
and may have ``load()``, called once before the server reports ready; if ``load()``
raises, the process exits non-zero with the traceback on stderr, so the deployer can
name the cause.

Why not KServe's own model server (the ``kserve`` package's ``ModelServer``)? It would
speak the same protocols, but it does not fit the serving image's budget: ``kserve``
0.15.2 brings 59 wheels (59 MB to download, 256 MB installed, measured on Python 3.11
x86_64) - pandas, numpy, grpcio, protobuf, the Kubernetes client, pydantic, uvloop - into
an image that is otherwise a minimal Debian Python, fairing's code layer and the model's
own requirements (Starlette and uvicorn with their dependencies: about 2 MB). It also pins ``protobuf<5``,
``httpx<0.28`` and ``prometheus-client<0.21``, which a model's own requirements then may not
go past. So the protocol is written here (the tensors in :mod:`tensors`), with the standard library (``struct`` packs the
binary tensors, no numpy), covering what clients send: KServe's v1 JSON, and the Open
Inference Protocol as NVIDIA's ``tritonclient`` speaks it by default (binary tensors), or
in JSON. KServe's controller serves these routes as any custom predictor
(tests/e2e/test_kserve_controller.py).

Routes (``{name}`` is the model's name, by default the class's name lowercased, as KServe's
examples and its InferenceService names are; the class's own name, ``ChurnModel``, is
answered too, since neither protocol restricts a model name's case; ``/versions/1`` may
follow it in the v2 routes)::

    GET  /v1/models                        {"models": [name]}
    GET  /v1/models/{name}                 {"name": ..., "ready": true}
    POST /v1/models/{name}:predict         {"instances": [...]} -> {"predictions": [...]}
    GET  /v2                               {"name": "fairing", "version": ..., "extensions": ["binary_tensor_data"]}
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}                 {"name", "versions", "platform", "inputs": [...], "outputs": [...]}
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}/infer           {"inputs": [{"name", "shape", "datatype", "data"}], "outputs": [...]}

Tensors (v2). The model class may declare its tensors as class attributes::

    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]     # -1: any size
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

Declared tensors are the model's metadata and requests are checked against them (name,
datatype, shape); without them the metadata is recorded from the first successful
request. ``predict`` gets one input tensor as its argument, several as keyword
arguments named after the tensors; a tensor reaches it as nested lists in its shape
(``BYTES`` elements as ``str`` when they are UTF-8, else ``bytes``). It returns one
tensor (a list, an array, a scalar), or a dict of named tensors; an output's datatype is
the declared one, else the array's dtype, else read from the Python values.

The binary tensor data extension: a request whose JSON is followed by raw tensor bytes
carries the JSON's length in the ``Inference-Header-Content-Length`` header and each
such input has ``"parameters": {"binary_data_size": n}`` instead of ``data``. Elements are
little-endian; ``BYTES`` elements each a 4-byte little-endian length then the bytes.
Outputs are sent the same way when the request asks (``"parameters": {"binary_data_output":
true}``, or ``{"binary_data": true}`` on a requested output). Anything malformed - a
truncated body, sizes that do not add up, an unknown datatype or tensor name, data that
does not fill the shape - is a 400 with ``{"error": ...}`` saying what is wrong, checked
against the body's real length before anything is allocated; a body over ``MAX_BODY``
bytes is refused before it is read (or once inflated: a gzip or deflate body, as
``tritonclient`` sends with ``request_compression_algorithm``, is inflated up to that limit).
"""

import inspect
import json
import os
import struct
import sys
import traceback

from .tensors import (BODY_TIMEOUT, HEADER_LENGTH, MAX_BODY, ProtocolError, _matches, _output_tensor, _plain,
                      _requested_outputs, _reshape, decode_request, encode_response, model_tensors)

# -- the app -----------------------------------------------------------------------------------------------------

def _call_shape(predict):
    """(parameter names, takes **kwargs) of ``predict``."""
    try:
        params = inspect.signature(predict).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    return ({p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)},
            any(p.kind == p.VAR_KEYWORD for p in params))


class _Model:
    """The model with its tensors: declared, or recorded from the first request that succeeds."""

    def __init__(self, model, name):
        self.model, self.name = model, name
        self.declared_inputs, self.declared_outputs = model_tensors(type(model))
        self.inputs, self.outputs = self.declared_inputs, self.declared_outputs
        self.params, self.var_kw = _call_shape(model.predict)

    def metadata(self):
        return {"name": self.name, "versions": ["1"], "platform": "fairing", "inputs": self.inputs or [],
                "outputs": self.outputs or []}

    def arguments(self, tensors):
        """predict's (args, kwargs) for the decoded input tensors."""
        if self.declared_inputs is not None:
            declared = {t["name"]: t for t in self.declared_inputs}
            for name, datatype, shape, _ in tensors:
                spec = declared.get(name)
                if spec is None:
                    raise ProtocolError(f"unknown input {name!r}; model {self.name!r} takes "
                                        f"{', '.join(repr(n) for n in declared)}")
                if datatype != spec["datatype"]:
                    raise ProtocolError(f"input {name!r} is {datatype}; model {self.name!r} takes {spec['datatype']}")
                if not _matches(shape, spec["shape"]):
                    raise ProtocolError(f"input {name!r} has shape {shape}; model {self.name!r} takes "
                                        f"{spec['shape']} (-1: any size)")
            missing = [n for n in declared if n not in {t[0] for t in tensors}]
            if missing:
                raise ProtocolError(f"missing input(s) {', '.join(repr(n) for n in missing)} of model {self.name!r}")
        values = {name: _reshape(flat, shape) if shape else (flat[0] if flat else None)
                  for name, _, shape, flat in tensors}
        if len(tensors) == 1:
            return [next(iter(values.values()))], {}
        unknown = [n for n in values if n not in self.params and not self.var_kw]
        if unknown:
            raise ProtocolError(f"unknown input(s) {', '.join(repr(n) for n in unknown)}: with several inputs "
                                f"{self.name!r}.predict takes each as the keyword argument of its name, and it "
                                f"takes {', '.join(sorted(self.params)) or 'none'}")
        return [], values

    def outputs_of(self, result):
        """[(name, datatype, shape, flat)] of predict's return value."""
        declared = {t["name"]: t for t in self.declared_outputs or []}
        if isinstance(result, dict) and all(isinstance(k, str) for k in result):
            named = result
        elif self.declared_outputs and len(self.declared_outputs) == 1:
            named = {self.declared_outputs[0]["name"]: result}
        elif self.declared_outputs:
            raise ValueError(f"model {self.name!r} declares {len(self.declared_outputs)} outputs, so predict must "
                             "return a dict of them by name")
        else:
            named = {"predict": result}
        if declared and set(named) != set(declared):
            raise ValueError(f"predict returned outputs {sorted(named)}; the model declares {sorted(declared)}")
        return [(name, *_output_tensor(name, value, declared.get(name))) for name, value in named.items()]

    def record(self, tensors, outputs):
        def spec(name, datatype, shape):
            return {"name": name, "datatype": datatype, "shape": [-1] + list(shape[1:]) if shape else []}

        if self.inputs is None:
            self.inputs = [spec(n, d, s) for n, d, s, _ in tensors]
        if self.outputs is None:
            self.outputs = [spec(n, d, s) for n, d, s, _ in outputs]


def build_app(model, name, server_version="unknown", body_timeout=BODY_TIMEOUT, aliases=()):
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    served = _Model(model, name)

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    async def _read(request: Request):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise ProtocolError(f"the body's Content-Length {length!r} is over this server's limit of {MAX_BODY} "
                                "bytes; send smaller batches")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip", "deflate"):
            raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed, "
                                "or gzip or deflate")
        chunks = []

        async def collect():
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise ProtocolError(f"the body is over this server's limit of {MAX_BODY} bytes; send smaller "
                                        "batches")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(collect(), body_timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(f"the body did not arrive within {body_timeout:g} s (Content-Length {length}, "
                                f"{sum(map(len, chunks))} bytes received)") from None
        body = b"".join(chunks)
        return _decompress(body, encoding) if encoding in ("gzip", "deflate") else body

    def _decompress(body, encoding):
        import zlib

        # bounded: a small body that inflates past MAX_BODY is refused, not held in memory
        inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
        try:
            out = inflater.decompress(body, MAX_BODY + 1)
        except zlib.error as exc:
            raise ProtocolError(f"the {encoding} body could not be decompressed: {exc}") from None
        if len(out) > MAX_BODY or inflater.unconsumed_tail:
            raise ProtocolError(f"the {encoding} body inflates past this server's limit of {MAX_BODY} bytes")
        if not inflater.eof:
            raise ProtocolError(f"the {encoding} body is truncated")
        if inflater.unused_data:
            raise ProtocolError(f"the {encoding} body has {len(inflater.unused_data)} bytes after its end")
        return out

    async def _json(request: Request):
        try:
            return json.loads(await _read(request))
        except (ValueError, RecursionError):
            return None

    def _check_name(request):
        asked = request.path_params["name"]
        if asked != name and asked not in aliases:  # the class's own name too: /v1/models/ChurnModel
            raise ProtocolError(f"model {asked!r} not found; this server has {name!r}", 404)
        version = request.path_params.get("version")
        if version is not None and version != "1":
            raise ProtocolError(f"model {name!r} has no version {version!r}; it has version '1'", 404)

    def route(handler):
        async def run(request):
            try:
                return await handler(request)
            except ProtocolError as exc:
                return error(exc.status, str(exc))
            except ClientDisconnect:
                return error(400, "the client closed the connection before the body was complete")
        return run

    def _predict(args, kwargs):
        try:
            return model.predict(*args, **kwargs), None
        except Exception as exc:
            traceback.print_exc()
            return None, error(500, f"{type(exc).__name__}: {exc}")

    @route
    async def v1_models(request):
        return JSONResponse({"models": [name]})

    @route
    async def v1_ready(request):
        _check_name(request)
        return JSONResponse({"name": name, "ready": True})

    @route
    async def v1_predict(request):
        _check_name(request)
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("instances", body.get("inputs")), list):
            return error(400, 'expected a JSON object {"instances": [...]}')
        predictions, failed = _predict([body.get("instances", body.get("inputs"))], {})
        if failed:
            return failed
        try:  # NaN and Infinity as in v2's responses (and Python's json, as clients parse them)
            content = json.dumps({"predictions": _plain(predictions)})
        except (ValueError, TypeError, RecursionError) as exc:
            return error(500, f"the model's predictions cannot be sent as JSON: {type(exc).__name__}: {exc}")
        return Response(content, media_type="application/json")

    @route
    async def server_metadata(request):
        return JSONResponse({"name": "fairing", "version": server_version, "extensions": ["binary_tensor_data"]})

    @route
    async def live(request):
        return JSONResponse({"live": True})

    @route
    async def ready(request):
        return JSONResponse({"ready": True})

    @route
    async def v2_metadata(request):
        _check_name(request)
        return JSONResponse(served.metadata())

    @route
    async def v2_model_ready(request):
        _check_name(request)
        return JSONResponse({"name": name, "ready": True})

    @route
    async def v2_infer(request):
        _check_name(request)
        raw = await _read(request)
        body, tensors = decode_request(raw, request.headers.get(HEADER_LENGTH))
        requested, binary_default = _requested_outputs(body)
        args, kwargs = served.arguments(tensors)
        result, failed = _predict(args, kwargs)
        if failed:
            return failed
        try:
            outputs = served.outputs_of(result)
            content, headers = encode_response(
                {"model_name": name, "model_version": "1", "id": body.get("id", "")}, outputs, requested,
                binary_default)
        except (ValueError, TypeError, OverflowError, RecursionError, struct.error) as exc:
            return error(500, f"the model's output cannot be sent as a tensor: {exc}")
        served.record(tensors, outputs)
        return Response(content, headers=headers)

    routes = [
        Route("/v1/models", v1_models),
        Route("/v1/models/{name}", v1_ready),
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(prefix, v2_metadata), Route(prefix + "/ready", v2_model_ready),
                   Route(prefix + "/infer", v2_infer, methods=["POST"])]
    return Starlette(routes=routes)


#: Where KServe puts a model from the InferenceService's storage URI (a modelcar: a link that
#: appears once the model's container started, so the predictor waits for it).
KSERVE_MODEL_DIR = "/mnt/models"
MODEL_WAIT = 300.0


def link_model_files(model_dir, timeout=MODEL_WAIT):
    """Wait for ``model_dir`` to hold files, then link each of its entries into the working
    directory (where ``load()`` opens them, as with fairing's own model init container)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            names = sorted(os.listdir(model_dir))
        except OSError:
            names = []
        if names:
            break
        if time.monotonic() > deadline:
            raise OSError(f"no model appeared under {model_dir} within {timeout:g} s (is KServe's modelcar "
                          "enabled: storageInitializer.enableModelcar in the inferenceservice-config ConfigMap?)")
        time.sleep(0.5)
    try:
        _link(model_dir, names, ".")
    except PermissionError:
        # the working directory is not this user's (KServe runs a modelcar's predictor as its
        # uidModelcar): serve from a directory of links to both
        import tempfile

        here, work = os.getcwd(), tempfile.mkdtemp(prefix="fairing-serving-")
        _link(here, sorted(os.listdir(here)), work)
        _link(model_dir, names, work)
        os.chdir(work)
    return names


def _link(source_dir, names, dest_dir):
    for name in names:
        dest = os.path.join(dest_dir, name)
        if not os.path.lexists(dest):
            os.symlink(os.path.join(source_dir, name), dest)


def serve(spec, load_target):
    """Instantiate and load the model, then serve until stopped. Returns an exit code."""
    try:
        body_timeout = float(os.environ.get("FAIRING_SERVING_BODY_TIMEOUT") or BODY_TIMEOUT)
        if not body_timeout > 0:
            raise ValueError
    except ValueError:
        sys.stderr.write("fairing serving: FAIRING_SERVING_BODY_TIMEOUT must be a number of seconds > 0, got "
                         f"{os.environ.get('FAIRING_SERVING_BODY_TIMEOUT')!r}\n")
        return 2
    model_class = load_target(spec)
    model_dir = os.environ.get("FAIRING_MODEL_DIR") or (KSERVE_MODEL_DIR if os.environ.get("STORAGE_URI") else "")
    if model_dir:
        try:
            link_model_files(model_dir)
        except OSError as exc:
            sys.stderr.write(f"fairing serving: {exc}\n")
            sys.stderr.flush()
            return 4
    try:
        model = model_class()
        if callable(getattr(model, "load", None)):
            model.load()
    except Exception:
        sys.stderr.write(f"fairing serving: the model's load() failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        return 4
    import uvicorn

    port = int(os.environ.get("PORT") or spec.get("port") or 8080)
    app = build_app(model, spec["model_name"], spec.get("server_version", "unknown"), body_timeout,
                    aliases=(model_class.__name__,))
    sys.stdout.write(json.dumps({"fairing": "serving", "model": spec["model_name"], "port": port}) + "\n")
    sys.stdout.flush()
    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=port, log_level="warning")
    return 0
