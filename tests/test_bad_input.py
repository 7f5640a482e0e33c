"""Bad input at every entry point, one test per row of the table in docs/bad-input.md (rows covered
elsewhere name that test instead; `test_every_row_names_tests_that_exist` keeps the table and
the tests in step).

A command line is run here the way `python -m pipelines.X` runs it, `cli.run(main)`, in this
process (the other test files run each entry point in fresh processes too, so the wiring is
covered there); only the rows that need a process without root's power to write anywhere run
one. Every command-line row checks the exit status, the one `error:` line and that nothing was
written (the folder's listing before and after).
"""

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import pipelines.benchmark
import pipelines.client
import pipelines.evaluate
import pipelines.export
import pipelines.generate
import pipelines.train
import pipelines.train_classifier
from cvae import cli, data
from cvae.serving import client, rest_json as serving_json
from conftest import REPO, make_idx_dir, write_idx
from fake_serving import ModelStore, grpc_server, rest_predict, rest_server

BAD_INPUT_TABLE = REPO / "docs" / "bad-input.md"
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
IDX_FILES = {"train-images": "train-images-idx3-ubyte.gz",
             "train-labels": "train-labels-idx1-ubyte.gz",
             "test-images": "t10k-images-idx3-ubyte.gz",
             "test-labels": "t10k-labels-idx1-ubyte.gz"}
LABEL_RANGE = "label out of range: labels must be in 0..9"
PIXEL_RANGE = "images must be float32 pixels in [0, 1] (scale 8-bit images by 1/255)"


# ----------------------------------------------------------------------------------- helpers


def _main(module, *args) -> tuple[int, str]:
    """(exit status, stderr) of `python -m <module> *args`, run in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            status = cli.run(lambda: module.main([str(a) for a in args]))
        except SystemExit as e:  # argparse's usage errors
            status = e.code
    return status, stderr.getvalue()


def _assert_refused(status: int, stderr: str, message: str) -> str:
    """Exit status 2 and exactly one error line, which holds `error: <message>`; returns it."""
    assert status == 2, stderr[-3000:]
    errors = _error_lines(stderr)
    assert len(errors) == 1 and f"error: {message}" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr
    return errors[0]


def _error_lines(stderr: str) -> list[str]:
    """The lines `error: ...` (cli.run) and `<prog>: error: ...` (argparse), not TensorFlow's
    own log lines."""
    return [line for line in stderr.splitlines() if re.match(r"(\S+: )?error: ", line)]


def _listing(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its size and modification time: any write shows."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# Run without root's CAP_DAC_OVERRIDE, so a read-only folder is read-only for it as for any
# user: the bounding set loses the capability, and the exec that follows drops it from the
# effective set. (A user who is not root needs nothing: the exec runs the command directly.)
_UNPRIVILEGED = """
import ctypes, os, sys
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP
            sys.exit("cannot drop CAP_DAC_OVERRIDE: " + os.strerror(ctypes.get_errno()))
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _start_unprivileged(*args, env: dict | None = None) -> subprocess.Popen:
    """Starts `python *args` in a fresh process that permission bits apply to, even as root."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", _UNPRIVILEGED, *map(str, args)], cwd=REPO,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _train_flags(tmp_path: Path) -> list:
    """Flags for a seconds-long training into tmp_path/runs and tmp_path/models (should the
    checks ever let it start); --runs-dir's value comes second."""
    return ["--runs-dir", tmp_path / "runs", "--export-dir", tmp_path / "models", "--name", "bad",
            "--recipe", "scratch",
            "--batch-size", "8", "--validation-size", "10", "--epochs", "1", "--latent-dim", "2",
            "--encoder-filters", "4", "4", "--decoder-filters", "4", "4", "--hidden-dim", "8"]


def _png(path: Path, image: np.ndarray) -> Path:
    path.write_bytes(tf.io.encode_png(image).numpy())
    return path


@pytest.fixture(scope="module")
def model_dir(trained):
    """The base path of the small trained export (version 1)."""
    return trained["export"].parent


@pytest.fixture
def broken_model(trained, tmp_path):
    """A copy of the trained export at <tmp>/cvae/1, to damage; returns the base path."""
    shutil.copytree(trained["export"], tmp_path / "cvae" / "1")
    return tmp_path / "cvae"


@pytest.fixture(scope="module")
def served(model_dir):
    """The trained export behind the TF Serving stand-ins (REST and gRPC)."""
    store = ModelStore(model_dir)
    with rest_server(store) as url, grpc_server(store) as target:
        yield {"store": store, "url": url, "grpc": target}
    store.close()


@pytest.fixture(scope="module")
def signatures(trained):
    return tf.saved_model.load(str(trained["export"])).signatures


# ---------------------------------------------------------------------------- data files


@pytest.mark.parametrize("name", list(IDX_FILES.values()), ids=list(IDX_FILES))
def test_missing_idx_file(tmp_path, name):
    folder = make_idx_dir(tmp_path / "data")
    (folder / name).unlink()
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, "--data-dir", folder, *_train_flags(tmp_path))
    _assert_refused(status, stderr, f"--data-dir='{folder}': expected the Fashion-MNIST IDX files "
                                    f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                                    f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
                                    f"missing: {name}")
    assert _listing(tmp_path) == before


def test_environment_folder_without_idx_files(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nothing"))
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, *_train_flags(tmp_path))
    _assert_refused(status, stderr, f"$FASHION_MNIST_DIR='{tmp_path / 'nothing'}': expected the "
                                    f"Fashion-MNIST IDX files")
    assert _listing(tmp_path) == before


def test_no_idx_files_anywhere_with_source_idx(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "no-debian-package"))
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, "--source", "idx", *_train_flags(tmp_path))
    _assert_refused(status, stderr, "Fashion-MNIST IDX files not found. Install them with "
                                    "`apt-get install dataset-fashion-mnist`")
    assert _listing(tmp_path) == before


