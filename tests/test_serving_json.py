"""TF Serving's REST predict JSON (cvae.serving.rest_json) against golden files of the shipped model.

The golden requests and responses in tests/golden/ were written by tests/golden/make_golden.py,
which builds the JSON without cvae.serving_json; re-run it when the shipped model changes.
"""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from cvae.serving import rest_json as sj
from conftest import REPO, SHIPPED, run_python

GOLDEN = REPO / "tests" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
SIGNATURES = MANIFEST["signatures"]
FORMATS = ["row", "columnar"]


def _golden(signature, kind, part):
    return json.loads((GOLDEN / f"{signature}.{kind}.{part}.json").read_text())


@pytest.fixture(scope="module")
def shipped():
    """The model the golden files were made from: its loaded signatures and SignatureDefs."""
    path = REPO / MANIFEST["model"]
    if path != SHIPPED:
        pytest.fail(f"tests/golden/ was made from {path}, but saved_models/cvae/SHIPPED names "
                    f"{SHIPPED}; re-run `.venv/bin/python tests/golden/make_golden.py` and "
                    f"commit its files")
    fingerprint = tf.saved_model.experimental.read_fingerprint(str(path)).singleprint()
    if fingerprint != MANIFEST["fingerprint"]:
        pytest.fail(f"{path} is not the model tests/golden/ was made from; re-run "
                    f"`.venv/bin/python tests/golden/make_golden.py` and commit its files")
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    loaded = tf.saved_model.load(str(path))
    return {"signatures": loaded.signatures, "loaded": loaded,
            "signature_defs": proto.meta_graphs[0].signature_def}


def _assert_json_close(actual, expected, tolerance, where="response"):
    """The same JSON structure (keys, nesting, list lengths, value kinds) with numbers equal to
    within `tolerance` (absolute and relative)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), \
            f"{where}: keys {sorted(actual) if isinstance(actual, dict) else actual!r}"
        for key in expected:
            _assert_json_close(actual[key], expected[key], tolerance, f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), \
            f"{where}: expected a list of {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_json_close(a, e, tolerance, f"{where}[{i}]")
    elif isinstance(expected, float):
        # TF Serving writes every float output as a decimal (0.0, not 0)
        assert isinstance(actual, float), f"{where}: {actual!r} is not a decimal number"
        assert math.isclose(actual, expected, rel_tol=tolerance, abs_tol=tolerance), \
            f"{where}: {actual} != {expected}"
    else:
        assert actual == expected and type(actual) is type(expected), f"{where}: {actual!r}"


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("signature", SIGNATURES)
def test_golden_request_gives_golden_response(shipped, signature, kind):
    request = (GOLDEN / f"{signature}.{kind}.request.json").read_text()
    name, function = sj.select_signature(request, shipped["signatures"])
    assert name == signature
    tensors = sj.request_to_tensors(request, function)
    specs = sj.input_specs(function)
    assert sorted(tensors) == sorted(specs)
    for input_name, array in tensors.items():
        assert array.dtype == specs[input_name].dtype.as_numpy_dtype and array.shape[0] == 2
    outputs = function(**{k: tf.constant(v) for k, v in tensors.items()})
    response = sj.outputs_to_response(outputs, row_format=sj.is_row_format(request))
    # Through JSON text and back, as a client would read it.
    _assert_json_close(json.loads(sj.dumps(response)), _golden(signature, kind, "response"),
                       MANIFEST["tolerances"].get(signature, MANIFEST["tolerance"]))


@pytest.mark.parametrize("signature", SIGNATURES)
def test_row_and_columnar_forms_give_the_same_tensors(shipped, signature):
    function = shipped["signatures"][signature]
    row = sj.request_to_tensors(_golden(signature, "row", "request"), function)
    columnar = sj.request_to_tensors(_golden(signature, "columnar", "request"), function)
    # The SignatureDef in saved_model.pb (what TF Serving reads) describes the same inputs.
    from_proto = sj.request_to_tensors(_golden(signature, "row", "request"),
                                       shipped["signature_defs"][signature])
    assert sorted(row) == sorted(columnar) == sorted(from_proto)
    for name in row:
        for other in (columnar[name], from_proto[name]):
            assert other.dtype == row[name].dtype
            np.testing.assert_array_equal(other, row[name])
    assert sj.input_specs(function) == sj.input_specs(shipped["signature_defs"][signature])
    assert sj.output_names(function) == sj.output_names(shipped["signature_defs"][signature])
    # And the request builders give back the same tensors in either format.
    for build in (sj.row_request, sj.columnar_request):
        again = sj.request_to_tensors(sj.dumps(build(row, signature)), function)
        for name in row:
            np.testing.assert_array_equal(again[name], row[name])


def test_golden_files_cover_every_signature_of_the_shipped_model(shipped):
    """A signature the shipped model serves has its golden request and response (a version
    exported with a new signature needs make_golden.py run again, which writes them)."""
    assert sorted(SIGNATURES) == sorted(shipped["signatures"])
    for signature in SIGNATURES:
        for kind in FORMATS:
            for part in ("request", "response"):
                assert (GOLDEN / f"{signature}.{kind}.{part}.json").is_file()


def test_make_golden_writes_every_signature_of_a_fresh_export(trained, tmp_path):
    """make_golden.py on an export of this project's code (which has `upscale`): files for
    every signature, and upscale's golden requests give its golden responses (14x14 inputs, the
    second row's label -1 answered with the class the model chose)."""
    out = tmp_path / "golden"
    out.mkdir()
    run_python(str(GOLDEN / "make_golden.py"), "--model", str(trained["export"]), "--out",
               str(out), check=True)
    manifest = json.loads((out / "manifest.json").read_text())
    loaded = tf.saved_model.load(str(trained["export"]))
    assert manifest["signatures"] == sorted(loaded.signatures) and "upscale" in manifest[
        "signatures"]
    assert manifest["tolerances"]["upscale"] == 1e-3
    for kind in FORMATS:
        request = (out / f"upscale.{kind}.request.json").read_text()
        name, function = sj.select_signature(request, loaded.signatures)
        tensors = sj.request_to_tensors(request, function)
        assert name == "upscale" and tensors["images"].shape == (2, 14, 14, 1)
        np.testing.assert_array_equal(tensors["label"], [7, -1])
        outputs = function(**{k: tf.constant(v) for k, v in tensors.items()})
        response = sj.outputs_to_response(outputs, row_format=sj.is_row_format(request))
        expected = json.loads((out / f"upscale.{kind}.response.json").read_text())
        _assert_json_close(json.loads(sj.dumps(response)), expected, 1e-3)
        labels = ([row["label"] for row in expected["predictions"]] if kind == "row"
                  else expected["outputs"]["label"])
        assert labels[0] == 7 and 0 <= labels[1] <= 9


