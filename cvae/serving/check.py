"""Checks an exported version as TensorFlow Serving sees it: layout, signatures, ops, a clean load.

`check_version("saved_models/cvae/1")` returns what it checked, or raises CheckError listing
every problem found. The contract it checks against is `cvae.serving.contract.SIGNATURES`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from cvae.config import Config
from cvae.labels import NUM_CLASSES
from cvae.serving.contract import (ASSETS_EXTRA, D, N, PREDICT_METHOD, SIGNATURES, VERSION_NAME,
                                   WARMUP_FILE, signatures_for)

SERVE_TAG = "serve"  # the MetaGraph tag TF Serving loads
# TF2 SavedModels list their variable initialiser among the SignatureDefs under this key; the
# loader runs it, TF Serving does not serve it.
INIT_OP_SIGNATURE = "__saved_model_init_op"
SERVED_CHECK = Path(__file__).with_name("_served_check.py")
SERVED_CHECK_TIMEOUT = 600  # seconds; a load and ~15 small requests take ~10 s on 2 cores

# Every op type the served functions of the current exports use (all three likelihoods, with and
# without decoder_label_planes), reviewed one by one. A new op is a deliberate change: review it
# (TensorFlow core, no I/O, no Python, deterministic) before adding it here.
ALLOWED_OPS = frozenset({
    # math
    "Abs", "AddV2", "All", "BiasAdd", "Conv2D", "Conv2DBackpropInput", "Equal", "Expm1",
    "DepthToSpace",  # the resnet decoder's sub-pixel output (cvae.model.networks.resnet)
    "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "MatMul", "Maximum", "Minimum",
    "Mul", "Neg", "RealDiv", "Reciprocal", "Relu", "Sigmoid", "Softplus", "Square", "Sub",
    # arrays
    "ConcatV2", "Const", "Identity", "OneHot", "Pack", "Placeholder", "Range", "Reshape",
    "SelectV2", "Shape", "Split", "Squeeze", "StridedSlice", "Tile",
    "ZerosLike",  # guidance's label-free condition
    # a model of metadata fields (cvae.serving.field_export): NaN is an unknown value
    "IsNan", "LogicalNot", "LogicalOr",
    # control flow: function calls, and tf.map_fn's loop over per-row seeds with its tensor list
    "NoOp", "StatefulPartitionedCall", "StatelessWhile", "TensorListFromTensor",
    "TensorListGetItem", "TensorListReserve", "TensorListSetItem", "TensorListStack",
    # variables, read only
    "ReadVariableOp", "VarHandleOp",
    # serving_default's per-class codes (cvae.model.sampling): pick the component of the label's
    # mixture by its cumulative weights, gather its Gaussian, L @ eps
    "BatchMatMulV2", "Cumsum", "ExpandDims", "ResourceGather", "ResourceGatherNd",
    # stateless random (eps and the component's u from each request's seed)
    "StatelessRandomGetKeyCounter", "StatelessRandomNormalV2", "StatelessRandomUniformV2",
    # run-time checks (label range, pixel range, batch sizes)
    "Assert",
    # the evaluation functions' log-probabilities (log_likelihood, binarized_log_likelihood)
    "Cast", "Ceil", "Exp", "Expm1", "Floor", "Log", "Log1p", "MulNoNan", "Round", "Sum",
    # the applications (cvae.applications): log-sum-exp and softmax over codes and classes, the
    # Gumbel-max pick of a code, gathers of the picked code, the class mixture's density
    # (cvae.model.sampling.class_log_densities: an identity, a triangular solve, an einsum, the
    # log-determinant), the broadcast of shared noise, the mask check
    "ArgMax", "BroadcastArgs", "BroadcastTo", "Einsum", "Fill", "GatherV2", "IsFinite",
    "LogicalOr", "MatrixDiagPartV3", "MatrixDiagV3", "MatrixTriangularSolve", "Max", "Pow",
    "Slice", "Softmax", "SquaredDifference", "StopGradient", "Transpose",
    # loops whose bodies read the model's variables (While): classify's over the ten classes,
    # inpaint's over its rounds
    "While",
    # denoise's 3x3 median filter (symmetric padding, the 5th largest of 9 values) and its
    # noise model (a clipped Gaussian's tails, the bins' probabilities)
    "MirrorPad", "PadV2", "TopKV2", "Erfc", "OnesLike", "Sqrt",
    "Cosh", "NotEqual",  # the continuous Bernoulli's variance (denoise's Gaussian fusion)
    # classify's typicality: each image's PNG length in memory (tf.io.encode_png, no file)
    "EncodePng", "StringLength",
    # inpaint's refinement: the gradient of log p(x_known | z, y) + log p(z|y) with respect to
    # the code, through the decoder (the gradients of its convolutions, bias adds, ReLUs,
    # sub-pixel output, slices and gathers, and the shape arithmetic of broadcasting)
    "AddN", "BiasAddGrad", "BroadcastGradientArgs", "ConcatOffset", "Conv2DBackpropFilter",
    "DynamicStitch", "FloorMod", "Prod", "ReluGrad", "ShapeN", "Size", "SpaceToDepth",
    "StridedSliceGrad", "UnsortedSegmentSum",
    # denoise's refinement: the same through the noise model (the gradients of its transposes,
    # square roots and the stacked log-sum-exp of the outlier mixture); reconstruct's is
    # in-painting's with every pixel known
    "InvertPermutation", "SqrtGrad", "Unpack",
    # upscale: the block means of an image and their gradient, the projection's division by a
    # block's room (0 where no pixel can move), the size check, and the branch on the factor
    # (14x14 or 7x7) and on whether any label is left to Bayes' rule
    "AvgPool", "AvgPoolGrad", "DivNoNan", "Any", "If",
})
# The saver's own ops: allowed only in the functions that saver_def names (checkpoint save and
# restore, which the loader runs to restore the variables), never in a served function.
SAVER_OPS = frozenset({
    "AssignVariableOp", "DisableCopyOnRead", "MergeV2Checkpoints", "RestoreV2", "SaveV2",
    "Select", "ShardedFilename", "StaticRegexFullMatch", "StringJoin",
})
# Ops that must never be served, with why (any other op outside the lists above is refused too).
_PYTHON = "runs Python, which TF Serving does not have"
_FILES = "touches the server's files"
FORBIDDEN_OPS = {
    "PyFunc": _PYTHON, "PyFuncStateless": _PYTHON, "EagerPyFunc": _PYTHON,
    "Print": "writes to the server's log on every request", "PrintV2": "writes to the server's "
    "log on every request (tf.print)",
    "ReadFile": _FILES, "WriteFile": _FILES, "MatchingFiles": _FILES,
    "WholeFileReaderV2": _FILES, "TFRecordReaderV2": _FILES, "TextLineReaderV2": _FILES,
    "FixedLengthRecordReaderV2": _FILES, "CreateSummaryFileWriter": _FILES,
    "SaveV2": _FILES + " (outside the saver)", "RestoreV2": _FILES + " (outside the saver)",
    "MergeV2Checkpoints": _FILES + " (outside the saver)",
}


class CheckError(ValueError):
    """A version failed the check; `problems` lists every problem found, one line each."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.path, self.problems = Path(path), list(problems)
        super().__init__(f"{path} failed the serving check ({len(problems)} problem(s)):\n"
                         + "\n".join(f"  - {p}" for p in problems))


