"""TensorFlow Serving's REST predict JSON: requests to tensors, tensors to responses, and back.

The rules are those of TF Serving's "RESTful API" page (Predict API) and its `json_tensor.cc`:

- A request is a JSON object with an optional `"signature_name"` (default `serving_default`)
  and exactly one of `"instances"` (row format) or `"inputs"` (columnar format).
- Row format: `"instances"` is a non-empty list with one item per row (batch element): an
  object keyed by input name, or, when the signature has one input, the input's value itself.
  Every named input therefore shares dimension 0, and every row of an input has the same shape.
- Columnar format: `"inputs"` is an object keyed by input name holding whole tensors as nested
  lists, or, when the signature has one input, that tensor itself.
- Values: an int type takes JSON whole numbers in its range (not 7.0, not "7", not true); a float
  type takes any number, and NaN, Infinity and -Infinity, as long as it converts without loss;
  bool takes true/false; string takes strings, or `{"b64": ...}` for bytes.
- A row request is answered `{"predictions": [...]}`, one item per row: an object keyed by output
  name, or the bare value when the signature has one output. A columnar request is answered
  `{"outputs": ...}`: an object keyed by output name, or the bare tensor for one output.
- Errors are `{"error": "<message>"}` with an HTTP status (400 for a bad request).

This module is stricter than TF Serving in three ways, so that a request that passes here also
passes there: unknown top-level keys and unknown inputs are errors (TF Serving ignores them in
the columnar format), and inputs must share their batch size (dimension 0) in the columnar
format too, because every signature of this project requires it (TF Serving would pass such a
request on and the model's own check would fail it, also with a 400).

TensorFlow and numpy only: importable in a process without Keras or TensorFlow Probability.
One module of some 550 lines because it is one set of rules: requests and responses share the
value conversions and the error texts, and a request built here is read back here in the tests.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

DEFAULT_SIGNATURE = "serving_default"
_REQUEST_KEYS = ("signature_name", "instances", "inputs")


class RequestError(ValueError):
    """A predict request that breaks the JSON rules or does not fit the signature; the message
    names the key, input or row at fault (TF Serving answers such requests with HTTP 400)."""


class ResponseError(ValueError):
    """A predict response that is an error or not a well-formed predictions/outputs object."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One signature input: its dtype and its shape (None for an unknown dimension; the shape
    is None altogether for an unknown rank)."""

    dtype: tf.DType
    shape: tuple[int | None, ...] | None


# ---------------------------------------------------------------------------------------------
# Signatures


def input_specs(signature) -> dict[str, InputSpec]:
    """The inputs of a signature, keyed by the name a request uses, sorted by name (so errors
    come in the same order whichever form the signature takes). `signature` is a concrete
    function (e.g. `tf.saved_model.load(path).signatures["decode"]`) or a SignatureDef proto (as
    in `saved_model.pb`, which is what TF Serving reads)."""
    if isinstance(signature, meta_graph_pb2.SignatureDef):
        specs = {}
        for name, info in signature.inputs.items():
            shape = None if info.tensor_shape.unknown_rank else tuple(
                None if d.size < 0 else d.size for d in info.tensor_shape.dim)
            specs[name] = InputSpec(tf.as_dtype(info.dtype), shape)
        return dict(sorted(specs.items()))
    args, kwargs = signature.structured_input_signature
    # Loaded signatures take keyword arguments only; a plain tf.function may take positional
    # ones, which a request names by their TensorSpec name.
    named = {spec.name: spec for spec in tf.nest.flatten(args)}
    named.update(kwargs)
    return {name: InputSpec(spec.dtype, None if spec.shape.rank is None else
                            tuple(spec.shape.as_list())) for name, spec in sorted(named.items())}


def output_names(signature) -> list[str]:
    """The names of a signature's outputs, sorted (the order responses use)."""
    if isinstance(signature, meta_graph_pb2.SignatureDef):
        return sorted(signature.outputs)
    return sorted(signature.structured_outputs)


def select_signature(body, signatures: Mapping) -> tuple[str, object]:
    """(name, signature) for the request's `signature_name` (default `serving_default`) from a
    mapping of name to signature, such as a loaded SavedModel's `.signatures` or a MetaGraphDef's
    `signature_def`; an unknown name is a RequestError listing the names there are."""
    name = signature_name(body)
    if name not in signatures:
        raise RequestError(f'serving signature name "{name}" not found; this model has: '
                           f'{", ".join(sorted(signatures))}')
    return name, signatures[name]