def test_golden_rows_are_objects_and_columns_are_objects_of_whole_tensors():
    row = _golden("serving_default", "row", "request")
    assert row == {"signature_name": "serving_default",
                   "instances": [{"label": 7, "seed": 0}, {"label": 3, "seed": 1}]}
    assert _golden("serving_default", "columnar", "request")["inputs"] == {
        "label": [7, 3], "seed": [0, 1]}
    predictions = _golden("serving_default", "row", "response")["predictions"]
    assert [sorted(p) for p in predictions] == [["images", "z"]] * 2
    assert np.array(predictions[0]["images"]).shape == (28, 28, 1)
    # One output: bare rows (row format) and a bare tensor (columnar format).
    assert np.array(_golden("decode", "row", "response")["predictions"]).shape == (2, 28, 28, 1)
    assert np.array(_golden("decode", "columnar", "response")["outputs"]).shape == (2, 28, 28, 1)


def _z(value=0.0):
    return [value] * 16


_IMAGE = [[[0.0]] * 28] * 28
BAD_REQUESTS = [
    # (signature, request, the message it must give)
    ("decode", {"instances": [{"z": _z(), "label": 1, "extra": 1}]},
     "instances[0]: unknown input 'extra'; this signature takes label, z"),
    ("serving_default", {"instances": [{"label": 7}]},
     "instances[0]: missing input 'seed'; this signature takes label, seed"),
    ("serving_default", {"inputs": {"label": [7]}},
     "'inputs': missing input 'seed'; this signature takes label, seed"),
    ("serving_default", {"inputs": {"label": [7], "seed": [0], "sed": [1]}},
     "'inputs': unknown input 'sed'"),
    ("serving_default", {"instances": [{"label": 7, "seed": 0}],
                         "inputs": {"label": [7], "seed": [0]}},
     "request has both 'instances' (row format) and 'inputs' (columnar format)"),
    ("serving_default", {"signature_name": "serving_default"},
     "request has neither 'instances' (row format) nor 'inputs' (columnar format)"),
    ("serving_default", {"instances": [{"label": 7, "seed": 0}], "model": "cvae"},
     "unknown key 'model' in the request"),
    ("encode", {"instances": [{"images": _IMAGE, "label": 1},
                              {"images": _IMAGE[:27], "label": 1}]},
     'instances[1]["images"] has shape [27, 28, 1] but instances[0]["images"] has [28, 28, 1]: '
     "the rows are ragged"),
    ("encode", {"inputs": {"images": [_IMAGE[:5] + [[[0.0]] * 27] + _IMAGE[6:]], "label": [1]}},
     'inputs["images"][0][5] has 27 items but inputs["images"][0][0] has 28: '
     "the nested lists are ragged"),
    ("encode", {"inputs": {"images": [_IMAGE[:3] + [[0.0] * 28] + _IMAGE[4:]], "label": [1]}},
     'inputs["images"][0][3][0] is a single value where inputs["images"][0][0][0] is a list '
     "of 1: the nested lists are ragged"),
    ("serving_default", {"instances": [{"label": 7.0, "seed": 0}]},
     'instances[0]["label"]: 7.0 is a decimal number, not int32 (a whole number)'),
    ("serving_default", {"instances": [{"label": "Dress", "seed": 0}]},
     'instances[0]["label"]: "Dress" is a string, not int32 (a whole number)'),
    ("serving_default", {"instances": [{"label": True, "seed": 0}]},
     'instances[0]["label"]: true is true/false, not int32 (a whole number)'),
    ("serving_default", {"instances": [{"label": 7, "seed": 2**31}]},
     'instances[0]["seed"]: 2147483648 is out of the int32 range -2147483648..2147483647'),
    ("serving_default", {"inputs": {"label": [7, 3.5], "seed": [0, 1]}},
     'inputs["label"][1]: 3.5 is a decimal number, not int32 (a whole number)'),
    ("encode", {"instances": [{"images": [[[0.5]] * 28] * 27 + [[[0.5]] * 27 + [[None]]],
                               "label": 1}]},
     'instances[0]["images"][27][27][0]: null where float32 (a number) was expected'),
    ("encode", {"instances": [{"images": [[["0.5"]] * 28] * 28, "label": 1}]},
     'instances[0]["images"][0][0][0]: "0.5" is a string, not float32 (a number)'),
    ("decode", {"instances": [{"z": _z(2**25), "label": 1}]},
     'instances[0]["z"][0]: 33554432 cannot be a float32 without loss of precision'),
    ("decode", {"instances": [{"z": _z(1e39), "label": 1}]},
     'instances[0]["z"][0]: 1e+39 is beyond the float32 range'),
    ("serving_default", {"inputs": {"label": [7, 3], "seed": [0]}},
     "inputs have different batch sizes (dimension 0): label has 2, seed has 1"),
    ("encode", {"instances": [{"images": [[0.0] * 28] * 28, "label": 1}]},
     "input 'images': each row must be of shape [28, 28, 1] (float32), got shape [28, 28]"),
    ("serving_default", {"instances": [{"label": [7], "seed": 0}]},
     "input 'label': each row must be a single value (int32), got shape [1]"),
    ("serving_default", {"inputs": {"label": 7, "seed": 0}},
     "input 'label' must have shape [N] (int32), got []"),
    ("decode", {"inputs": {"z": [_z()[:15]], "label": [1]}},
     "input 'z' must have shape [N, 64] (float32), got [1, 15]"),
    ("serving_default", {"instances": {"label": 7, "seed": 0}},
     "'instances' must be a list of rows, got an object"),
    ("serving_default", {"instances": []}, "'instances' is an empty list"),
    ("serving_default", {"instances": [7, 3]},
     "instances[0] is a whole number, but this signature has 2 inputs (label, seed): "
     "each row must be an object keyed by input name"),
    ("serving_default", {"instances": [{"label": 7, "seed": 0}, 3]},
     "instances[1] is a whole number but instances[0] is an object"),
    ("serving_default", {"inputs": [7, 3]},
     "'inputs' is a list, but this signature has 2 inputs (label, seed)"),
    ("serving_default", {"signature_name": 5, "instances": [{"label": 7, "seed": 0}]},
     "'signature_name' must be a string, got a whole number 5"),
    ("serving_default", '{"instances": [{"label": 7, ', "request is not valid JSON"),
    ("serving_default", "[1, 2]", "request must be a JSON object, got a list"),
    ("serving_default", b"", "request is empty"),
]


