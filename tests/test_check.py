"""cvae.serving.check and `pipelines.export --check`: a fresh export passes, and each kind of damage to a
copy of it is found and named."""

import shutil

import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

from cvae.serving import check
from cvae.serving.contract import SIGNATURES, WARMUP_BATCH_SIZES
from conftest import run_python

WARMUP = "assets.extra/tf_serving_warmup_requests"


def _copy(trained, tmp_path, name="1"):
    """A copy of the fixture's export at <tmp>/cvae/<name>, to break."""
    return shutil.copytree(trained["export"], tmp_path / "cvae" / name)


def _problems(path) -> list[str]:
    with pytest.raises(check.CheckError) as error:
        check.check_version(path)
    assert str(error.value).startswith(f"{path} failed the serving check")
    for problem in error.value.problems:
        assert f"  - {problem}" in str(error.value)  # every problem is in the message
    return error.value.problems


def _has(problems, *parts) -> bool:
    return any(all(part in p for part in parts) for p in problems)


def _read_logs(path) -> list:
    records = tf.data.TFRecordDataset(str(path / WARMUP))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]


def _write_logs(path, logs) -> None:
    with tf.io.TFRecordWriter(str(path / WARMUP)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def _edit_saved_model(path, edit) -> None:
    pb = path / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    edit(proto.meta_graphs[0])
    pb.write_bytes(proto.SerializeToString())


def test_a_fresh_export_passes(trained):
    report = check.check_version(trained["export"])
    assert [line.split(":")[0] for line in report] == [
        "layout", "signatures", "ops", "load", "run by tensor names", "warm-up"]
    n = len(SIGNATURES) * len(WARMUP_BATCH_SIZES)
    assert report[-1].startswith(f"warm-up: {n} records replayed")
    assert "serving_default, decode, encode, reconstruct, restyle" in report[4]


def test_a_missing_variables_index_is_named_and_the_load_fails(trained, tmp_path):
    path = _copy(trained, tmp_path)
    (path / "variables" / "variables.index").unlink()
    problems = _problems(path)
    assert "variables/variables.index is missing" in problems
    assert _has(problems, "TF1 loader (tag 'serve')")  # and the fresh process could not load it


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_a_missing_or_corrupt_warmup_file_is_named(trained, tmp_path, damage):
    path = _copy(trained, tmp_path)
    warmup = path / WARMUP
    if damage == "missing":
        warmup.unlink()
    elif damage == "garbage":
        warmup.write_bytes(b"these bytes are not a TFRecord file")
    else:
        warmup.write_bytes(warmup.read_bytes()[:-7])
    problems = _problems(path)
    if damage == "missing":
        assert problems == [f"{WARMUP} is missing (TF Serving would serve the first requests "
                            "cold)"]
    else:
        assert _has(problems, WARMUP, "not a valid TFRecord file")


def test_wrong_warmup_requests_are_named(trained, tmp_path):
    path = _copy(trained, tmp_path)
    logs = _read_logs(path)
    assert [log.predict_log.request.model_spec.signature_name for log in logs[:2]] == [
        "serving_default", "decode"]
    logs[0].predict_log.request.model_spec.signature_name = "generate"
    label = logs[1].predict_log.request.inputs["label"]
    label.CopyFrom(tf.make_tensor_proto(tf.make_ndarray(label).astype("int64")))
    del logs[2].predict_log.request.inputs["images"]  # an encode request without its images
    logs.append(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(
        request=classification_pb2.ClassificationRequest())))
    _write_logs(path, logs)
    problems = _problems(path)
    assert _has(problems, f"{WARMUP} record 0 (generate)", "signature 'generate' not found")
    assert _has(problems, f"{WARMUP} record 1 (decode)",
                "input label is int64, the signature takes int32")
    assert _has(problems, f"{WARMUP} record 2 (encode)", "inputs ['label'] do not match")
    assert _has(problems, f"{WARMUP} record {len(logs) - 1}", "classify_log")
    assert len(problems) == 4, problems  # the other records still pass


def test_a_warmup_file_must_cover_every_signature(trained, tmp_path):
    path = _copy(trained, tmp_path)
    logs = _read_logs(path)
    _write_logs(path, [log for log in logs
                       if log.predict_log.request.model_spec.signature_name == "restyle"])
    problems = _problems(path)
    assert problems == [f"{WARMUP}: no record that runs signature(s) serving_default, decode, "
                        "encode, reconstruct, inpaint, denoise, upscale, classify"]


def test_a_version_directory_must_be_an_integer(trained, tmp_path):
    path = _copy(trained, tmp_path, name="latest")
    assert _problems(path) == [
        f"{path}: the version directory's name 'latest' is not an integer; TF Serving only "
        "loads <base>/<integer>"]