def check_version(path: str | os.PathLike) -> list[str]:
    """Checks a version directory `<base>/<integer>` as TF Serving would load it and returns one
    line per check passed; raises CheckError listing every problem found. Checks the layout and
    assets.extra files, the signatures in saved_model.pb against cvae.serving.contract.SIGNATURES, every
    op against ALLOWED_OPS, and a load in a fresh process without cvae, TFP or Keras that runs
    each signature and replays every warm-up request."""
    path = Path(path)
    problems, report = [], []
    layout_problems, config = _check_layout(path)
    problems += layout_problems
    latent_dim = config.model.latent_dim if config is not None else None
    # A model of metadata fields follows the contract its fields make.
    signatures = signatures_for(config.model) if config is not None else SIGNATURES
    if not layout_problems:
        report.append(f"layout: {path} is version {int(path.name)}: saved_model.pb, variables/, "
                      f"assets.extra/ (config.json, "
                      f"{'fields.json' if config.model.fields else 'classes.json'}, "
                      f"metrics.json, {WARMUP_FILE})")
    meta_graph, pb_problems = _read_meta_graph(path)
    problems += pb_problems
    if meta_graph is not None:
        signature_problems = _check_signatures(meta_graph, latent_dim, signatures)
        problems += signature_problems
        if not signature_problems:
            report.append(f"signatures: {', '.join(signatures)} as the contract says (method "
                          f"{PREDICT_METHOD}, latent size {latent_dim})")
        op_problems, op_line = _check_ops(meta_graph)
        problems += op_problems
        if not op_problems:
            report.append(op_line)
        served_problems, served_lines = _check_served(path, latent_dim, signatures)
        problems += served_problems
        report += served_lines
    if problems:
        raise CheckError(path, problems)
    return report