@pytest.mark.parametrize("signature,request_body,message", BAD_REQUESTS,
                         ids=[f"{i}-{m[:30]}" for i, (_, _, m) in enumerate(BAD_REQUESTS)])
def test_bad_requests_name_the_problem(shipped, signature, request_body, message):
    with pytest.raises(sj.RequestError) as error:
        sj.request_to_tensors(request_body, shipped["signatures"][signature])
    assert message in str(error.value)
    # The SignatureDef path gives the same error.
    with pytest.raises(sj.RequestError) as again:
        sj.request_to_tensors(request_body, shipped["signature_defs"][signature])
    assert str(again.value) == str(error.value)


def test_unknown_signature_lists_the_ones_there_are(shipped):
    with pytest.raises(sj.RequestError, match='serving signature name "generate" not found; '
                       f'this model has: {", ".join(sorted(SIGNATURES))}$'):
        sj.select_signature({"signature_name": "generate", "instances": [1]},
                            shipped["signatures"])
    name, _ = sj.select_signature({"instances": [1]}, shipped["signature_defs"])
    assert name == "serving_default"


def _one_input_signature():
    """A SignatureDef with one float input x [N, 2] and one output y (as saved_model.pb has)."""
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["x"].dtype = types_pb2.DT_FLOAT
    signature.inputs["x"].tensor_shape.dim.add(size=-1)
    signature.inputs["x"].tensor_shape.dim.add(size=2)
    signature.outputs["y"].dtype = types_pb2.DT_FLOAT
    return signature