def _damage(folder: Path, kind: str) -> tuple[str, str]:
    """Damages one file of a hand-made IDX folder (60 training, 20 test images); returns the
    file's name and the message that must name the damage."""
    noise = np.random.default_rng(0).integers(0, 256, (60, 28, 28))
    if kind == "truncated-gzip":
        write_idx(folder / IDX_FILES["train-images"], noise, 2051, truncate_to=2000)
        return IDX_FILES["train-images"], ("not a complete gzip file (Compressed file ended "
                                           "before the end-of-stream marker was reached)")
    if kind == "not-gzip":
        (folder / IDX_FILES["train-images"]).write_bytes(b"an HTML error page, say")
        return IDX_FILES["train-images"], "not a complete gzip file (Not a gzipped file"
    if kind == "empty":
        (folder / IDX_FILES["test-images"]).write_bytes(gzip.compress(b""))
        return IDX_FILES["test-images"], "0 bytes is shorter than the 16-byte IDX header"
    if kind == "wrong-magic":
        write_idx(folder / IDX_FILES["train-labels"], np.arange(60) % 10, 2051)
        return IDX_FILES["train-labels"], "wrong IDX magic number 2051 (expected 2049)"
    if kind == "short-body":
        header = b"".join(n.to_bytes(4, "big") for n in (2051, 60, 28, 28))
        (folder / IDX_FILES["train-images"]).write_bytes(gzip.compress(header + b"\0" * 1000))
        return IDX_FILES["train-images"], "header says 60x28x28 = 47040 values but the file " \
                                          "holds 1000"
    if kind == "images-32x32":
        write_idx(folder / IDX_FILES["train-images"], np.zeros((60, 32, 32)), 2051)
        return IDX_FILES["train-images"], "images are 32x32, expected 28x28"
    if kind == "count-mismatch":
        write_idx(folder / IDX_FILES["train-labels"], np.arange(59) % 10, 2049)
        return IDX_FILES["train-images"], (f"holds 60 images but {folder}/"
                                           f"{IDX_FILES['train-labels']} holds 59 labels")
    if kind == "label-10":
        write_idx(folder / IDX_FILES["test-labels"], np.array([0, 1, 2, 10] + [0] * 16), 2049)
        return IDX_FILES["test-labels"], "label 10 at index 3 is outside 0..9 (1 label(s) out of range)"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated-gzip", "not-gzip", "empty", "wrong-magic",
                                  "short-body", "images-32x32", "count-mismatch", "label-10"])
def test_damaged_idx_file(tmp_path, kind):
    folder = make_idx_dir(tmp_path / "data")
    name, message = _damage(folder, kind)
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, "--data-dir", folder, *_train_flags(tmp_path))
    _assert_refused(status, stderr, f"{folder / name}")
    assert message in stderr
    assert _listing(tmp_path) == before


# ------------------------------------------------------------------------ config values

