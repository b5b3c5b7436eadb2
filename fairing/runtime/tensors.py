"""The Open Inference Protocol's tensors, as the serving runtime reads and writes them:
JSON ``data``, and the binary tensor data extension (raw little-endian bytes after the JSON,
whose length the ``Inference-Header-Content-Length`` header carries; ``BYTES`` elements each a
4-byte little-endian length then the bytes). Standard library only (``struct``, no numpy):
it runs inside the serving image (see :mod:`serving` for why the protocol is written here).
Anything malformed is a :class:`ProtocolError` (a 400), checked against the body's real
length before anything is allocated.
"""

import json
import struct

#: The largest request body read (bytes); a larger one is a 400 before it is read.
MAX_BODY = 256 * 1024 * 1024
#: Seconds a request's body may take to arrive (``FAIRING_SERVING_BODY_TIMEOUT``): a client that
#: announces more than it sends gets a 400 then, instead of holding the request open.
BODY_TIMEOUT = 60.0
HEADER_LENGTH = "inference-header-content-length"

# datatype -> struct format character (little-endian); BF16 and BYTES are special-cased.
_STRUCT = {"BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h",
           "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d"}
DATATYPES = tuple(_STRUCT) + ("BF16", "BYTES")
_SIZE = {**{k: struct.calcsize("<" + v) for k, v in _STRUCT.items()}, "BF16": 2}
_INT_RANGE = {f"{s}INT{bits}": ((0, 2 ** bits - 1) if s else (-2 ** (bits - 1), 2 ** (bits - 1) - 1))
              for s in ("", "U") for bits in (8, 16, 32, 64)}
# numpy dtype names -> datatypes (outputs that are arrays); dtype kinds U, S, O -> BYTES
_NUMPY = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
          "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
          "float32": "FP32", "float64": "FP64", "bfloat16": "BF16"}
_MAX_DEPTH = 64
_MAX_DIM = 2 ** 63 - 1  # int64, as the protocol's shapes


