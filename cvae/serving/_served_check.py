"""Loads a SavedModel version the way TensorFlow Serving does and replays its warm-up requests.

    python cvae/serving/_served_check.py VERSION_DIR CONTRACT.json

Run by `cvae.serving.check` in a fresh process that cannot import cvae, TensorFlow Probability or Keras,
so a graph that still needs them (or needs any Python) fails here as it would in TF Serving. It
loads with the TF1 loader (a Session and the "serve" tag), runs every signature by its tensor
names, then parses assets.extra/tf_serving_warmup_requests and replays every record, checking
outputs against the contract. Prints one JSON object on stdout: {"problems": [...], "report":
[...]}. CONTRACT.json is `cvae.serving.check`'s rendering of `cvae.serving.contract.SIGNATURES`: signature ->
{"inputs"|"outputs": name -> {"dtype", "shape" (ints, "N" for the batch, "D" for a latent size
not known, "S" for a low-resolution side, 14 or 7), "value_range", "values" (the only values an input may take, or null)}}. This file is run by path and must not import cvae.
"""

import json
import sys

for _name in ("cvae", "tensorflow_probability", "keras", "tf_keras"):
    sys.modules[_name] = None  # any import of these now raises ImportError

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"  # what TF Serving runs when a request names none
MAX_WARMUP_RECORDS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords
SYNTHETIC_BATCH = 3
SYNTHETIC_SIDE = 14  # "S" in a contract shape: a low-resolution image's side, 14 or 7
WARMUP_PATH = "assets.extra/tf_serving_warmup_requests"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (TensorFlow's carry long stack traces after it)."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0]


def dtype_name(enum: int) -> str:
    """The name of a DataType enum, e.g. "int32"."""
    try:
        return tf.as_dtype(enum).name
    except TypeError:
        return f"invalid dtype {enum}"


def shape_str(shape) -> str:
    """e.g. "[?, 28, 28, 1]"."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def synthetic_inputs(contract: dict, signature_def) -> dict:
    """Valid inputs for a signature, made from its contract: labels cycle through their range,
    other integers count up, pixels are uniform in [0, 1], other floats standard normal."""
    rng = np.random.default_rng(0)
    values = {}
    for name, spec in contract["inputs"].items():
        graph_dims = signature_def.inputs[name].tensor_shape.dim
        shape = []
        for i, d in enumerate(spec["shape"]):
            if d == "N":
                shape.append(SYNTHETIC_BATCH)
            elif d == "S":  # the side of a low-resolution image (upscale): 14 or 7
                shape.append(SYNTHETIC_SIDE)
            elif d == "D":  # a latent size the caller does not know: the graph's own, if any
                shape.append(graph_dims[i].size if i < len(graph_dims) and graph_dims[i].size > 0
                             else 1)
            else:
                shape.append(d)
        low_high = spec["value_range"]
        if spec.get("values"):  # e.g. a mask of 0s and 1s: the values it may take, in turn
            count = np.arange(np.prod(shape)).reshape(shape)
            value = np.asarray(spec["values"])[count % len(spec["values"])]
        elif spec["dtype"].startswith("int"):
            count = np.arange(np.prod(shape)).reshape(shape)
            value = count if low_high is None else low_high[0] + count % (
                low_high[1] - low_high[0] + 1)
        elif low_high is None:
            value = rng.standard_normal(shape)
        else:
            value = rng.uniform(low_high[0], low_high[1], shape)
        values[name] = np.asarray(value, dtype=spec["dtype"])
    return values


def takes_contract_inputs(signature_def, contract: dict) -> bool:
    """Whether a SignatureDef exists and takes the contract's input names and dtypes."""
    return signature_def is not None and set(signature_def.inputs) == set(
        contract["inputs"]) and all(
        dtype_name(signature_def.inputs[name].dtype) == spec["dtype"]
        for name, spec in contract["inputs"].items())


def check_inputs(where: str, contract: dict, signature_def, inputs: dict) -> list[str]:
    """Problems with a request's inputs before it is run: the names TF Serving insists on (the
    signature's, exactly), dtypes (the session would convert a numpy array silently, TF Serving
    would not) and shapes as the contract says, one batch size for all."""
    problems = []
    wanted, sent = set(signature_def.inputs), set(inputs)
    if wanted != sent:
        problems.append(f"{where}: inputs {sorted(sent)} do not match the signature's "
                        f"{sorted(wanted)} (TF Serving rejects the request)")
        return problems
    batch = set()
    for name, value in inputs.items():
        graph_dtype = dtype_name(signature_def.inputs[name].dtype)
        if value.dtype.name != graph_dtype:
            problems.append(f"{where}: input {name} is {value.dtype.name}, the signature takes "
                            f"{graph_dtype}")
        spec = contract["inputs"].get(name)
        if spec is None:
            continue
        if value.dtype.name != spec["dtype"]:
            if graph_dtype == value.dtype.name:  # not already reported above
                problems.append(f"{where}: input {name} is {value.dtype.name}, the contract says "
                                f"{spec['dtype']}")
        problems += check_shape(f"{where}: input {name}", value.shape, spec["shape"], batch)
    if len(batch) > 1:
        problems.append(f"{where}: inputs have different batch sizes {sorted(batch)}")
    return problems


def check_shape(where: str, shape, contract_shape, batch: set) -> list[str]:
    """Problems with `shape` against a contract shape; records the batch size in `batch`."""
    if len(shape) != len(contract_shape) or any(
            want not in ("N", "D", "S") and want != got
            for want, got in zip(contract_shape, shape)):
        return [f"{where} has shape {shape_str(shape)}, the contract says "
                f"{shape_str(contract_shape)}"]
    if contract_shape and contract_shape[0] == "N":
        batch.add(shape[0])
    return []


def run(session, signature_def, inputs: dict, output_filter=()) -> dict:
    """Runs a signature by tensor names, as TF Serving's Predict does: every output, or those in
    `output_filter`."""
    aliases = list(output_filter) or list(signature_def.outputs)
    fetches = {alias: signature_def.outputs[alias].name for alias in aliases}
    feeds = {signature_def.inputs[name].name: value for name, value in inputs.items()}
    return session.run(fetches, feed_dict=feeds)


def check_outputs(where: str, contract: dict, outputs: dict, batch_size: int) -> list[str]:
    """Problems with a signature's outputs: each the contract names, of its dtype and shape
    (with this request's batch size), finite, within its range."""
    problems = []
    for name, spec in contract["outputs"].items():
        if name not in outputs:
            problems.append(f"{where}: output {name} is missing (got {sorted(outputs)})")
            continue
        value = np.asarray(outputs[name])
        if value.dtype.name != spec["dtype"]:
            problems.append(f"{where}: output {name} is {value.dtype.name}, the contract says "
                            f"{spec['dtype']}")
        want = [batch_size if d == "N" else None if d == "D" else d for d in spec["shape"]]
        if len(want) != value.ndim or any(w is not None and w != g
                                          for w, g in zip(want, value.shape)):
            problems.append(f"{where}: output {name} has shape {shape_str(value.shape)}, "
                            f"expected {shape_str(want)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            problems.append(f"{where}: output {name} has NaN or infinite values")
        elif spec["value_range"] is not None and value.size and (
                value.min() < spec["value_range"][0] or value.max() > spec["value_range"][1]):
            problems.append(f"{where}: output {name} leaves its range {spec['value_range']} "
                            f"({value.min()}..{value.max()})")
    return problems


def read_warmup(path: str) -> tuple[list[bytes], list[str]]:
    """The raw records of the warm-up file, and a problem if it is not a complete TFRecord file."""
    records = []
    try:
        for record in tf.data.TFRecordDataset(path):
            records.append(record.numpy())
    except tf.errors.OpError as e:
        return records, [f"{WARMUP_PATH}: not a valid TFRecord file after {len(records)} "
                         f"record(s) ({first_line(e)}); TF Serving would fail to load the model"]
    return records, []


def replay_warmup(session, signature_defs, contract: dict,
                  records: list[bytes]) -> tuple[list[str], str]:
    """Replays every warm-up record as TF Serving does at load time; returns the problems found
    and a one-line report."""
    problems = []
    if len(records) > MAX_WARMUP_RECORDS:
        problems.append(f"{WARMUP_PATH}: {len(records)} records, TF Serving allows at most "
                        f"{MAX_WARMUP_RECORDS}")
    counts = {name: 0 for name in contract}
    batch_sizes = set()
    for i, record in enumerate(records):
        where = f"{WARMUP_PATH} record {i}"
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as e:  # protobuf's DecodeError, whose module path varies by backend
            problems.append(f"{where}: not a PredictionLog ({first_line(e)})")
            continue
        kind = log.WhichOneof("log_type")
        if kind != "predict_log":
            problems.append(f"{where}: a {kind or 'empty'} record; these signatures take "
                            "Predict requests (predict_log)")
            continue
        request = log.predict_log.request
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        where += f" ({name})"
        if name not in signature_defs:
            problems.append(f"{where}: signature {name!r} not found in the SavedModel "
                            f"(has {sorted(signature_defs)})")
            continue
        try:
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        except Exception as e:
            problems.append(f"{where}: an input is not a valid TensorProto ({first_line(e)})")
            continue
        spec = contract.get(name, {"inputs": {}, "outputs": {}})
        bad_inputs = check_inputs(where, spec, signature_defs[name], inputs)
        unknown = [a for a in request.output_filter if a not in signature_defs[name].outputs]
        if unknown:
            bad_inputs.append(f"{where}: output_filter names {unknown}, not outputs of {name}")
        problems += bad_inputs
        if bad_inputs:
            continue
        batch = {v.shape[0] for v in inputs.values() if v.ndim}
        batch_size = batch.pop() if len(batch) == 1 else None
        try:
            outputs = run(session, signature_defs[name], inputs, request.output_filter)
        except tf.errors.OpError as e:
            problems.append(f"{where}: failed to run: {first_line(e)}")
            continue
        if not request.output_filter:
            problems += check_outputs(where, spec, outputs, batch_size)
        counts[name] = counts.get(name, 0) + 1
        batch_sizes.add(batch_size)
    missing = [name for name in contract if counts.get(name, 0) == 0]
    if missing:
        problems.append(f"{WARMUP_PATH}: no record that runs signature(s) {', '.join(missing)}")
    per_signature = ", ".join(f"{name} {n}" for name, n in counts.items())
    sizes = " and ".join(str(b) for b in sorted(b for b in batch_sizes if b is not None))
    return problems, (f"warm-up: {len(records)} records replayed ({per_signature}; batch sizes "
                      f"{sizes or 'none'}), outputs finite and as the contract says")


def main(path: str, contract: dict) -> dict:
    """{"problems": [...], "report": [...]} for the version at `path`."""
    problems, report = [], []
    # Read before the session: inside `with session` its graph is the default one, where tf.data
    # cannot iterate eagerly.
    warmup_file = f"{path}/{WARMUP_PATH}"
    records = None
    if tf.io.gfile.exists(warmup_file):  # a missing file is reported by cvae.serving.check's layout step
        records, problems = read_warmup(warmup_file)
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], path)
        except Exception as e:  # anything here means TF Serving could not load it either
            return {"problems": problems + [f"TF1 loader (tag {SERVE_TAG!r}): {type(e).__name__}: "
                                 f"{first_line(e)}"], "report": []}
        report.append("load: TF1 loader (Session, tag 'serve') in a process without cvae, "
                      "TFP or Keras")
        signature_defs = meta_graph.signature_def
        ran = []
        for name, spec in contract.items():
            if not takes_contract_inputs(signature_defs.get(name), spec):
                continue  # cvae.serving.check reports the SignatureDef itself from saved_model.pb
            where = f"signature {name}"
            inputs = synthetic_inputs(spec, signature_defs[name])
            try:
                outputs = run(session, signature_defs[name], inputs)
            except tf.errors.OpError as e:
                problems.append(f"{where}: failed to run: {first_line(e)}")
                continue
            problems += check_outputs(where, spec, outputs, SYNTHETIC_BATCH)
            ran.append(name)
        report.append(f"run by tensor names: {', '.join(ran) or 'none'} (batch "
                      f"{SYNTHETIC_BATCH}, synthetic valid inputs)")
        if records is not None:
            warmup_problems, line = replay_warmup(session, signature_defs, contract, records)
            problems += warmup_problems
            report.append(line)
    return {"problems": problems, "report": report}


if __name__ == "__main__":
    with open(sys.argv[2]) as f:
        result = main(sys.argv[1], json.load(f))
    print(json.dumps(result))