CONFIG_CASES = [
    pytest.param(["--epochs", "0"], "config: epochs=0 must be >= 1", id="epochs-0"),
    pytest.param(["--learning-rate", "0"], "config: learning_rate=0.0 must be > 0",
                 id="learning-rate-0"),
    pytest.param(["--learning-rate", "-0.001"], "config: learning_rate=-0.001 must be > 0",
                 id="learning-rate-negative"),
    pytest.param(["--validation-size", "60"], "validation_size=60 must be between 1 and 59 (the "
                 "training split has 60 images)", id="validation-size-all-data"),
    pytest.param(["--validation-size", "0"], "config: validation_size=0 must be >= 1",
                 id="validation-size-0"),
    pytest.param(["--batch-size", "51"], "batch_size=51 is larger than the 50 training images",
                 id="batch-larger-than-data"),
    pytest.param(["--batch-size", "0"], "config: batch_size=0 must be >= 1", id="batch-size-0"),
    pytest.param(["--limit", "0"], "config: limit=0 must be >= 1", id="limit-0"),
    pytest.param(["--validation-size", "55", "--batch-size", "4"],
                 "sampling='class_posterior' fits 16 Gaussian(s) to each class's training codes, "
                 "but class", id="class-without-training-images"),
    pytest.param(["--sampling-components", "0"], "config: sampling_components=0 must be >= 1",
                 id="sampling-components-0"),
    pytest.param(["--likelihood", "gaussian"], "argument --likelihood: invalid choice: "
                 "'gaussian' (choose from 'discretized_logistic', 'bernoulli', "
                 "'continuous_bernoulli')", id="likelihood-unknown"),
    pytest.param(["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'",
                 id="epochs-not-an-integer"),
    pytest.param(["--beta", "-1"], "config: beta=-1.0 must be >= 0", id="beta-negative"),
    pytest.param(["--kl-warmup-steps", "-1"], "config: kl_warmup_steps=-1 must be >= 0",
                 id="kl-warmup-negative"),
    pytest.param(["--min-scale", "0"], "config: min_scale=0.0 must be > 0", id="min-scale-0"),
    pytest.param(["--hidden-dim", "0"], "config: hidden_dim=0 must be >= 1", id="hidden-dim-0"),
    pytest.param(["--encoder-filters", "8"], "config: encoder_filters=(8,) must have 2 entries",
                 id="encoder-filters-one"),
    pytest.param(["--steps-per-execution", "0"], "config: steps_per_execution=0 must be >= 1",
                 id="steps-per-execution-0"),
    pytest.param(["--name", "../elsewhere"], "config: name='../elsewhere' must be a plain "
                 "folder name", id="name-with-slash"),
    pytest.param(["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'",
                 id="strategy-unknown"),
    pytest.param(["--logical-cpus", "0"], "--logical-cpus 0 must be >= 1", id="logical-cpus-0"),
    # Counts above their bounds (cvae.limits), refused before TensorFlow loads.
    pytest.param(["--epochs", "10001"], "config: epochs=10001 must be <= 10000",
                 id="epochs-above-bound"),
    pytest.param(["--batch-size", "60001"], "config: batch_size=60001 must be <= 60000",
                 id="batch-size-above-bound"),
    pytest.param(["--limit", "60001"], "config: limit=60001 must be <= 60000",
                 id="limit-above-bound"),
    pytest.param(["--latent-dim", "513"], "config: latent_dim=513 must be <= 512",
                 id="latent-dim-above-bound"),
    pytest.param(["--hidden-dim", "4097"], "config: hidden_dim=4097 must be <= 4096",
                 id="hidden-dim-above-bound"),
    pytest.param(["--decoder-hidden", "512", "4097"],
                 "config: decoder_hidden=(512, 4097) must hold sizes <= 4096",
                 id="decoder-hidden-above-bound"),
    pytest.param(["--decoder-hidden", *["8"] * 17], f"config: decoder_hidden={(8,) * 17} "
                 f"must be at most 16 layers", id="decoder-layers-above-bound"),
    pytest.param(["--sampling-components", "101"],
                 "config: sampling_components=101 must be <= 100",
                 id="sampling-components-above-bound"),
    pytest.param(["--steps-per-execution", "10000001"],
                 "config: steps_per_execution=10000001 must be <= 10000000",
                 id="steps-per-execution-above-bound"),
    pytest.param(["--logical-cpus", "65"], "--logical-cpus 65 must be <= 64",
                 id="logical-cpus-above-bound"),
]


@pytest.mark.parametrize("flags,message", CONFIG_CASES)
def test_impossible_config(tmp_path, flags, message):
    folder = make_idx_dir(tmp_path / "data")
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, "--data-dir", folder, *_train_flags(tmp_path), *flags)
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == before  # no run directory, no export


SMALL = ["--recipe", "scratch", "--limit", "512", "--batch-size", "64", "--validation-size",
         "128", "--latent-dim", "4", "--encoder-filters", "8", "16", "--decoder-filters", "16",
         "8", "--hidden-dim", "32", "--epochs", "1"]


@pytest.mark.parametrize("init_from,message", [
    pytest.param("saved_models/cvae/10", "init_from: saved_models/cvae/10 holds 33 variables whose "
                 "shapes are not this model's 33 (another architecture or size?); --recipe scratch "
                 "trains from random weights", id="another-architecture"),
    pytest.param("saved_models/cvae", "init_from: saved_models/cvae is not an exported version "
                 "(no saved_model.pb); --recipe scratch trains from random weights",
                 id="not-an-export"),
])
def test_init_from_that_does_not_fit_is_refused_before_training(tmp_path, init_from, message):
    """The shipped recipe starts from version 10's weights: a smaller model, or a path that is
    not a version, is refused with the way to train from random weights, and nothing is
    written."""
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.train, *SMALL[2:], "--runs-dir",
                           tmp_path / "runs", "--export-dir", tmp_path / "models",
                           "--init-from", str(REPO / init_from))
    _assert_refused(status, stderr, message.replace(init_from, str(REPO / init_from)))
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("flags,message", [
    pytest.param(SMALL, "RUN already holds a run: pass --resume to continue it, or --name for a "
                 "new one", id="without-resume"),
    pytest.param(["--resume", "--latent-dim", "8"],
                 "--resume: data/model config differs from RUN/config.json",
                 id="resume-with-other-model"),
])
def test_existing_run_is_left_untouched(trained, flags, message):
    runs = trained["result"].run_dir.parent
    before = _listing(runs)
    status, stderr = _main(pipelines.train, "--runs-dir", runs, "--name", "small",
                           "--export-dir", trained["root"] / "no-export", *flags)
    _assert_refused(status, stderr, message.replace("RUN", str(runs / "small")))
    assert _listing(runs) == before
    assert not (trained["root"] / "no-export").exists()


# ------------------------------------------------------- labels and classes on the command line


@pytest.mark.parametrize("args,message", [
    pytest.param(["--label", "3.0"], "unknown class '3.0': choose a name or id from 0=T-shirt/top",
                 id="decimal-id"),
    pytest.param(["--restyle", "IMAGE", "--from", "Shirts", "--to", "Dress"],
                 "unknown class 'Shirts': choose a name or id from 0=T-shirt/top",
                 id="restyle-from-unknown"),
    pytest.param(["--restyle", "IMAGE", "--from", "Shirt", "--to", "10"],
                 "label 10 is out of range: ids are 0..9", id="restyle-to-10"),
    pytest.param(["--restyle", "IMAGE", "--from", "-1", "--to", "Dress"],
                 "label -1 is out of range: ids are 0..9", id="restyle-from-minus-1"),
])
def test_bad_class_for_generate(model_dir, tmp_path, args, message):
    image = _png(tmp_path / "in.png", np.zeros((28, 28, 1), np.uint8))
    args = [image if a == "IMAGE" else a for a in args]
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.generate, "--model", model_dir, *args,
                           "--out", tmp_path / "x.png", "--npy", tmp_path / "x.npy")
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("module", [pipelines.generate, pipelines.client],
                         ids=["generate", "client"])
def test_negative_num(tmp_path, module, model_dir):
    server = ["--model", model_dir] if module is pipelines.generate else ["--url", "http://a:1"]
    status, stderr = _main(module, *server, "--label", "Bag", "--num", "-3",
                           "--out", tmp_path / "x.png")
    _assert_refused(status, stderr, "--num must be >= 1, got -3")
    assert _listing(tmp_path) == {}


# ------------------------------------------------------------- requests to the SavedModel


def _image(value: float) -> list:
    return [[[value]] * 28] * 28


def _row(signature: str, latent: int, **given) -> dict:
    """A one-row request for `signature` with valid inputs, except those `given`."""
    values = {"label": 1, "seed": 0, "target_label": 2, "z": [0.0] * latent,
              "images": _image(0.5)}
    names = {"serving_default": ["label", "seed"], "decode": ["z", "label"],
             "encode": ["images", "label"], "restyle": ["images", "label", "target_label"]}
    return {"signature_name": signature,
            "instances": [{k: given.get(k, values[k]) for k in names[signature]}]}