# ---------------------------------------------------------------------------------------------
# Requests


def parse_body(body, what: str = "request") -> dict:
    """The request (or, with what="response", the response) as a dict: `body` may be JSON text
    (str or bytes; NaN and Infinity allowed, as TF Serving allows them) or an already parsed dict.
    Anything else is a RequestError (a ResponseError for a response)."""
    error = RequestError if what == "request" else ResponseError
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if isinstance(body, str):
        if not body.strip():
            raise error(f"{what} is empty; expected a JSON object")
        try:
            body = json.loads(body)
        except json.JSONDecodeError as e:
            raise error(f"{what} is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise error(f"{what} must be a JSON object, got {_kind(body)}")
    return body


def signature_name(body) -> str:
    """The signature a request asks for: its `signature_name`, or `serving_default`."""
    body = parse_body(body)
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise RequestError(f"'signature_name' must be a string, got {_kind(name)} "
                           f"{_short(name)}")
    return name


def is_row_format(body) -> bool:
    """True for a row-format request ("instances"), False for a columnar one ("inputs");
    a RequestError if it has both, neither, or keys a predict request does not have."""
    body = parse_body(body)
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise RequestError(f"unknown key {unknown[0]!r} in the request; a predict request has "
                           f"'signature_name' and one of 'instances' or 'inputs'")
    if "instances" in body and "inputs" in body:
        raise RequestError("request has both 'instances' (row format) and 'inputs' (columnar "
                           "format); use one of them")
    if "instances" not in body and "inputs" not in body:
        raise RequestError("request has neither 'instances' (row format) nor 'inputs' "
                           "(columnar format)")
    return "instances" in body


def request_to_tensors(body, signature) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays of the signature's dtypes and shapes, keyed by
    input name; any violation of the rules in the module docstring is a RequestError naming the
    problem. `signature` is the one the request names (see `select_signature`): a concrete
    function or a SignatureDef."""
    body = parse_body(body)
    signature_name(body)  # a non-string signature_name is an error even if it was not used
    specs = input_specs(signature)
    rows = is_row_format(body)
    arrays = _from_rows(body["instances"], specs) if rows else _from_columns(body["inputs"], specs)
    for name, array in arrays.items():
        _check_shape(name, array.shape, specs[name], rows=rows)
    _check_same_batch(arrays)
    return arrays


def check_inputs(arrays: Mapping[str, np.ndarray], signature) -> dict[str, np.ndarray]:
    """The same checks for tensors that arrive as arrays (gRPC's TensorProtos): the names are
    exactly the signature's, each dtype is the signature's (no casting, as in TF Serving) and each
    shape fits; returns the arrays, or raises RequestError naming the problem."""
    specs = input_specs(signature)
    _check_names(set(arrays), specs, "request")
    out = {}
    for name, spec in specs.items():
        array = np.asarray(arrays[name])
        if tf.as_dtype(array.dtype) != spec.dtype:
            raise RequestError(f"input '{name}' must be {spec.dtype.name}, got "
                               f"{tf.as_dtype(array.dtype).name}")
        _check_shape(name, array.shape, spec, rows=False)
        out[name] = array
    _check_same_batch(out)
    return out


def _from_rows(instances, specs: dict[str, InputSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise RequestError(f"'instances' must be a list of rows, got {_kind(instances)}")
    if not instances:
        raise RequestError("'instances' is an empty list; give at least one row")
    named = _is_object(instances[0])
    if not named and len(specs) > 1:
        raise RequestError(
            f"instances[0] is {_kind(instances[0])}, but this signature has "
            f"{len(specs)} inputs ({', '.join(sorted(specs))}): each row must be an object "
            f"keyed by input name")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in specs}
    for i, row in enumerate(instances):
        if _is_object(row) != named:
            raise RequestError(
                f"instances[{i}] is {_kind(row)} but instances[0] is {_kind(instances[0])}: "
                f"every row must have the same form")
        if named:
            _check_names(set(row), specs, f"instances[{i}]")
            for name, spec in specs.items():
                columns[name].append(
                    _to_array(row[name], spec, f'instances[{i}]["{name}"]'))
        else:
            name, spec = next(iter(specs.items()))
            columns[name].append(_to_array(row, spec, f"instances[{i}]"))
    arrays = {}
    for name, rows in columns.items():
        for i, row in enumerate(rows[1:], start=1):
            if row.shape != rows[0].shape:
                where = f'["{name}"]' if named else ""
                raise RequestError(
                    f"instances[{i}]{where} has shape {list(row.shape)} but instances[0]{where} "
                    f"has {list(rows[0].shape)}: the rows are ragged (every row of an input "
                    f"must have the same shape)")
        arrays[name] = np.stack(rows)
    return arrays


def _from_columns(inputs, specs: dict[str, InputSpec]) -> dict[str, np.ndarray]:
    if _is_object(inputs):
        _check_names(set(inputs), specs, "'inputs'")
        return {name: _to_array(inputs[name], spec, f'inputs["{name}"]')
                for name, spec in specs.items()}
    if len(specs) > 1:
        raise RequestError(
            f"'inputs' is {_kind(inputs)}, but this signature has {len(specs)} inputs "
            f"({', '.join(sorted(specs))}): give an object keyed by input name")
    name, spec = next(iter(specs.items()))
    return {name: _to_array(inputs, spec, "inputs")}


def _check_names(given: set, specs: Mapping, where: str) -> None:
    expected = ", ".join(sorted(specs))
    unknown, missing = sorted(given - set(specs)), sorted(set(specs) - given)
    if unknown:
        raise RequestError(f"{where}: unknown input {unknown[0]!r}; this signature takes "
                           f"{expected}")
    if missing:
        raise RequestError(f"{where}: missing input {missing[0]!r}; this signature takes "
                           f"{expected}")


def _check_shape(name: str, shape: tuple, spec: InputSpec, rows: bool) -> None:
    """Fails unless `shape` fits the signature's (unknown dimensions match anything)."""
    want = spec.shape
    if want is None:
        return
    def fits(got, expected):
        return len(got) == len(expected) and all(e is None or e == g
                                                 for g, e in zip(got, expected))

    if fits(shape, want):
        return
    if rows and want:  # the row format built `shape` as [number of rows] + the rows' shape
        if fits(shape[1:], want[1:]):
            raise RequestError(f"input '{name}' takes {want[0]} rows, got {shape[0]}")
        item = "a single value" if len(want) == 1 else f"of shape {_shape_text(want[1:])}"
        got = "a single value" if len(shape) == 1 else f"shape {list(shape[1:])}"
        raise RequestError(f"input '{name}': each row must be {item} ({spec.dtype.name}), "
                           f"got {got}")
    raise RequestError(f"input '{name}' must have shape {_shape_text(want)} "
                       f"({spec.dtype.name}), got {list(shape)}")


def _check_same_batch(arrays: Mapping[str, np.ndarray]) -> None:
    sizes = {name: a.shape[0] for name, a in arrays.items() if a.ndim > 0}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(sizes.items()))
        raise RequestError(f"inputs have different batch sizes (dimension 0): {listed}; every "
                           f"input is batched along dimension 0 and they must agree")


def _shape_text(shape) -> str:
    return "[" + ", ".join("N" if i == 0 and d is None else "?" if d is None else str(d)
                           for i, d in enumerate(shape)) + "]"


def _to_array(value, spec: InputSpec, where: str) -> np.ndarray:
    """`value` (a JSON scalar or nested lists) as an array of spec.dtype; ragged lists, values of
    the wrong JSON type and values the dtype cannot hold exactly are RequestErrors."""
    shape = []
    probe = value
    while isinstance(probe, list):  # the shape is read along the first items, as TF Serving does
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    leaves: list = []
    _flatten(value, shape, 0, where, "", leaves)
    converted = _convert(leaves, spec.dtype, where, shape)
    return converted.reshape(shape)


def _flatten(value, shape: list, level: int, where: str, path: str, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise RequestError(
                f"{where}{path} is a single value where {where}{'[0]' * level} is a list of "
                f"{shape[level]}: the nested lists are ragged")
        out.append(value)
        return
    if level == len(shape):
        raise RequestError(f"{where}{path} is a list where {where}{'[0]' * level} is a single "
                           f"value: the nested lists are ragged")
    if len(value) != shape[level]:
        raise RequestError(
            f"{where}{path} has {len(value)} items but {where}{'[0]' * level} has "
            f"{shape[level]}: the nested lists are ragged")
    if level == len(shape) - 1 and not any(isinstance(v, list) for v in value):
        out.extend(value)  # the common innermost case, without a call per number
        return
    for i, item in enumerate(value):
        _flatten(item, shape, level + 1, where, f"{path}[{i}]", out)


def _convert(leaves: list, dtype: tf.DType, where: str, shape: list) -> np.ndarray:
    def at(i: int) -> str:
        return where + "".join(f"[{j}]" for j in np.unravel_index(i, shape)) if shape else where

    def wrong_type(i: int, v) -> RequestError:
        if v is None:
            return RequestError(f"{at(i)}: null where {_takes(dtype)} was expected")
        return RequestError(f"{at(i)}: {_short(v)} is {_kind(v)}, not {_takes(dtype)}")

    if dtype == tf.bool:
        for i, v in enumerate(leaves):
            if type(v) is not bool:
                raise wrong_type(i, v)
        return np.array(leaves, np.bool_)
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)
        for i, v in enumerate(leaves):
            if type(v) is not int:  # bool is a subclass of int, so `type`, not isinstance
                raise wrong_type(i, v)
            if not info.min <= v <= info.max:
                raise RequestError(f"{at(i)}: {v} is out of the {dtype.name} range "
                                   f"{info.min}..{info.max}")
        return np.array(leaves, dtype.as_numpy_dtype)
    if dtype in (tf.float16, tf.float32, tf.float64):
        finfo = np.finfo(dtype.as_numpy_dtype)
        exact_int = 2 ** (finfo.nmant + 1) - 1  # larger whole numbers would be rounded
        largest = float(finfo.max)
        for i, v in enumerate(leaves):
            if type(v) is int:
                if abs(v) > exact_int:
                    raise RequestError(f"{at(i)}: {v} cannot be a {dtype.name} without loss "
                                       f"of precision")
            elif type(v) is float:
                if math.isfinite(v) and abs(v) > largest:
                    raise RequestError(f"{at(i)}: {v} is beyond the {dtype.name} range")
            else:
                raise wrong_type(i, v)
        return np.array(leaves, dtype.as_numpy_dtype)
    if dtype == tf.string:
        out = []
        for i, v in enumerate(leaves):
            if isinstance(v, str):
                out.append(v.encode("utf-8"))
            elif _is_b64(v):
                try:
                    out.append(base64.b64decode(v["b64"], validate=True))
                except binascii.Error:
                    raise RequestError(f"{at(i)}: 'b64' holds invalid base64 data") from None
            else:
                raise wrong_type(i, v)
        return np.array(out, dtype=object)
    raise RequestError(f"{where}: inputs of type {dtype.name} are not supported in JSON")


def _takes(dtype: tf.DType) -> str:
    if dtype.is_integer:
        return f"{dtype.name} (a whole number)"
    if dtype.is_floating:
        return f"{dtype.name} (a number)"
    return dtype.name


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_object(value) -> bool:
    """A JSON object that holds named inputs (a {"b64": ...} object is a value instead)."""
    return isinstance(value, dict) and not _is_b64(value)


def _kind(value) -> str:
    kinds = {bool: "true/false", int: "a whole number", float: "a decimal number",
             str: "a string", type(None): "null", dict: "an object", list: "a list"}
    return kinds.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------
# Responses


def outputs_to_response(outputs: Mapping, row_format: bool) -> dict:
    """The response TF Serving sends for these output tensors (arrays or tf.Tensors keyed by
    output name): `{"predictions": [...]}` for a row request, `{"outputs": ...}` for a columnar
    one; one output is given bare, several as objects keyed by name (sorted). Floats are written
    with the shortest digits that read back as the same float32 (as TF Serving writes them), so
    a client gets the tensors bit for bit. Serialise with `dumps` (NaN and Infinity tokens)."""
    arrays = {name: np.asarray(value) for name, value in sorted(outputs.items())}
    if not arrays:
        raise ValueError("no outputs to write")
    if not row_format:
        if len(arrays) == 1:
            name, array = next(iter(arrays.items()))
            return {"outputs": _to_json(name, array)}
        return {"outputs": {name: _to_json(name, a) for name, a in arrays.items()}}
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise ValueError(f"outputs have no common batch size for the row format: {sizes}")
    columns = {name: _to_json(name, a) for name, a in arrays.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    batch = next(iter(sizes.values()))
    return {"predictions": [{name: column[i] for name, column in columns.items()}
                            for i in range(batch)]}


def _to_json(name: str, array: np.ndarray):
    """An array as nested lists of JSON values."""
    if array.dtype.kind == "f":
        # numpy's str() of a float32 is its shortest round-trip form ("0.2", not
        # 0.20000000298023224); parsed as a double it is written the same way by json.
        return array.astype(str).astype(np.float64).tolist()
    if array.dtype.kind in "OS":
        as_bytes = name.endswith("_bytes")  # TF Serving's convention for binary strings

        def text(b):
            b = b if isinstance(b, bytes) else str(b).encode()
            return {"b64": base64.b64encode(b).decode("ascii")} if as_bytes else b.decode()

        return np.vectorize(text, otypes=[object])(array).tolist()
    return array.tolist()


def dumps(message: dict) -> str:
    """JSON text for a request or response; NaN and Infinity become the bare tokens TF Serving
    reads and writes."""
    return json.dumps(message, allow_nan=True, separators=(",", ":"))


def row_request(inputs: Mapping, signature_name: str | None = None) -> dict:
    """A row-format request for batched arrays keyed by input name: one object per row (the bare
    value per row when there is one input). All inputs must share dimension 0."""
    arrays = _request_arrays(inputs)
    sizes = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise ValueError(f"the row format needs inputs with the same batch size > 0: {sizes}")
    columns = {name: _to_json(name, a) for name, a in arrays.items()}
    if len(columns) == 1:
        instances = next(iter(columns.values()))
    else:
        instances = [{name: column[i] for name, column in columns.items()}
                     for i in range(next(iter(sizes.values())))]
    return _with_signature({"instances": instances}, signature_name)


def columnar_request(inputs: Mapping, signature_name: str | None = None) -> dict:
    """A columnar-format request for arrays keyed by input name (bare for one input)."""
    arrays = _request_arrays(inputs)
    columns = {name: _to_json(name, a) for name, a in arrays.items()}
    body = next(iter(columns.values())) if len(columns) == 1 else columns
    return _with_signature({"inputs": body}, signature_name)


def _request_arrays(inputs: Mapping) -> dict[str, np.ndarray]:
    if not inputs:
        raise ValueError("a request needs at least one input")
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    for name, a in arrays.items():
        if a.ndim == 0:
            raise ValueError(f"input '{name}' is a scalar; inputs are batched along dimension 0")
    return arrays


def _with_signature(body: dict, name: str | None) -> dict:
    return body if name is None else {"signature_name": name, **body}


def response_to_arrays(body, dtypes: Mapping | None = None) -> dict[str, np.ndarray]:
    """The output tensors of a predict response (row or columnar) as arrays keyed by output name.

    `dtypes` (output name to dtype) gives the outputs expected: any other set is a ResponseError,
    and each array is converted to its dtype. It is required when the response holds one bare
    output, whose name the JSON does not carry. Without it, numbers keep numpy's default types
    (int64, float64). An `{"error": ...}` body is a ResponseError with the server's message."""
    body = parse_body(body, what="response")
    if "error" in body:
        raise ResponseError(f"server error: {body['error']}")
    if ("predictions" in body) == ("outputs" in body):
        raise ResponseError(f"a predict response has one of 'predictions' or 'outputs'; got "
                            f"keys {sorted(body)}")
    names = None if dtypes is None else list(dtypes)
    if "predictions" in body:
        rows = body["predictions"]
        if not isinstance(rows, list) or not rows:
            raise ResponseError("'predictions' must be a non-empty list")
        if all(_is_object(r) for r in rows):
            keys = sorted(rows[0])
            for i, row in enumerate(rows):
                if sorted(row) != keys:
                    raise ResponseError(f"predictions[{i}] has outputs {sorted(row)} but "
                                        f"predictions[0] has {keys}")
            values = {k: [row[k] for row in rows] for k in keys}
        else:
            values = {_bare_name(names, "predictions"): rows}
    else:
        outputs = body["outputs"]
        values = dict(outputs) if _is_object(outputs) else \
            {_bare_name(names, "outputs"): outputs}
    if names is not None and sorted(values) != sorted(names):
        raise ResponseError(f"response has outputs {sorted(values)}, expected {sorted(names)}")
    arrays = {}
    for name, value in values.items():
        try:
            array = np.array(value)
        except ValueError:
            raise ResponseError(f"output '{name}' is ragged") from None
        if dtypes is not None:
            dtype = tf.as_dtype(dtypes[name])
            if dtype.is_integer and array.dtype.kind not in "iu":
                raise ResponseError(f"output '{name}' should hold whole numbers ({dtype.name})")
            array = array.astype(dtype.as_numpy_dtype, copy=False)
        arrays[name] = array
    return arrays


def _bare_name(names: list | None, key: str) -> str:
    if names is None or len(names) != 1:
        raise ResponseError(f"'{key}' holds one unnamed output; pass dtypes with its one name")
    return names[0]