def _check_layout(path: Path) -> tuple[list[str], Config | None]:
    """Problems with the files TF Serving and this project expect, and the config.json it
    records (None if it cannot be read)."""
    problems = []
    if not VERSION_NAME.fullmatch(path.name):
        problems.append(f"{path}: the version directory's name {path.name!r} is not an integer; "
                        "TF Serving only loads <base>/<integer>")
    if not path.is_dir():
        return problems + [f"{path}: no such directory"], None
    if not (path / "saved_model.pb").is_file():
        problems.append("saved_model.pb is missing")
    variables = path / "variables"
    if not (variables / "variables.index").is_file():
        problems.append("variables/variables.index is missing")
    shards = sorted(variables.glob("variables.data-*-of-*")) if variables.is_dir() else []
    if not shards:
        problems.append("variables/variables.data-* is missing")
    for shard in shards:
        match = re.fullmatch(r"variables\.data-(\d+)-of-(\d+)", shard.name)
        total = int(match.group(2)) if match else 0
        expected = {f"variables.data-{i:05d}-of-{total:05d}" for i in range(total)}
        missing = sorted(expected - {s.name for s in shards})
        if missing:
            problems.append(f"variables/{missing[0]} is missing ({len(missing)} of {total} "
                            "shards)")
            break
    extra = path / ASSETS_EXTRA
    config = None
    try:
        config = Config.from_json((extra / "config.json").read_text())
    except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        problems.append(f"{ASSETS_EXTRA}/config.json: {e}")
    if config is not None and config.model.fields:  # a model of metadata fields
        try:
            if json.loads((extra / "fields.json").read_text()) != list(config.model.fields):
                problems.append(f"{ASSETS_EXTRA}/fields.json: not the fields config.json "
                                f"records")
        except (OSError, ValueError) as e:
            problems.append(f"{ASSETS_EXTRA}/fields.json: {e}")
    else:
        problems += _check_classes(extra)
    try:
        if not isinstance(json.loads((extra / "metrics.json").read_text()), dict):
            problems.append(f"{ASSETS_EXTRA}/metrics.json: expected a JSON object")
    except (OSError, ValueError) as e:
        problems.append(f"{ASSETS_EXTRA}/metrics.json: {e}")
    if not (extra / WARMUP_FILE).is_file():
        problems.append(f"{ASSETS_EXTRA}/{WARMUP_FILE} is missing (TF Serving would serve the "
                        "first requests cold)")
    return problems, config


def _check_classes(extra: Path) -> list[str]:
    """Problems with a Fashion-MNIST model's classes.json."""
    try:
        classes = json.loads((extra / "classes.json").read_text())
    except (OSError, ValueError) as e:
        return [f"{ASSETS_EXTRA}/classes.json: {e}"]
    if not (isinstance(classes, list) and len(classes) == NUM_CLASSES
            and all(isinstance(c, str) for c in classes)):
        return [f"{ASSETS_EXTRA}/classes.json: expected a list of {NUM_CLASSES} class names"]
    return []


def _read_meta_graph(path: Path):
    """The MetaGraphDef tagged "serve" in saved_model.pb (None if there is none), and problems."""
    pb = path / "saved_model.pb"
    if not pb.is_file():
        return None, []  # reported by the layout check
    try:
        saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    except DecodeError as e:
        return None, [f"saved_model.pb is not a SavedModel proto ({e})"]
    served = [m for m in saved_model.meta_graphs if SERVE_TAG in m.meta_info_def.tags]
    if len(served) != 1:
        return None, [f"saved_model.pb has {len(served)} MetaGraphs tagged {SERVE_TAG!r}, "
                      "TF Serving needs exactly one"]
    return served[0], []


def _shape(tensor_info) -> list[int | None] | None:
    """A TensorInfo's shape with None for unknown sizes; None if even the rank is unknown."""
    if tensor_info.tensor_shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in tensor_info.tensor_shape.dim]


def _dtype(tensor_info) -> str:
    """A TensorInfo's dtype name, e.g. "int32"."""
    try:
        return tf.as_dtype(tensor_info.dtype).name
    except TypeError:
        return f"invalid dtype {tensor_info.dtype}"


def _check_signatures(meta_graph, latent_dim: int | None,
                      signatures: dict = SIGNATURES) -> list[str]:
    """Problems with the SignatureDefs TF Serving reads, against the contract `signatures`
    (cvae.serving.contract.SIGNATURES, or a model of fields' own)."""
    problems = []
    found = {k: v for k, v in meta_graph.signature_def.items() if k != INIT_OP_SIGNATURE}
    if sorted(found) != sorted(signatures):
        missing = sorted(set(signatures) - set(found))
        extra = sorted(set(found) - set(signatures))
        problems.append(f"saved_model.pb has signatures {sorted(found)}: missing {missing}, "
                        f"unexpected {extra}")
    for name, contract in signatures.items():
        if name not in found:
            continue
        signature = found[name]
        if signature.method_name != PREDICT_METHOD:
            problems.append(f"signature {name}: method_name is {signature.method_name!r}, not "
                            f"{PREDICT_METHOD!r}")
        for kind in ("inputs", "outputs"):
            infos = getattr(signature, kind)
            if sorted(infos) != sorted(contract[kind]):
                problems.append(f"signature {name}: {kind} are {sorted(infos)}, the contract "
                                f"says {sorted(contract[kind])}")
            for key, tensor in contract[kind].items():
                if key not in infos:
                    continue
                want_shape = tensor.resolved_shape(latent_dim)
                got_dtype, got_shape = _dtype(infos[key]), _shape(infos[key])
                shape_ok = got_shape is not None and len(got_shape) == len(want_shape) and all(
                    w == g or (w is None and d == D) for w, g, d in
                    zip(want_shape, got_shape, tensor.shape))
                if got_dtype != tensor.dtype or not shape_ok:
                    shown = "?" if got_shape is None else ", ".join(
                        "?" if g is None else str(g) for g in got_shape)
                    problems.append(
                        f"signature {name}: {kind[:-1]} {key} is {got_dtype} [{shown}], the "
                        f"contract says {tensor.describe()}"
                        + (f" with D = {latent_dim}" if D in tensor.shape and latent_dim else ""))
    return problems