def _rest(served, request: dict) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a predict request to the REST stand-in."""
    return rest_predict(served["store"], "/v1/models/cvae:predict",
                        serving_json.dumps(request).encode())


@pytest.mark.parametrize("signature,given", [
    pytest.param("serving_default", {"label": 10}, id="serving_default-label-10"),
    pytest.param("decode", {"label": -1}, id="decode-label-minus-1"),
    pytest.param("encode", {"label": 10}, id="encode-label-10"),
    pytest.param("restyle", {"target_label": 10}, id="restyle-target_label-10"),
])
def test_rest_label_out_of_range(served, trained, signature, given):
    status, answer = _rest(served, _row(signature, trained["config"].model.latent_dim, **given))
    assert status == 400 and list(answer) == ["error"], answer
    assert answer["error"].startswith(f"assertion failed: [{LABEL_RANGE}]"), answer


def test_grpc_label_out_of_range(served, trained, monkeypatch):
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    inputs = {"images": np.zeros((1, 28, 28, 1), np.float32), "label": np.array([1], np.int32),
              "target_label": np.array([-1], np.int32)}
    with pytest.raises(client.ServingError) as error:
        client.grpc_predict(served["grpc"], "cvae", inputs, signature_name="restyle")
    assert str(error.value).startswith(f"gRPC server {served['grpc']} answered INVALID_ARGUMENT: "
                                       f"assertion failed: [{LABEL_RANGE}]"), str(error.value)


@pytest.mark.parametrize("label,message", [
    pytest.param(7.0, "7.0 is a decimal number, not int32 (a whole number)", id="float-7.0"),
    pytest.param(7.5, "7.5 is a decimal number, not int32 (a whole number)", id="float-7.5"),
    pytest.param("7", '"7" is a string, not int32 (a whole number)', id="string-7"),
    pytest.param("Dress", '"Dress" is a string, not int32 (a whole number)', id="class-name"),
    pytest.param(True, "true is true/false, not int32 (a whole number)", id="bool"),
    pytest.param(None, "null where int32 (a whole number) was expected", id="null"),
])
def test_rest_label_of_the_wrong_type(served, label, message):
    status, answer = _rest(served, {"instances": [{"label": label, "seed": 0}]})
    assert (status, answer) == (400, {"error": f'instances[0]["label"]: {message}'})


@pytest.mark.parametrize("signature,name,value,message", [
    pytest.param("serving_default", "label", np.array([7], np.int64),
                 "input 'label' must be int32, got int64", id="label-int64"),
    pytest.param("serving_default", "label", np.array([7.0], np.float32),
                 "input 'label' must be int32, got float32", id="label-float32"),
    pytest.param("serving_default", "label", np.array([b"Dress"]),
                 "input 'label' must be int32, got string", id="label-string"),
    pytest.param("encode", "images", np.zeros((1, 28, 28, 1), np.uint8),
                 "input 'images' must be float32, got uint8", id="images-uint8"),
])
def test_grpc_input_of_the_wrong_dtype(served, monkeypatch, signature, name, value, message):
    for key, proxy in NO_PROXY.items():
        monkeypatch.setenv(key, proxy)
    inputs = {"serving_default": {"label": np.array([7], np.int32),
                                  "seed": np.array([0], np.int32)},
              "encode": {"images": np.zeros((1, 28, 28, 1), np.float32),
                         "label": np.array([1], np.int32)}}[signature]
    before = served["store"].requests
    with pytest.raises(client.ServingError) as error:
        client.grpc_predict(served["grpc"], "cvae", {**inputs, name: value},
                            signature_name=signature)
    assert str(error.value) == (f"gRPC server {served['grpc']} answered INVALID_ARGUMENT: "
                                f"{message}")
    assert served["store"].requests == before + 1


@pytest.mark.parametrize("kwargs,error,message", [
    pytest.param({"label": tf.constant([7.0])}, tf.errors.InvalidArgumentError,
                 "was expected to be a int32 tensor but is a float tensor", id="float-tensor"),
    pytest.param({"label": tf.constant(["7"])}, tf.errors.InvalidArgumentError,
                 "was expected to be a int32 tensor but is a string tensor", id="string-tensor"),
    pytest.param({"label": [7.5]}, TypeError,
                 "Cannot convert [7.5] to EagerTensor of dtype int32", id="python-float"),
])
def test_signature_label_of_the_wrong_dtype(signatures, kwargs, error, message):
    with pytest.raises(error) as raised:
        signatures["serving_default"](**{"seed": tf.constant([0]), **kwargs})
    assert message in str(raised.value)


# ---------------------------------------------------------------- images for encode/restyle


@pytest.mark.parametrize("signature,value", [
    pytest.param("encode", 2.0, id="encode-2.0"),
    pytest.param("encode", float("nan"), id="encode-nan"),
    pytest.param("restyle", 255.0, id="restyle-255"),
    pytest.param("restyle", -0.5, id="restyle-negative"),
])
def test_rest_pixels_outside_0_1(served, trained, signature, value):
    request = _row(signature, trained["config"].model.latent_dim, images=_image(value))
    status, answer = _rest(served, request)
    assert status == 400 and answer["error"].startswith(f"assertion failed: [{PIXEL_RANGE}]"), \
        answer


def test_rest_image_of_the_wrong_size(served, trained):
    request = {"signature_name": "restyle",
               "instances": [{"images": [[[0.5]] * 32] * 32, "label": 1, "target_label": 2}]}
    status, answer = _rest(served, request)
    assert (status, answer) == (400, {"error": "input 'images': each row must be of shape "
                                               "[28, 28, 1] (float32), got shape [32, 32, 1]"})


@pytest.mark.parametrize("signature", ["encode", "reconstruct", "restyle"])
def test_signature_image_of_the_wrong_size(signatures, signature):
    # A SignatureDef's shape is not enforced when a request is served: the signature checks.
    extra = {"target_label": tf.constant([2])} if signature == "restyle" else {}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"images must have shape \[N, 28, 28, 1\] \(28x28 grayscale\)"):
        signatures[signature](images=tf.zeros([1, 32, 32, 1]), label=tf.constant([1]), **extra)


def test_signature_z_of_the_wrong_size(signatures, trained):
    latent = trained["config"].model.latent_dim
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"z must have shape \[N, {latent}\]"):
        signatures["decode"](z=tf.zeros([1, latent + 1]), label=tf.constant([1]))


@pytest.mark.parametrize("kind,message", [
    pytest.param("gray-16-bit", "has 16-bit pixels; expected 8-bit grayscale", id="gray-16-bit"),
    pytest.param("gray-alpha", "is a grayscale+alpha PNG; expected 8-bit grayscale",
                 id="gray-alpha"),
    pytest.param("rgba", "is a RGBA PNG; expected 8-bit grayscale", id="rgba"),
    pytest.param("32x32", "is 32x32; expected 28x28", id="32x32"),
    pytest.param("corrupt", "corrupt PNG (Invalid PNG. Failed to initialize decoder.)",
                 id="corrupt"),
    pytest.param("missing", "cannot read (No such file or directory)", id="missing"),
    pytest.param("folder", "cannot read (Is a directory)", id="folder"),
])
def test_restyle_image(model_dir, tmp_path, kind, message):
    source = tmp_path / "in.png"
    if kind == "gray-16-bit":
        _png(source, np.full((28, 28, 1), 40000, np.uint16))
    elif kind == "gray-alpha":
        _png(source, np.zeros((28, 28, 2), np.uint8))
    elif kind == "rgba":
        _png(source, np.zeros((28, 28, 4), np.uint8))
    elif kind == "32x32":
        _png(source, np.zeros((32, 32, 1), np.uint8))
    elif kind == "corrupt":  # a valid header, then zeros where the image data should be
        good = tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy()
        source.write_bytes(good[:33] + bytes(len(good) - 33))
    elif kind == "folder":
        source.mkdir()
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.generate, "--model", model_dir, "--restyle", source,
                           "--from", "Shirt", "--to", "Dress", "--out", tmp_path / "out.png",
                           "--npy", tmp_path / "out.npy")
    _assert_refused(status, stderr, f"{source}: {message}")
    assert _listing(tmp_path) == before


# ------------------------------------------------------------------------ output files


# The benchmark's measurements take minutes and the report is written after them, so here they
# are replaced by a stand-in result (the write and its error are the real ones).
_BENCHMARK_WITHOUT_MEASURING = """
import sys
from cvae.evaluation import benchmark
from cvae import cli
benchmark.run = lambda config, settings: {"measured": True}
benchmark.format_report = lambda results: "report"
from pipelines.benchmark import main
sys.exit(cli.run(lambda: main(sys.argv[1:])))
"""


@pytest.fixture(scope="module")
def read_only_runs(tmp_path_factory, model_dir, trained, served):
    """Each command line that writes, run once into a read-only folder of its own (mode 0555),
    by a process that cannot override permissions. The five start together: each mostly imports
    TensorFlow, so on two cores they take half the time they would one after the other."""
    root = tmp_path_factory.mktemp("read-only-runs")
    data_dir = make_idx_dir(root / "data")
    folders = {name: root / name for name in ("generate", "client", "train", "export",
                                              "benchmark")}
    for folder in folders.values():
        folder.mkdir()
        folder.chmod(0o555)
    train_flags = _train_flags(root)
    train_flags[1] = folders["train"]  # --runs-dir
    commands = {
        "generate": ["-m", "pipelines.generate", "--model", model_dir, "--label", "Bag",
                     "--out", folders["generate"] / "bag.png",
                     "--npy", folders["generate"] / "bag.npy"],
        "client": ["-m", "pipelines.client", "--url", served["url"], "--label", "Bag", "--num",
                   "2", "--out", folders["client"] / "bag.png"],
        "train": ["-m", "pipelines.train", "--data-dir", data_dir, *train_flags],
        "export": ["-m", "pipelines.export", "--run", trained["result"].run_dir,
                   "--model-dir", folders["export"]],
        "benchmark": ["-c", _BENCHMARK_WITHOUT_MEASURING, "--quick",
                      "--out", folders["benchmark"] / "benchmark.json"],
    }
    requests = served["store"].requests
    started = {name: _start_unprivileged(*args, env=NO_PROXY) for name, args in commands.items()}
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    yield {"folders": folders, "results": results, "root": root,
           "requests": served["store"].requests - requests}
    for folder in folders.values():
        folder.chmod(0o755)


def test_generate_into_a_read_only_folder(read_only_runs):
    folder, result = read_only_runs["folders"]["generate"], read_only_runs["results"]["generate"]
    _assert_refused(result.returncode, result.stderr,
                    f"cannot write {folder / 'bag.png'}: Permission denied")
    assert list(folder.iterdir()) == []


def test_client_into_a_read_only_folder(read_only_runs):
    folder, result = read_only_runs["folders"]["client"], read_only_runs["results"]["client"]
    _assert_refused(result.returncode, result.stderr,
                    f"cannot write {folder / 'bag.png'}: Permission denied")
    assert read_only_runs["requests"] == 1  # it failed writing, after the server answered
    assert list(folder.iterdir()) == []


def test_train_into_a_read_only_runs_dir(read_only_runs):
    folder, result = read_only_runs["folders"]["train"], read_only_runs["results"]["train"]
    _assert_refused(result.returncode, result.stderr,
                    f"cannot write runs under {folder}: {folder} is not writable")
    assert list(folder.iterdir()) == [] and not (read_only_runs["root"] / "models").exists()


def test_export_into_a_read_only_model_dir(read_only_runs):
    folder, result = read_only_runs["folders"]["export"], read_only_runs["results"]["export"]
    assert result.returncode == 2, result.stderr[-3000:]
    errors = _error_lines(result.stderr)
    assert errors == [f"error: cannot write a version under {folder}: {folder} is not "
                      f"writable"], result.stderr[-3000:]
    assert list(folder.iterdir()) == []


def test_benchmark_into_a_read_only_folder(read_only_runs):
    folder, result = read_only_runs["folders"]["benchmark"], read_only_runs["results"]["benchmark"]
    _assert_refused(result.returncode, result.stderr,
                    f"cannot write {folder / 'benchmark.json'}: Permission denied")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("case", ["out-under-a-file", "out-is-a-folder", "npy-fails"])
def test_generate_output_that_cannot_be_written(model_dir, tmp_path, case):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder.png").mkdir()
    if case == "out-under-a-file":
        args = ["--out", tmp_path / "a-file" / "x.png"]
        message = f"cannot write {tmp_path}/a-file/x.png: {tmp_path}/a-file is a file, not a folder"
    elif case == "out-is-a-folder":
        args = ["--out", tmp_path / "a-folder.png"]
        message = f"cannot write {tmp_path}/a-folder.png: it is a folder"
    else:  # the PNG could be written (into folders made for it), the .npy cannot: neither is
        args = ["--out", tmp_path / "new" / "sub" / "x.png", "--npy", tmp_path / "a-file" / "x.npy"]
        message = f"cannot write {tmp_path}/a-file/x.npy: {tmp_path}/a-file is a file, not a folder"
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.generate, "--model", model_dir, "--label", "Bag", *args)
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == before  # no file, no temporary, no folder made for them


def test_existing_output_file_is_replaced_whole(model_dir, tmp_path):
    out = tmp_path / "bag.png"
    out.write_bytes(b"an older, longer file " * 1000)
    status, stderr = _main(pipelines.generate, "--model", model_dir, "--label", "Bag", "--num",
                           "4", "--out", out)
    assert status == 0, stderr
    assert tf.io.decode_png(out.read_bytes()).shape == (62, 62, 1)  # 2x2 tiles of 28 + gaps
    assert sorted(_listing(tmp_path)) == ["bag.png"]  # no temporary left


def test_failed_run_leaves_an_existing_output_file_alone(model_dir, tmp_path):
    out = tmp_path / "bag.png"
    out.write_bytes(b"yesterday's picture")
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.generate, "--model", model_dir, "--label", "10", "--out", out)
    _assert_refused(status, stderr, "label 10 is out of range: ids are 0..9")
    assert _listing(tmp_path) == before and out.read_bytes() == b"yesterday's picture"


# ------------------------------------------------------------------- models and versions


def test_model_dir_without_versions(tmp_path):
    (tmp_path / "cvae").mkdir()
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.generate, "--model", tmp_path / "cvae", "--label", "Bag",
                           "--out", tmp_path / "x.png")
    _assert_refused(status, stderr, f"{tmp_path}/cvae: no version directories (expected "
                                    f"{tmp_path}/cvae/1, ...)")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("version_dir,flags,message", [
    pytest.param(False, ["--version", "-1"], "--version must be >= 1, got -1", id="negative"),
    pytest.param(True, ["--version", "1"], "MODEL is a version directory already; drop "
                 "--version", id="with-a-version-directory"),
])
def test_bad_version(model_dir, tmp_path, version_dir, flags, message):
    model = model_dir / "1" if version_dir else model_dir
    status, stderr = _main(pipelines.generate, "--model", model, *flags, "--label", "Bag",
                           "--out", tmp_path / "x.png")
    _assert_refused(status, stderr, message.replace("MODEL", str(model)))
    assert _listing(tmp_path) == {}


@pytest.mark.parametrize("damage,message", [
    pytest.param("saved_model.pb", "cannot load the SavedModel (corrupt or incomplete: Cannot "
                 "parse file", id="garbage-saved_model.pb"),
    pytest.param("variables-missing", "cannot load the SavedModel (corrupt or incomplete: "
                 "Unsuccessful TensorSliceReader constructor", id="variables-missing"),
    pytest.param("variables-truncated", "cannot load the SavedModel (corrupt or incomplete: Read "
                 "less bytes than requested)", id="variables-truncated"),
    pytest.param("classes-missing", "assets.extra/classes.json: cannot read (No such file or "
                 "directory)", id="classes.json-missing"),
    pytest.param("classes-not-json", "assets.extra/classes.json: not valid JSON (Expecting value",
                 id="classes.json-not-json"),
    pytest.param("not-a-cvae", "no 'serving_default' signature (it has predict); is it an export "
                 "of this project?", id="other-signatures"),
])
def test_damaged_model(broken_model, tmp_path, damage, message):
    version = broken_model / "1"
    if damage == "saved_model.pb":
        (version / "saved_model.pb").write_bytes(b"not a protocol buffer")
    elif damage == "variables-missing":
        shutil.rmtree(version / "variables")
    elif damage == "variables-truncated":
        shard = next((version / "variables").glob("variables.data-*"))
        shard.write_bytes(shard.read_bytes()[:1000])
    elif damage == "classes-missing":
        (version / "assets.extra" / "classes.json").unlink()
    elif damage == "classes-not-json":
        (version / "assets.extra" / "classes.json").write_text("T-shirt/top, Trouser, ...")
    else:  # a SavedModel of another project, with this project's assets
        module = tf.Module()
        module.predict = tf.function(lambda x: {"y": 2 * x},
                                     input_signature=[tf.TensorSpec([None], tf.float32)])
        shutil.rmtree(version / "variables")
        (version / "saved_model.pb").unlink()
        tf.saved_model.save(module, str(version), signatures={"predict": module.predict})
    out = tmp_path / "out"
    out.mkdir()
    status, stderr = _main(pipelines.generate, "--model", broken_model, "--label", "Bag",
                           "--out", out / "x.png")
    _assert_refused(status, stderr, f"{version}")
    assert message in stderr
    assert _listing(out) == {}


def test_model_error_reaches_the_command_line_as_its_message(broken_model, tmp_path):
    # classes.json names an eleventh class the model was not trained on: the label passes the
    # command line's check and the SavedModel's own check refuses it.
    classes = broken_model / "1" / "assets.extra" / "classes.json"
    classes.write_text(json.dumps(json.loads(classes.read_text()) + ["Hat"]))
    out = tmp_path / "out"
    out.mkdir()
    status, stderr = _main(pipelines.generate, "--model", broken_model, "--label", "Hat",
                           "--out", out / "hat.png")
    assert _assert_refused(status, stderr, LABEL_RANGE) == f"error: {LABEL_RANGE}"
    assert _listing(out) == {}


@pytest.mark.parametrize("folder", ["empty-folder", "model-base-path"])
def test_sampler_from_a_folder_that_is_not_an_export(trained, tmp_path, folder):
    """An empty folder, or the base path where its version was meant (saved_models/cvae rather
    than saved_models/cvae/1): one line naming it, and no version written."""
    if folder == "empty-folder":
        (tmp_path / "empty").mkdir()
        earlier = tmp_path / "empty"
    else:
        earlier = trained["export"].parent
    run = trained["result"].run_dir
    before, run_before = _listing(tmp_path), _listing(run)
    status, stderr = _main(pipelines.export, "--run", run, "--model-dir", tmp_path / "cvae",
                           "--sampler-from", earlier)
    _assert_refused(status, stderr, f"{earlier}: not an exported version (no "
                                    f"assets.extra/config.json)")
    assert _listing(tmp_path) == before and _listing(run) == run_before


# ---------------------------------------------------------- TensorFlow errors, on one line


def _raise_in_a_graph():
    @tf.function
    def gather(i):
        return tf.gather(tf.range(3), i)

    gather(tf.constant([11]))


def _raise_assertion_in_a_graph():
    @tf.function
    def check(x):
        tf.debugging.assert_less(x, 10, message="x must be < 10, said the check")
        return x

    check(tf.constant([11]))


@pytest.mark.parametrize("fail,message", [
    pytest.param(lambda sig: sig["serving_default"](label=tf.constant([10]), seed=tf.constant([0])),
                 LABEL_RANGE, id="saved-model-assertion"),
    pytest.param(lambda sig: sig["encode"](images=tf.fill([1, 28, 28, 1], 2.0),
                                           label=tf.constant([1])),
                 PIXEL_RANGE, id="saved-model-pixels"),
    pytest.param(lambda sig: _raise_assertion_in_a_graph(), "x must be < 10, said the check",
                 id="assertion-with-stack-trace"),
    pytest.param(lambda sig: _raise_in_a_graph(), "indices[0] = 11 is not in [0, 3)",
                 id="graph-op-error"),
    pytest.param(lambda sig: tf.io.read_file("/no/such/file"),
                 "/no/such/file; No such file or directory", id="eager-op-error"),
])
def test_op_error_is_shown_as_its_meaningful_line(signatures, fail, message):
    with pytest.raises(tf.errors.OpError) as raised:
        fail(signatures)
    assert raised.value.message.startswith(("Graph execution error:", "{{function_node"))

    def main():
        raise raised.value

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli.run(main) == 2
    assert stderr.getvalue() == f"error: {message}\n"


# ------------------------------------------------------------- counts above their bounds


@pytest.mark.parametrize("module,args,message", [
    pytest.param(pipelines.generate, ["--num", "100001", "--npy", "x.npy"],
                 "--num must be <= 100000, got 100001", id="generate-num"),
    pytest.param(pipelines.generate, ["--num", "10001", "--out", "x.png"],
                 "--out: a PNG grid holds at most 10000 images, got --num 10001; write them "
                 "with --npy alone", id="generate-grid"),
    pytest.param(pipelines.generate, ["--columns", "10001", "--out", "x.png"],
                 "--columns must be <= 10000, got 10001", id="generate-columns"),
    pytest.param(pipelines.client, ["--url", "http://a:1", "--num", "1001", "--out", "x.png"],
                 "--num must be <= 1000, got 1001", id="client-num"),
])
def test_generation_count_above_its_bound(tmp_path, module, args, message):
    args = [tmp_path / a if a in ("x.png", "x.npy") else a for a in args]
    status, stderr = _main(module, "--label", "Bag", *args)
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == {}


def test_a_huge_count_is_refused_before_tensorflow_loads(tmp_path):
    """The issue's command, which ran for minutes: refused by the argument checks, in a process
    that never imports TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipelines.generate", "--label", "7", "--num",
         "2000000000", "--out", str(tmp_path / "x.png")], cwd=REPO, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "cvae.limits" in imported and "tensorflow" not in imported
    assert _error_lines(result.stderr) == [
        "generate.py: error: --num must be <= 100000, got 2000000000"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module,args,message", [
    pytest.param(pipelines.evaluate, ["--iwae-k", "10001"], "--iwae-k must be <= 10000",
                 id="evaluate-iwae-k"),
    pytest.param(pipelines.evaluate, ["--compare-k", "10001"], "--compare-k must be <= 10000",
                 id="evaluate-compare-k"),
    pytest.param(pipelines.evaluate, ["--iwae-images", "10001"],
                 "--iwae-images must be <= 10000", id="evaluate-iwae-images"),
    pytest.param(pipelines.evaluate, ["--samples-per-class", "10001"],
                 "--samples-per-class must be <= 10000", id="evaluate-samples-per-class"),
    pytest.param(pipelines.evaluate, ["--frechet-images", "10001"],
                 "--frechet-images must be <= 10000", id="evaluate-frechet-images"),
    pytest.param(pipelines.evaluate, ["--reconstruction-images", "10001"],
                 "--reconstruction-images must be <= 10000", id="evaluate-reconstruction-images"),
    pytest.param(pipelines.train_classifier, ["--epochs", "10001"], "--epochs must be <= 10000",
                 id="classifier-epochs"),
    pytest.param(pipelines.train_classifier, ["--batch-size", "60001"],
                 "--batch-size must be <= 60000", id="classifier-batch-size"),
    pytest.param(pipelines.train_classifier, ["--limit", "60001"], "--limit must be <= 60000",
                 id="classifier-limit"),
    pytest.param(pipelines.export, ["--run", "RUN", "--sampling-components", "101"],
                 "--sampling-components must be <= 100", id="export-sampling-components"),
    pytest.param(pipelines.export, ["--run", "RUN", "--inpaint-iterations", "17"],
                 "--inpaint-iterations must be <= 16, got 17", id="export-inpaint-iterations"),
    pytest.param(pipelines.export, ["--run", "RUN", "--inpaint-refine-steps", "1001"],
                 "--inpaint-refine-steps must be <= 1000, got 1001",
                 id="export-inpaint-refine-steps"),
    pytest.param(pipelines.export, ["--run", "RUN", "--denoise-refine-steps", "1001"],
                 "--denoise-refine-steps must be <= 1000, got 1001",
                 id="export-denoise-refine-steps"),
    pytest.param(pipelines.export, ["--run", "RUN", "--reconstruct-refine-steps", "1001"],
                 "--reconstruct-refine-steps must be <= 1000, got 1001",
                 id="export-reconstruct-refine-steps"),
    pytest.param(pipelines.benchmark, ["--train-images", "60001"],
                 "--train-images must be <= 60000", id="benchmark-train-images"),
    pytest.param(pipelines.benchmark, ["--max-epochs", "10001"],
                 "--max-epochs must be <= 10000", id="benchmark-epochs"),
    pytest.param(pipelines.benchmark, ["--pipeline-images", "10000001"],
                 "--pipeline-images must be <= 10000000", id="benchmark-images"),
    pytest.param(pipelines.benchmark, ["--throughput-calls", "10001"],
                 "--throughput-calls must be <= 10000", id="benchmark-calls"),
    pytest.param(pipelines.benchmark, ["--epochs", "10001"],
                 "config: epochs=10001 must be <= 10000", id="benchmark-config"),
])
def test_count_above_its_bound(tmp_path, module, args, message):
    """Evaluation sample counts, the classifier's training counts, the export's mixture size and
    in-painting's rounds and steps, and the benchmark's counts: refused before the command loads
    anything (RUN is an empty folder, which loading would refuse with another message), and
    nothing written."""
    (tmp_path / "runs" / "r").mkdir(parents=True)
    out = {pipelines.evaluate: ["--out", tmp_path / "report"],
           pipelines.train_classifier: ["--out", tmp_path / "classifier"],
           pipelines.benchmark: ["--out", tmp_path / "benchmark.json"]}.get(module, [])
    before = _listing(tmp_path)
    status, stderr = _main(module, *[tmp_path / "runs" / "r" if a == "RUN" else a for a in args],
                           *out)
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == before