class ProtocolError(Exception):
    """A request this server cannot take: answered 400 with the message (or 404)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# -- tensor specifications -------------------------------------------------------------------------------------

def check_tensor_specs(specs, what):
    """``specs`` (a model class's ``inputs`` or ``outputs``) as a list of checked dicts; ValueError otherwise."""
    example = '[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]'
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ValueError(f"{what} must be a non-empty list of tensors like {example}; got {specs!r}")
    out, names = [], set()
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ValueError(f"each of {what} is a dict with a name, a datatype and a shape, like {example}; "
                             f"got {spec!r}")
        unknown = sorted(set(spec) - {"name", "datatype", "shape"})
        if unknown:
            raise ValueError(f"{what} {spec['name']!r} has unknown keys {unknown}; the keys are name, datatype "
                             "and shape")
        if spec["name"] in names:
            raise ValueError(f"{what} names {spec['name']!r} twice")
        names.add(spec["name"])
        datatype = spec.get("datatype")
        if datatype not in DATATYPES:
            raise ValueError(f"{what} {spec['name']!r} has datatype {datatype!r}; use one of {', '.join(DATATYPES)}")
        shape = spec.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
            raise ValueError(f"{what} {spec['name']!r} has shape {shape!r}; a shape is a list of sizes, -1 for "
                             "any size")
        out.append({"name": spec["name"], "datatype": datatype, "shape": list(shape)})
    return out


def model_tensors(model_class):
    """The model class's declared (inputs, outputs), each a checked list or None. ValueError if malformed."""
    return tuple(check_tensor_specs(getattr(model_class, attr), f"{model_class.__name__}.{attr}")
                 if getattr(model_class, attr, None) is not None else None for attr in ("inputs", "outputs"))


# -- values ------------------------------------------------------------------------------------------------------

def _plain(value):
    """Model output as JSON-ready lists (numpy arrays and scalars included)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _product(shape):
    n = 1
    for dim in shape:
        n *= dim
    return n


def _reshape(flat, shape):
    if len(shape) <= 1:
        return list(flat)
    step = _product(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _flatten(value, depth=0):
    """(flat elements, shape) of nested lists; ValueError when ragged or too deep."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(value, (list, tuple)):
        return [value], []
    out, inner = [], None
    for item in value:
        flat, shape = _flatten(item, depth + 1)
        if inner is not None and shape != inner:
            raise ValueError("ragged: its rows have different shapes")
        inner = shape
        out.extend(flat)
    return out, [len(value)] + (inner if inner is not None else [])


def _infer_datatype(flat):
    if all(isinstance(v, bool) for v in flat):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        return "FP64"
    if all(isinstance(v, (str, bytes)) for v in flat):
        return "BYTES"
    kinds = sorted({type(v).__name__ for v in flat})
    raise ValueError(f"its elements ({', '.join(kinds)}) are not one tensor datatype")


def _check_element(datatype, value):
    """Whether a JSON element fits ``datatype``."""
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if datatype in _INT_RANGE:
        low, high = _INT_RANGE[datatype]
        return isinstance(value, int) and low <= value <= high
    return True


def _bytes_element(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _unpack(datatype, raw, shape, name):
    """The elements of ``datatype`` filling ``shape`` from ``raw`` (exactly its bytes)."""
    count = _product(shape)
    if datatype == "BYTES":
        out, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ProtocolError(f"input {name!r}: BYTES element {len(out)} has a truncated 4-byte length prefix")
            (size,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + size > len(raw):
                raise ProtocolError(f"input {name!r}: BYTES element {len(out)} declares {size} bytes but only "
                                    f"{len(raw) - offset} remain in its binary_data_size")
            out.append(_bytes_element(bytes(raw[offset:offset + size])))
            offset += size
        if len(out) != count:
            raise ProtocolError(f"input {name!r}: its shape {shape} holds {count} elements but its binary data has "
                                f"{len(out)} BYTES elements")
        return out
    if len(raw) != count * _SIZE[datatype]:
        raise ProtocolError(f"input {name!r}: its shape {shape} holds {count} {datatype} elements "
                            f"({count * _SIZE[datatype]} bytes) but its binary_data_size is {len(raw)}")
    if datatype == "BF16":
        return [struct.unpack("<f", b"\0\0" + bytes(raw[i:i + 2]))[0] for i in range(0, len(raw), 2)]
    return list(struct.unpack(f"<{count}{_STRUCT[datatype]}", raw))


def _pack(datatype, flat):
    if datatype == "BYTES":
        parts = []
        for v in flat:
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    if datatype == "BF16":
        out = bytearray()
        for v in flat:
            (bits,) = struct.unpack("<I", struct.pack("<f", v))
            bits += 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
            out += struct.pack("<H", (bits >> 16) & 0xFFFF)
        return bytes(out)
    return struct.pack(f"<{len(flat)}{_STRUCT[datatype]}", *flat)


# -- requests ----------------------------------------------------------------------------------------------------

def _shape_of(tensor, name):
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers; got {shape!r}")
    if len(shape) > _MAX_DEPTH or any(d > _MAX_DIM for d in shape):
        raise ProtocolError(f"input {name!r}: a shape has at most {_MAX_DEPTH} dimensions, each at most {_MAX_DIM}; "
                            f"got {len(shape)} dimensions")
    rows = 1
    for dim in shape[:-1]:  # the nested lists predict gets: bounded even when the tensor has no elements
        rows *= dim
        if rows > MAX_BODY:
            raise ProtocolError(f"input {name!r}: shape {shape} has more than {MAX_BODY} rows; send smaller batches")
    return shape


def _parameters(obj, where):
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: parameters must be a JSON object; got {params!r}")
    return params


def decode_request(body, header_length):
    """The v2 request's JSON and its input tensors ``[(name, datatype, shape, flat)]``."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise ProtocolError(f"the Inference-Header-Content-Length header must be an integer; got "
                                f"{header_length!r}") from None
        if length < 0 or length > len(body):
            raise ProtocolError(f"the Inference-Header-Content-Length header says the JSON is {length} bytes, but "
                                f"the body has {len(body)}")
        json_part, binary = body[:length], memoryview(body)[length:]
    try:
        request = json.loads(bytes(json_part).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        hint = (" (binary tensors follow the JSON: send its length in the Inference-Header-Content-Length header)"
                if header_length is None else "")
        raise ProtocolError(f"the request is not valid JSON{hint}: {str(exc)[:200]}") from None
    example = '{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [...]}]}'
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ProtocolError(f"expected {example}")
    _parameters(request, "the request")
    tensors, seen, offset = [], set(), 0
    for i, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError(f"input {i} must be an object with a name; expected {example}")
        name = tensor["name"]
        if name in seen:
            raise ProtocolError(f"input {name!r} appears twice")
        seen.add(name)
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
        shape = _shape_of(tensor, name)
        count = _product(shape)
        size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
        if size is not None:
            if "data" in tensor:
                raise ProtocolError(f"input {name!r} has both data and a binary_data_size; send one")
            if header_length is None:
                raise ProtocolError(f"input {name!r} has a binary_data_size but the request has no "
                                    "Inference-Header-Content-Length header giving the JSON's length")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer; got {size!r}")
            if size > len(binary) - offset:
                raise ProtocolError(f"input {name!r}: binary_data_size is {size} bytes but only "
                                    f"{len(binary) - offset} bytes of tensor data remain in the body (truncated?)")
            flat = _unpack(datatype, binary[offset:offset + size], shape, name)
            offset += size
        else:
            if "data" not in tensor:
                raise ProtocolError(f"input {name!r} has neither data nor a binary_data_size parameter")
            try:
                flat, _ = _flatten(tensor["data"])
            except ValueError as exc:
                raise ProtocolError(f"input {name!r}: data is {exc}") from None
            if len(flat) != count:
                raise ProtocolError(f"input {name!r}: shape {shape} holds {count} elements but data has {len(flat)}")
            bad = next((i for i, v in enumerate(flat) if not _check_element(datatype, v)), None)
            if bad is not None:
                raise ProtocolError(f"input {name!r}: element {bad} ({json.dumps(flat[bad])[:50]}) is not a "
                                    f"{datatype} value")
        tensors.append((name, datatype, shape, flat))
    if offset != len(binary):
        raise ProtocolError(f"the body has {len(binary)} bytes of tensor data after the JSON but its inputs' "
                            f"binary_data_size add up to {offset}")
    return request, tensors


def _requested_outputs(request):
    """{name: binary?} for the request's ``outputs`` (None: all), and the default for the others."""
    default = _parameters(request, "the request").get("binary_data_output", False) is True
    outputs = request.get("outputs")
    if outputs is None:
        return None, default
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise ProtocolError('outputs must be a list like [{"name": "label", "parameters": {"binary_data": true}}]')
    return {o["name"]: _parameters(o, f"output {o['name']!r}").get("binary_data", default) is True
            for o in outputs}, default


def _matches(shape, declared):
    return len(shape) == len(declared) and all(d == -1 or d == s for s, d in zip(shape, declared))


def _output_tensor(name, value, declared):
    """(datatype, shape, flat) of one output value."""
    dtype = getattr(value, "dtype", None)
    try:
        flat, shape = _flatten(_plain(value))
    except ValueError as exc:
        raise ValueError(f"the model's output {name!r} is {exc}") from None
    if declared is not None:
        datatype = declared["datatype"]
    elif dtype is not None and str(dtype) in _NUMPY:
        datatype = _NUMPY[str(dtype)]
    elif getattr(dtype, "kind", None) in ("U", "S", "O"):
        datatype = "BYTES"
    else:
        try:
            datatype = _infer_datatype(flat)
        except ValueError as exc:
            raise ValueError(f"the model's output {name!r}: {exc}; declare its datatype in the class's outputs") \
                from None
    return datatype, shape, flat


def encode_response(body, outputs, requested, binary_default):
    """(bytes, headers) of a v2 response: JSON, then the binary outputs' bytes."""
    if requested is not None:
        unknown = [n for n in requested if n not in {o[0] for o in outputs}]
        if unknown:
            raise ProtocolError(f"unknown output(s) {', '.join(repr(n) for n in unknown)}; the model returns "
                                f"{', '.join(repr(o[0]) for o in outputs)}")
        outputs = [o for o in outputs if o[0] in requested]
    tensors, chunks = [], []
    for name, datatype, shape, flat in outputs:
        tensor = {"name": name, "datatype": datatype, "shape": shape}
        if (requested[name] if requested is not None else binary_default):
            raw = _pack(datatype, flat)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if datatype == "BYTES":
                flat = [_bytes_element(v) if isinstance(v, bytes) else v for v in flat]
                if any(isinstance(v, bytes) for v in flat):
                    raise ValueError(f"output {name!r} has bytes that are not UTF-8, which JSON cannot carry; ask "
                                     "for it as binary data")
            elif datatype != "BOOL" and datatype != "BYTES":
                struct.pack(f"<{len(flat)}{_STRUCT.get(datatype, 'f')}", *flat)  # the values fit the datatype
            tensor["data"] = flat
        tensors.append(tensor)
    header = json.dumps({**body, "outputs": tensors}).encode("utf-8")
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       HEADER_LENGTH: str(len(header))}