def test_one_input_takes_bare_values_in_both_formats():
    signature = _one_input_signature()
    expected = np.array([[1, 2], [3.5, -4]], np.float32)
    for request in ({"instances": [[1, 2], [3.5, -4]]},  # whole numbers are fine for floats
                    {"instances": [{"x": [1, 2]}, {"x": [3.5, -4]}]},  # named rows too
                    {"inputs": [[1, 2], [3.5, -4]]},
                    {"inputs": {"x": [[1, 2], [3.5, -4]]}}):
        tensors = sj.request_to_tensors(request, signature)
        assert list(tensors) == ["x"] and tensors["x"].dtype == np.float32
        np.testing.assert_array_equal(tensors["x"], expected)
    assert sj.row_request({"x": expected}) == {"instances": [[1.0, 2.0], [3.5, -4.0]]}
    assert sj.columnar_request({"x": expected}, "s") == {"signature_name": "s",
                                                         "inputs": [[1.0, 2.0], [3.5, -4.0]]}
    # NaN and Infinity are floats in TF Serving's JSON.
    tensors = sj.request_to_tensors('{"inputs": [[NaN, Infinity], [-Infinity, 0]]}', signature)
    assert np.isnan(tensors["x"][0, 0]) and tensors["x"][0, 1] == np.inf
    with pytest.raises(sj.RequestError, match=r"instances\[1\] is an object but instances\[0\] "
                                              r"is a list"):
        sj.request_to_tensors({"instances": [[1, 2], {"x": [1, 2]}]}, signature)


def test_check_inputs_for_tensors_that_arrive_as_arrays(shipped):
    decode = shipped["signatures"]["decode"]
    z, label = np.zeros((2, 64), np.float32), np.array([1, 2], np.int32)
    checked = sj.check_inputs({"z": z, "label": label}, decode)
    assert checked["z"] is z and checked["label"] is label
    for arrays, message in (
            ({"z": z, "label": label.astype(np.float32)}, "input 'label' must be int32, got float"),
            ({"z": z, "label": label.astype(np.int64)}, "input 'label' must be int32, got int64"),
            ({"z": z}, "request: missing input 'label'"),
            ({"z": z, "label": label, "seed": label}, "request: unknown input 'seed'"),
            ({"z": z[:, :3], "label": label}, "input 'z' must have shape [N, 64]"),
            ({"z": z[:1], "label": label}, "inputs have different batch sizes")):
        with pytest.raises(sj.RequestError) as error:
            sj.check_inputs(arrays, decode)
        assert message in str(error.value)