EXPORT_RUN_ONLY = ("--model-dir, --sampler-from and the settings (--guidance, --sampling, "
                   "--sampling-components, --temperature, --classify-samples, "
                   "--classify-pixel-outlier, --inpaint-iterations, --inpaint-refine-steps, "
                   "--denoise-refine-steps, --reconstruct-refine-steps, "
                   "--reconstruct-pixel-outlier) go with --run, not --check")
SAMPLER_FROM_ALONE = ("--sampler-from keeps an export's mixtures and generation settings: it "
                      "takes no --guidance, --sampling, --sampling-components or --temperature")


@pytest.mark.parametrize("args,message", [
    pytest.param(["--run", "RUN", "--sampler-from", "VERSION", "--temperature", "0.5"],
                 SAMPLER_FROM_ALONE, id="sampler-from-with-temperature"),
    pytest.param(["--run", "RUN", "--sampler-from", "VERSION", "--sampling-components", "4"],
                 SAMPLER_FROM_ALONE, id="sampler-from-with-sampling-components"),
    pytest.param(["--run", "RUN", "--sampler-from", "VERSION", "--guidance", "1.5"],
                 SAMPLER_FROM_ALONE, id="sampler-from-with-guidance"),
    pytest.param(["--check", "VERSION", "--sampler-from", "VERSION"], EXPORT_RUN_ONLY,
                 id="check-with-sampler-from"),
    pytest.param(["--run", "RUN", "--classify-pixel-outlier", "1"],
                 "--classify-pixel-outlier must be in [0, 1), got 1",
                 id="classify-pixel-outlier-1"),
    pytest.param(["--run", "RUN", "--reconstruct-pixel-outlier", "-0.5"],
                 "--reconstruct-pixel-outlier must be in [0, 1), got -0.5",
                 id="reconstruct-pixel-outlier-negative"),
])
def test_export_usage_errors(tmp_path, args, message):
    """Flags that contradict each other or a share out of range: refused before the run or the
    version is read (an empty run folder and a missing version, which reading would refuse with
    other messages)."""
    (tmp_path / "runs" / "r").mkdir(parents=True)
    places = {"RUN": tmp_path / "runs" / "r", "VERSION": tmp_path / "cvae" / "1"}
    before = _listing(tmp_path)
    status, stderr = _main(pipelines.export, *[places.get(a, a) for a in args],
                           *(["--model-dir", tmp_path / "cvae"] if "--run" in args else []))
    _assert_refused(status, stderr, message)
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- the table


def _table_rows() -> list[list[str]]:
    """The cells of every row of docs/bad-input.md's table (header and rule left out)."""
    section = BAD_INPUT_TABLE.read_text()
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["input", "entry point(s)", "what happens", "exit status", "test"], header
    assert set(rows[1].replace("|", "").strip()) <= set("-: ")
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
             for row in rows[2:]]
    assert all(len(c) == 5 for c in cells), [c for c in cells if len(c) != 5]
    return cells


def test_every_row_names_tests_that_exist():
    rows = _table_rows()
    assert len(rows) >= 40
    named = []
    for row in rows:
        ids = re.findall(r"`(tests/[^`]+)`", row[4])
        assert ids, f"row without a test: {row}"
        named += ids
    files = sorted({node.split("::")[0] for node in named})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    existing = {line.strip() for line in collected.stdout.splitlines() if "::" in line}
    assert sorted(set(named) - existing) == []
    # And every test of this file is some row's test.
    ours = {node for node in existing if node.startswith("tests/test_bad_input.py::")}
    this = "tests/test_bad_input.py::test_every_row_names_tests_that_exist"
    assert sorted(ours - set(named) - {this}) == []