def _called_functions(node) -> set[str]:
    """Names of the functions a node calls (attributes such as f, body, cond, then_branch)."""
    names = set()
    for value in node.attr.values():
        if value.HasField("func"):
            names.add(value.func.name)
        names.update(f.name for f in value.list.func)
    return names


def _saver_functions(meta_graph) -> set[str]:
    """The functions the saver_def's save and restore nodes call, with everything they call."""
    graph = meta_graph.graph_def
    saver = meta_graph.saver_def
    roots = {saver.save_tensor_name.split(":")[0], saver.restore_op_name.split(":")[0]} - {""}
    library = {f.signature.name: f for f in graph.library.function}
    todo = [name for node in graph.node if node.name in roots for name in _called_functions(node)]
    found = set()
    while todo:
        name = todo.pop()
        if name in found or name not in library:
            continue
        found.add(name)
        todo += [callee for node in library[name].node_def for callee in _called_functions(node)]
    return found


def _check_ops(meta_graph) -> tuple[list[str], str]:
    """Problems with the op types in the graph and its function library, and a report line."""
    graph = meta_graph.graph_def
    saver = _saver_functions(meta_graph)
    places: dict[str, set[str]] = {}  # op type -> where it is
    for node in graph.node:
        places.setdefault(node.op, set()).add("the top-level graph")
    for function in graph.library.function:
        for node in function.node_def:
            places.setdefault(node.op, set()).add(f"function {function.signature.name}")
    problems = []
    for op, where in sorted(places.items()):
        outside_saver = sorted(w for w in where if w.removeprefix("function ") not in saver)
        if op in ALLOWED_OPS or (op in SAVER_OPS and not outside_saver):
            continue
        shown = sorted(outside_saver or where)
        listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
        reason = FORBIDDEN_OPS.get(op, "not in cvae.serving.check.ALLOWED_OPS (reviewed TensorFlow core "
                                       "ops only)")
        problems.append(f"op {op} in {listed}: {reason}")
    line = (f"ops: {len(places)} op types across the top-level graph and its "
            f"{len(graph.library.function)} functions, all allowed (checkpoint ops only in the "
            f"saver's {len(saver)} functions)")
    return problems, line


def _contract_json(latent_dim: int | None, signatures: dict = SIGNATURES) -> dict:
    """SIGNATURES for the fresh process, which cannot import cvae: shapes with "N" for the batch
    and the latent size filled in ("D" when config.json could not tell it)."""
    def render(tensor):
        shape = [N if d == N else (latent_dim or D) if d == D else d for d in tensor.shape]
        return {"dtype": tensor.dtype, "shape": shape, "value_range": tensor.value_range,
                "values": tensor.values}

    return {name: {kind: {key: render(t) for key, t in contract[kind].items()}
                   for kind in ("inputs", "outputs")}
            for name, contract in signatures.items()}


def _check_served(path: Path, latent_dim: int | None,
                  signatures: dict = SIGNATURES) -> tuple[list[str], list[str]]:
    """Problems and report lines from `_served_check.py`, run on `path` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        contract = Path(tmp) / "contract.json"
        contract.write_text(json.dumps(_contract_json(latent_dim, signatures)))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        try:
            # -P: the script's folder (cvae/) stays off sys.path, so its modules cannot shadow
            # anything TensorFlow imports.
            result = subprocess.run(
                [sys.executable, "-P", str(SERVED_CHECK), str(path), str(contract)],
                capture_output=True, text=True, env=env, timeout=SERVED_CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            return [f"fresh-process load: no answer within {SERVED_CHECK_TIMEOUT} s"], []
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        return [f"fresh-process load: {SERVED_CHECK.name} failed (exit {result.returncode}): "
                f"{tail}"], []
    return answer["problems"], answer["report"]