def test_a_renamed_signature_and_a_wrong_dtype_are_named(trained, tmp_path):
    path = _copy(trained, tmp_path)

    def break_signatures(meta_graph):
        signatures = meta_graph.signature_def
        signatures["decoder"].CopyFrom(signatures["decode"])
        del signatures["decode"]
        signatures["encode"].inputs["label"].dtype = types_pb2.DT_INT64

    _edit_saved_model(path, break_signatures)
    problems = _problems(path)
    assert _has(problems, "missing ['decode'], unexpected ['decoder']")
    assert "signature encode: input label is int64 [?], the contract says int32 [N]" in problems
    # What TF Serving would then do with the warm-up requests, found by the fresh process:
    assert _has(problems, "(decode): signature 'decode' not found")
    assert _has(problems, "(encode): input label is int32, the signature takes int64")


def test_a_wrong_method_name_is_named(trained, tmp_path):
    path = _copy(trained, tmp_path)

    def classify(meta_graph):
        meta_graph.signature_def["restyle"].method_name = "tensorflow/serving/classify"

    _edit_saved_model(path, classify)
    assert _problems(path) == ["signature restyle: method_name is 'tensorflow/serving/classify', "
                               "not 'tensorflow/serving/predict'"]


class _Unservable(tf.Module):
    """Functions with ops TF Serving must not run: Python, logging, file reads, variable writes."""

    def __init__(self):
        super().__init__()
        self.last = tf.Variable(0, dtype=tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="label")])
    def python_and_print(self, label):
        tf.print("label", label)
        return {"images": tf.py_function(lambda x: tf.cast(x, tf.float32), [label], tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="path")])
    def read(self, path):
        return {"images": tf.strings.length(tf.io.read_file(path))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="label")])
    def remember(self, label):
        self.last.assign(label[0])
        return {"images": tf.cast(label, tf.float32)}


def test_python_print_file_and_variable_writing_ops_are_named(tmp_path):
    module = _Unservable()
    path = tmp_path / "cvae" / "1"
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.python_and_print, "decode": module.read,
        "encode": module.remember})
    problems = _problems(path)
    assert _has(problems, "op EagerPyFunc in function __inference_python_and_print_",
                "runs Python, which TF Serving does not have")
    assert _has(problems, "op PrintV2 in function __inference_python_and_print_", "tf.print")
    assert _has(problems, "op ReadFile in function __inference_read_",
                "touches the server's files")
    # AssignVariableOp is allowed in the saver's restore function only.
    assert _has(problems, "op AssignVariableOp in function __inference_remember_",
                "not in cvae.serving.check.ALLOWED_OPS")
    assert not _has(problems, "__inference__traced_restore")
    assert f"{check.ASSETS_EXTRA}/config.json" in " ".join(problems)  # and the rest is missing


def test_the_command_line_check(trained, tmp_path):
    ok = run_python("-m", "pipelines.export", "--check", str(trained["export"]))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == f"ok: {trained['export']} passed the serving check"
    assert f"warm-up: {2 * len(SIGNATURES)} records replayed" in ok.stdout

    broken = _copy(trained, tmp_path)
    (broken / "variables" / "variables.index").unlink()
    (broken / WARMUP).unlink()
    failed = run_python("-m", "pipelines.export", "--check", str(broken))
    assert failed.returncode == 2 and failed.stdout == ""
    assert f"error: {broken} failed the serving check" in failed.stderr
    assert "  - variables/variables.index is missing" in failed.stderr
    assert f"  - {WARMUP} is missing" in failed.stderr
    assert "Traceback" not in failed.stderr


RUN_ONLY = ("--model-dir, --sampler-from and the settings (--guidance, --sampling, "
            "--sampling-components, --temperature, --classify-samples, "
            "--classify-pixel-outlier, --inpaint-iterations, --inpaint-refine-steps, "
            "--denoise-refine-steps, --reconstruct-refine-steps, "
            "--reconstruct-pixel-outlier) go with --run, not --check")


@pytest.mark.parametrize("extra, message", [
    (["--run", "runs/x"], "argument --run: not allowed with argument --check"),
    (["--model-dir", "saved_models/cvae"], RUN_ONLY),
    (["--guidance", "2"], RUN_ONLY),
    (["--sampling", "prior"], RUN_ONLY),
    (["--sampling-components", "2"], RUN_ONLY),
    (["--temperature", "0.5"], RUN_ONLY),
    (["--classify-samples", "4"], RUN_ONLY),
    (["--inpaint-iterations", "2"], RUN_ONLY),
    (["--inpaint-refine-steps", "5"], RUN_ONLY),
    (["--sampler-from", "saved_models/cvae/1"], RUN_ONLY),
])
def test_the_command_line_refuses_check_with_run_options(extra, message):
    result = run_python("-m", "pipelines.export", "--check", "saved_models/cvae/1", *extra)
    assert result.returncode == 2 and message in result.stderr
