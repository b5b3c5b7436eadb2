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
go past. These routes are the part of the protocols fairing's endpoints use, and KServe's
controller serves them as any custom predictor (tests/e2e/test_kserve_controller.py).

Routes (``{name}`` is the model's name)::

    GET  /v1/models/{name}                 {"name": ..., "ready": true}
    POST /v1/models/{name}:predict         {"instances": [...]} -> {"predictions": [...]}
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer           {"inputs": [{"name", "shape", "datatype", "data"}]}
"""

import json
import os
import sys
import traceback

_DATATYPES = ((bool, "BOOL"), (int, "INT64"), (float, "FP64"), (str, "BYTES"))


def _plain(value):
    """Model output as JSON-ready lists (numpy arrays and scalars included)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _reshape(flat, shape):
    if len(shape) <= 1:
        return list(flat)
    step = 1
    for dim in shape[1:]:
        step *= dim
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _flatten(value):
    if isinstance(value, list):
        out, shape = [], [len(value)]
        inner = None
        for item in value:
            flat, inner = _flatten(item)
            out.extend(flat)
        return out, shape + (inner or [])
    return [value], []


def _datatype(flat):
    for pytype, name in _DATATYPES:
        if flat and all(isinstance(v, pytype) for v in flat):
            return name
    return "FP64"


def build_app(model, name):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    async def _body(request: Request):
        try:
            return await request.json()
        except ValueError:
            return None

    def _predict(instances):
        try:
            return _plain(model.predict(instances)), None
        except Exception as exc:
            traceback.print_exc()
            return None, error(500, f"{type(exc).__name__}: {exc}")

    async def v1_ready(request):
        if request.path_params["name"] != name:
            return error(404, f"model {request.path_params['name']!r} not found; this server has {name!r}")
        return JSONResponse({"name": name, "ready": True})

    async def v1_predict(request):
        if request.path_params["name"] != name:
            return error(404, f"model {request.path_params['name']!r} not found; this server has {name!r}")
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("instances", body.get("inputs")), list):
            return error(400, 'expected a JSON object {"instances": [...]}')
        predictions, failed = _predict(body.get("instances", body.get("inputs")))
        return failed or JSONResponse({"predictions": predictions})

    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        return JSONResponse({"ready": True})

    async def v2_metadata(request):
        if request.path_params["name"] != name:
            return error(404, f"model {request.path_params['name']!r} not found")
        return JSONResponse({"name": name, "versions": ["1"], "platform": "fairing", "inputs": [], "outputs": []})

    async def v2_model_ready(request):
        if request.path_params["name"] != name:
            return error(404, f"model {request.path_params['name']!r} not found")
        return JSONResponse({"name": name, "ready": True})

    async def v2_infer(request):
        if request.path_params["name"] != name:
            return error(404, f"model {request.path_params['name']!r} not found")
        body = await _body(request)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not inputs or not isinstance(inputs[0], dict) or "data" not in inputs[0]:
            return error(400, 'expected {"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}')
        first = inputs[0]
        data = first["data"]
        shape = first.get("shape") or [len(data)]
        flat, _ = _flatten(data)
        predictions, failed = _predict(_reshape(flat, shape))
        if failed:
            return failed
        out_flat, out_shape = _flatten(predictions)
        return JSONResponse({
            "model_name": name, "model_version": "1", "id": body.get("id", ""),
            "outputs": [{"name": "predict", "shape": out_shape, "datatype": _datatype(out_flat), "data": out_flat}],
        })

    return Starlette(routes=[
        Route("/v1/models/{name}", v1_ready),
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", v2_metadata),
        Route("/v2/models/{name}/ready", v2_model_ready),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
    ])


def serve(spec, load_target):
    """Instantiate and load the model, then serve until stopped. Returns an exit code."""
    model_class = load_target(spec)
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
    sys.stdout.write(json.dumps({"fairing": "serving", "model": spec["model_name"], "port": port}) + "\n")
    sys.stdout.flush()
    uvicorn.run(build_app(model, spec["model_name"]), host=os.environ.get("HOST", "0.0.0.0"), port=port,
                log_level="warning")
    return 0
