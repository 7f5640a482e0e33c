"""`python -m pipelines.client` and cvae.serving.client against stand-in TF Serving servers on loopback.

The stand-ins (tests/fake_serving.py) serve the small exported model of the `trained` fixture
over REST and gRPC in this process; the client runs in fresh processes, as a user runs it, and
what it writes or prints is compared with the same calls into the SavedModel here: generation,
and the applications (`--inpaint`, `--denoise`, `--classify`).
"""

import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from cvae.serving import client, generate, rest_json as serving_json
from cvae import images
from cvae.applications import corruptions
from cvae.serving import applications as served_app
from conftest import run_python
from fake_serving import ModelStore, free_port, grpc_server, rest_server

# Loopback requests must not go to a proxy configured in the environment.
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
LABEL, NUM, SEED = 3, 5, 3  # five dresses


def _client(*args, importtime=False):
    return run_python(*(["-X", "importtime"] if importtime else []), "-m", "pipelines.client",
                      *args, env=NO_PROXY)


@pytest.fixture(scope="module")
def served(trained):
    """The trained export behind a REST and a gRPC stand-in."""
    store = ModelStore(trained["export"].parent)
    with rest_server(store) as url, grpc_server(store) as target:
        yield {"store": store, "url": url, "grpc": target, "model_dir": trained["export"].parent}
    store.close()


@pytest.fixture(scope="module")
def reference(served, tmp_path_factory):
    """What `pipelines.generate` writes from the SavedModel for the same label, number, seed."""
    folder = tmp_path_factory.mktemp("reference")
    run_python("-m", "pipelines.generate", "--model", str(served["model_dir"]), "--label",
               str(LABEL), "--num", str(NUM), "--seed", str(SEED), "--out",
               str(folder / "ref.png"), "--npy", str(folder / "ref.npy"), check=True)
    return {"png": (folder / "ref.png").read_bytes(), "images": np.load(folder / "ref.npy")}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_writes_what_pipelines_generate_writes(served, reference, tmp_path, transport):
    out, npy = tmp_path / "dress.png", tmp_path / "dress.npy"
    server = (["--url", served["url"], "--version", "1", "--label", "Dress"]
              if transport == "rest" else ["--grpc", served["grpc"], "--label", str(LABEL)])
    before = served["store"].requests
    result = _client(*server, "--model", "cvae", "--num", str(NUM), "--seed", str(SEED),
                     "--out", str(out), "--npy", str(npy), importtime=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out} and {npy}: 5 x Dress (seed 3), model cvae" in result.stdout
    assert served["store"].requests == before + 1  # one request for the whole batch
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tensorflow_probability" not in imported and "keras" not in imported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dress.npy", "dress.png"]
    samples = np.load(npy)
    assert samples.dtype == np.float32 and samples.shape == (5, 28, 28, 1)
    # Bit for bit: the JSON floats and the TensorProtos both carry float32 exactly.
    np.testing.assert_array_equal(samples, reference["images"])
    assert out.read_bytes() == reference["png"]
    # And the SavedModel itself, called here, agrees.
    model = generate.load(served["model_dir"])
    direct = generate.generate(model, [LABEL] * NUM, generate.seeds_for(SEED, NUM))["images"]
    np.testing.assert_array_equal(samples, direct)