def test_outputs_to_response_in_both_formats():
    images = np.random.default_rng(0).random((3, 2, 2, 1), dtype=np.float32)
    z = np.array([[0.2, -1.5], [np.nan, np.inf], [0.0, 1e-30]], np.float32)
    row = sj.outputs_to_response({"z": z, "images": tf.constant(images)}, row_format=True)
    assert list(row) == ["predictions"] and len(row["predictions"]) == 3
    assert list(row["predictions"][0]) == ["images", "z"]  # sorted by name
    assert row["predictions"][0]["z"] == [0.2, -1.5]  # float32 0.2 written as 0.2, not 0.2000..
    columnar = sj.outputs_to_response({"z": z, "images": images}, row_format=False)
    assert list(columnar) == ["outputs"] and sorted(columnar["outputs"]) == ["images", "z"]
    text = sj.dumps(row)
    assert '"z":[NaN,Infinity]' in text  # the tokens TF Serving writes
    # Through JSON and back: bit for bit, in both formats.
    for response in (text, sj.dumps(columnar)):
        back = sj.response_to_arrays(response, {"images": tf.float32, "z": tf.float32})
        np.testing.assert_array_equal(back["images"], images)
        np.testing.assert_array_equal(back["z"], z)
    # One output: bare rows, or the bare tensor.
    for row_format, key in ((True, "predictions"), (False, "outputs")):
        bare = sj.outputs_to_response({"images": images}, row_format)[key]
        assert isinstance(bare, list) and np.array(bare).shape == images.shape
        np.testing.assert_array_equal(np.array(bare, np.float32), images)
    ints = sj.outputs_to_response({"k": np.array([1, 2], np.int32)}, True)
    assert ints == {"predictions": [1, 2]} and type(ints["predictions"][0]) is int
    with pytest.raises(ValueError, match="outputs have no common batch size"):
        sj.outputs_to_response({"images": images, "z": z[:2]}, row_format=True)


def test_response_to_arrays_errors():
    with pytest.raises(sj.ResponseError, match="server error: Servable not found"):
        sj.response_to_arrays('{ "error": "Servable not found for request: Latest(x)" }')
    with pytest.raises(sj.ResponseError, match="one unnamed output; pass dtypes"):
        sj.response_to_arrays({"predictions": [1.0, 2.0]})
    assert sj.response_to_arrays({"predictions": [1.0, 2.0]}, {"y": tf.float32})["y"].dtype \
        == np.float32
    with pytest.raises(sj.ResponseError, match=r"response has outputs \['images'\], expected"):
        sj.response_to_arrays({"outputs": {"images": [1.0]}}, {"images": "float32", "z": "float32"})
    with pytest.raises(sj.ResponseError, match=r"predictions\[1\] has outputs \['a'\]"):
        sj.response_to_arrays({"predictions": [{"a": 1, "b": 2}, {"a": 1}]})
    with pytest.raises(sj.ResponseError, match="output 'k' should hold whole numbers"):
        sj.response_to_arrays({"outputs": {"k": [1.5]}}, {"k": tf.int32})
    with pytest.raises(sj.ResponseError, match="one of 'predictions' or 'outputs'"):
        sj.response_to_arrays({"result": [1]})
    with pytest.raises(sj.ResponseError, match="response is not valid JSON"):
        sj.response_to_arrays(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ValueError, match="the row format needs inputs with the same batch size"):
        sj.row_request({"label": [1, 2], "seed": [1]})


def test_importable_without_keras_or_tfp():
    """The module runs a golden request in a process where Keras, TFP and the rest of cvae's
    training code cannot be imported (as on a serving host)."""
    code = f"""
import sys
for name in ("keras", "tf_keras", "tensorflow_probability", "cvae.model.vae", "cvae.serving.export"):
    sys.modules[name] = None
import tensorflow as tf
from cvae.serving import rest_json as sj
request = open({str(GOLDEN / "decode.columnar.request.json")!r}).read()
signature = tf.saved_model.load({str(REPO / MANIFEST["model"])!r}).signatures["decode"]
tensors = sj.request_to_tensors(request, signature)
response = sj.outputs_to_response(signature(**tensors), row_format=False)
print(len(response["outputs"]), sorted(tensors))
"""
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[0] == "2 ['label', 'z']"