@pytest.mark.parametrize("label,message", [
    ("Sneakers", "error: unknown class 'Sneakers': choose a name or id from 0=T-shirt/top"),
    ("10", "error: label 10 is out of range: ids are 0..9"),
    ("-1", "error: label -1 is out of range: ids are 0..9"),
], ids=["unknown-name", "10", "minus-1"])
def test_bad_label_fails_before_asking_the_server(served, tmp_path, label, message):
    before = served["store"].requests
    result = _client("--url", served["url"], "--label", label, "--out", str(tmp_path / "x.png"),
                     "--npy", str(tmp_path / "x.npy"))
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert served["store"].requests == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_unreachable_server(tmp_path, transport):
    port = free_port()
    if transport == "rest":
        args = ["--url", f"http://127.0.0.1:{port}"]
        message = f"error: cannot reach http://127.0.0.1:{port}/v1/models/cvae:predict: " \
                  f"Connection refused"
    else:
        args = ["--grpc", f"127.0.0.1:{port}"]
        message = f"error: cannot reach gRPC server 127.0.0.1:{port}: "
    result = _client(*args, "--label", "Bag", "--out", str(tmp_path / "x.png"), "--npy",
                     str(tmp_path / "x.npy"))
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_server_error_is_reported_with_the_servers_message(served, tmp_path, transport):
    if transport == "rest":  # a version the server does not have: TF Serving's 404
        args = ["--url", served["url"], "--version", "9"]
        message = (f"error: {served['url']}/v1/models/cvae/versions/9:predict answered HTTP 404: "
                   f"Servable not found for request: Specific(cvae, 9)")
    else:  # a model the server does not serve
        args = ["--grpc", served["grpc"], "--model", "shoes"]
        message = (f"error: gRPC server {served['grpc']} answered NOT_FOUND: "
                   f"Servable not found for request: Latest(shoes)")
    result = _client(*args, "--label", "Bag", "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_timeout(served, tmp_path, transport):
    slow = rest_server if transport == "rest" else grpc_server
    with slow(served["store"], delay=120) as address:
        flag = "--url" if transport == "rest" else "--grpc"
        start = time.monotonic()
        result = _client(flag, address, "--label", "Bag", "--timeout", "1.5", "--out",
                         str(tmp_path / "x.png"))
        elapsed = time.monotonic() - start
    where = f"{address}/v1/models/cvae:predict" if transport == "rest" \
        else f"gRPC server {address}"
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: no answer from {where} within 1.5 s" in result.stderr
    assert elapsed < 60  # gave up at the timeout, not when the server answered
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(tmp_path):
    out = str(tmp_path / "x.png")
    for args, message in (
            (["--label", "Bag", "--out", out], "one of the arguments --url --grpc is required"),
            (["--url", "http://a:1", "--grpc", "a:2", "--label", "Bag", "--out", out],
             "not allowed with argument"),
            (["--url", "localhost:8501", "--label", "Bag", "--out", out],
             "--url must start with http:// or https://"),
            (["--grpc", "localhost", "--label", "Bag", "--out", out], "--grpc must be HOST:PORT"),
            (["--url", "http://a:1", "--out", out], "the following arguments are required: "
                                                    "--label"),
            (["--url", "http://a:1", "--label", "Bag", "--num", "0", "--out", out],
             "--num must be >= 1"),
            (["--url", "http://a:1", "--label", "Bag", "--timeout", "0", "--out", out],
             "--timeout must be > 0"),
            (["--url", "http://a:1", "--label", "Bag", "--version", "0", "--out", out],
             "--version must be >= 1"),
            (["--url", "http://a:1", "--label", "Bag", "--out", str(tmp_path / "x.jpg")],
             "--out must name a .png file")):
        result = _client(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert list(tmp_path.iterdir()) == []


# The applications' command lines: --inpaint, --denoise, --classify.


def _server(served, transport: str) -> list[str]:
    return ["--url", served["url"]] if transport == "rest" else ["--grpc", served["grpc"]]


def _png(path, image):
    path.write_bytes(images.png_bytes(np.round(image * 255).astype(np.uint8)))
    return path


@pytest.fixture(scope="module")
def pictures(served, tmp_path_factory):
    """Input PNGs for the applications: a dress the model drew, the same dress noisy, and a mask
    PNG (the centre square missing); with the model loaded here to compare against."""
    folder = tmp_path_factory.mktemp("pictures")
    model = generate.load(served["model_dir"])
    dress = generate.generate(model, [LABEL], [SEED])["images"]
    return {"model": model, "dress": _png(folder / "dress.png", dress[0]),
            "noisy": _png(folder / "noisy.png", corruptions.gaussian_noise(dress, 0.2)[0]),
            "mask": _png(folder / "mask.png", corruptions.mask("centre")[0])}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_inpaints_as_the_saved_model_does(served, pictures, tmp_path, transport):
    mask_flag = "bottom-half" if transport == "rest" else str(pictures["mask"])
    out, npy = tmp_path / "done.png", tmp_path / "done.npy"
    before = served["store"].requests
    result = _client(*_server(served, transport), "--inpaint", str(pictures["dress"]), "--mask",
                     mask_flag, "--label", "Dress", "--num", "3", "--seed", "2", "--out",
                     str(out), "--npy", str(npy))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"wrote {out} and {npy}: 3 completion(s) of {pictures['dress']} (mask {mask_flag}) "
            f"as Dress (seed 2), model cvae") in result.stdout
    assert served["store"].requests == before + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.npy", "done.png"]
    # What `pipelines.generate --inpaint` gives from the SavedModel.
    model = pictures["model"]
    source, mask = images.read_png_28x28(pictures["dress"]), served_app.read_mask(mask_flag)
    inputs = (np.repeat(source[None], 3, 0), np.repeat(mask[None], 3, 0), [LABEL] * 3,
              generate.seeds_for(2, 3))
    completions = served_app.inpaint(model, *inputs)
    np.testing.assert_array_equal(np.load(npy), completions)
    tiles = np.concatenate([served_app.shown_masked(source, mask)[None], completions])
    assert out.read_bytes() == images.png_bytes(images.grid(tiles, 4))


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_denoises_as_the_saved_model_does(served, pictures, tmp_path, transport):
    out, npy = tmp_path / "clean.png", tmp_path / "clean.npy"
    result = _client(*_server(served, transport), "--denoise", str(pictures["noisy"]), "--label",
                     str(LABEL), "--out", str(out), "--npy", str(npy))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"wrote {out} and {npy}: {pictures['noisy']} denoised as Dress, model cvae"
            in result.stdout)
    noisy = images.read_png_28x28(pictures["noisy"])[None]
    cleaned = served_app.denoise(pictures["model"], noisy, [LABEL])
    np.testing.assert_array_equal(np.load(npy), cleaned)
    assert out.read_bytes() == images.png_bytes(images.grid(np.concatenate([noisy, cleaned]), 2))


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_classifies_as_pipelines_classify_prints(served, pictures, tmp_path, transport):
    paths = [str(pictures["dress"]), str(pictures["noisy"])]
    before = served["store"].requests
    result = _client(*_server(served, transport), "--classify", *paths)
    assert result.returncode == 0, result.stderr[-3000:]
    assert served["store"].requests == before + 1  # both images in one request
    model = pictures["model"]
    expected = served_app.classify(model, np.stack([images.read_png_28x28(p) for p in paths]))
    # The lines `pipelines.classify` prints from the SavedModel, naming the same classes.
    assert result.stdout.splitlines() == [served_app.describe(path, expected, i,
                                                              model.class_names)
                                          for i, path in enumerate(paths)]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["--label", "Dress", "--mask", "centre", "--out", "o.png"], "--mask goes with --inpaint"),
    (["--inpaint", "x.png", "--denoise", "y.png", "--mask", "centre", "--label", "Dress",
      "--out", "o.png"], "give one of --inpaint, --denoise, --upscale and --classify"),
    (["--denoise", "x.png", "--classify", "y.png"],
     "give one of --inpaint, --denoise, --upscale and --classify"),
    (["--inpaint", "x.png", "--label", "Dress", "--out", "o.png"],
     "--inpaint needs --mask and --label"),
    (["--inpaint", "x.png", "--mask", "centre", "--out", "o.png"],
     "--inpaint needs --mask and --label"),
    (["--inpaint", "x.png", "--mask", "centre", "--label", "Dress", "--npy", "o.npy"],
     "the following arguments are required: --out"),
    (["--inpaint", "x.png", "--mask", "centre", "--label", "Dress", "--num", "501", "--out",
      "o.png"], "--num must be <= 500, got 501"),
    (["--denoise", "x.png", "--out", "o.png"], "--denoise needs --label"),
    (["--denoise", "x.png", "--label", "Dress", "--num", "3", "--out", "o.png"],
     "--denoise cleans one image and draws nothing at random; it takes no --num"),
    (["--classify", "x.png", "--out", "o.png"],
     "--classify prints one line per image and writes no file; it takes no --out"),
    (["--classify", "x.png", "--label", "Dress", "--npy", "o.npy"],
     "--classify prints one line per image and writes no file; it takes no --label, --npy"),
    (["--classify", *["x.png"] * 1001], "--classify takes at most 1000 images (one request), "
                                        "got 1001"),
], ids=["mask-alone", "two-actions", "denoise-and-classify", "inpaint-no-mask",
        "inpaint-no-label", "inpaint-no-out", "inpaint-num", "denoise-no-label", "denoise-num",
        "classify-out", "classify-label", "classify-count"])
def test_application_usage_errors(tmp_path, args, message):
    args = [str(tmp_path / a) if a in ("o.png", "o.npy") else a for a in args]
    result = _client("--url", "http://a:1", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"client.py: error: {message}" in result.stderr, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_bad_application_image_fails_before_asking_the_server(served, pictures, tmp_path,
                                                              transport):
    if transport == "rest":  # a mask PNG with gray pixels
        gray = _png(tmp_path / "gray.png", np.full([28, 28, 1], 0.5, np.float32))
        args = ["--inpaint", str(pictures["dress"]), "--mask", str(gray), "--label", "Dress",
                "--out", str(tmp_path / "o.png")]
        message = (f"error: {gray}: a mask PNG must be black (0: missing) and white (255: "
                   f"known) only; it has gray level(s) 128")
    else:  # one colour PNG among the images to classify
        rgb = tmp_path / "rgb.png"
        rgb.write_bytes(tf.io.encode_png(np.zeros([28, 28, 3], np.uint8)).numpy())
        args = ["--classify", str(pictures["dress"]), str(rgb)]
        message = f"error: {rgb}: is a RGB PNG; expected 8-bit grayscale"
    before = sorted(p.name for p in tmp_path.iterdir())
    requests = served["store"].requests
    result = _client(*_server(served, transport), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert served["store"].requests == requests
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# In-process checks of the stand-ins' protocol and of cvae.serving.client's other signatures.


def _post(url, body: str):
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(request, timeout=60) as answer:
            return answer.status, serving_json.parse_body(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, serving_json.parse_body(e.read())


def test_rest_stand_in_follows_tf_serving(served):
    predict = f"{served['url']}/v1/models/cvae:predict"
    model = generate.load(served["model_dir"])
    status, body = _post(predict, '{"inputs": {"label": [7, 3], "seed": [0, 1]}}')
    assert status == 200 and list(body) == ["outputs"] and sorted(body["outputs"]) == ["images",
                                                                                       "z"]
    expected = generate.generate(model, [7, 3], [0, 1])
    np.testing.assert_array_equal(np.array(body["outputs"]["images"], np.float32),
                                  expected["images"])
    for body_text, status_wanted, message in (
            ('{"instances": [{"label": 7.5, "seed": 0}]}', 400,
             'instances[0]["label"]: 7.5 is a decimal number, not int32'),
            ('{"instances": [{"label": 10, "seed": 0}]}', 400, "label out of range"),
            ('{"signature_name": "sample", "instances": [1]}', 400,
             'serving signature name "sample" not found'),
            ('{"instances": [{"label": 1, "seed": 0}', 400, "request is not valid JSON")):
        status, body = _post(predict, body_text)
        assert status == status_wanted and list(body) == ["error"], (body_text, status, body)
        assert message in body["error"], body
    status, body = _post(f"{served['url']}/v1/models/other:predict", '{"instances": [1]}')
    assert (status, body) == (404, {"error": "Servable not found for request: Latest(other)"})
    status, body = _post(f"{served['url']}/v2/cvae", "{}")
    assert (status, body) == (400, {"error": "Malformed request: POST /v2/cvae"})


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_calls_other_signatures_and_reports_model_errors(served, transport,
                                                                monkeypatch):
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    model = generate.load(served["model_dir"])
    z = np.random.default_rng(0).normal(size=(3, model.config["model"]["latent_dim"]))
    inputs = {"z": z.astype(np.float32), "label": np.array([0, 5, 9], np.int32)}
    if transport == "rest":
        def predict(inputs, **kwargs):
            return client.rest_predict(served["url"], "cvae", inputs, **kwargs)
        where = f"{served['url']}/v1/models/cvae:predict answered HTTP 400: "
    else:
        def predict(inputs, **kwargs):
            return client.grpc_predict(served["grpc"], "cvae", inputs, **kwargs)
        where = f"gRPC server {served['grpc']} answered INVALID_ARGUMENT: "
    # One output: REST's JSON carries it unnamed, so the caller names it with its dtype.
    named = {"output_dtypes": {"images": tf.float32}} if transport == "rest" else {}
    out = predict(inputs, signature_name="decode", version=1, **named)
    expected = model.signatures["decode"](**{k: tf.constant(v) for k, v in inputs.items()})
    assert list(out) == ["images"]
    np.testing.assert_array_equal(out["images"].astype(np.float32), expected["images"].numpy())
    # The model's own check, reported as TF Serving reports it.
    with pytest.raises(client.ServingError) as error:
        predict({"label": np.array([10], np.int32), "seed": np.array([0], np.int32)})
    assert str(error.value).startswith(where + "assertion failed: [label out of range: labels "
                                       "must be in 0..9]"), str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(client.ServingError, match="unknown input 'zz'"):
        predict({"zz": inputs["z"], "label": inputs["label"]}, signature_name="decode")
    if transport == "rest":
        with pytest.raises(client.ServingError, match="holds one unnamed output; pass dtypes"):
            predict(inputs, signature_name="decode")


@pytest.fixture(scope="module")
def broken_model(tmp_path_factory):
    """A SavedModel whose serving_default breaks the contract: pixels of 2.0."""
    class Broken(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="label"),
                                      tf.TensorSpec([None], tf.int32, name="seed")])
        def generate(self, label, seed):
            n = tf.shape(label)[0]
            return {"images": tf.fill([n, 28, 28, 1], 2.0), "z": tf.zeros([n, 4])}

    base = tmp_path_factory.mktemp("broken") / "cvae"
    module = Broken()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.generate})
    store = ModelStore(base)
    yield store
    store.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_rejects_answers_that_break_the_contract(broken_model, transport, monkeypatch):
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    server = rest_server if transport == "rest" else grpc_server
    with server(broken_model) as address:
        where = dict(url=address) if transport == "rest" else dict(grpc_target=address)
        with pytest.raises(client.ServingError, match=r"sent images with pixels outside \[0, 1\]"):
            client.generate(1, 2, 0, **where)


def test_client_argument_checks():
    assert client.predict_url("http://h:8501/", "cvae", 2) == \
        "http://h:8501/v1/models/cvae/versions/2:predict"
    with pytest.raises(ValueError, match="must look like http://HOST:PORT"):
        client.predict_url("http://h:8501/v1", "cvae")
    with pytest.raises(ValueError, match="give exactly one of url"):
        client.generate(1, 2, 0)
    with pytest.raises(ValueError, match="the gRPC address must look like HOST:PORT"):
        client.grpc_predict("h", "cvae", {"label": [1]})
