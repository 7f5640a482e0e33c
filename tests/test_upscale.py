"""Super-resolution (`cvae.applications.upscale`, the `upscale` signature): block means kept for
every output, the fit climbing its objective, the bad inputs refused, the export equal in a
process without this project or TFP and through the stand-in REST and gRPC servers, and the
command lines, on the small trained export of the `trained` fixture."""

import re

import numpy as np
import pytest
import tensorflow as tf

from cvae.applications import importance
from cvae.applications import upscale as upscale_app
from cvae.config import ApplicationsConfig, Config
from cvae.data import load_splits, unit_images
from cvae.serving import client
from cvae.serving.contract import SIGNATURES
from conftest import REPO, run_python
from fake_serving import ModelStore, grpc_server, rest_server

NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
SIZES = "images must have shape [N, 14, 14, 1] or [N, 7, 7, 1]"
PIXELS = "images must be float32 pixels in [0, 1] (scale 8-bit images by 1/255)"
LABELS = "label out of range: labels must be in 0..9, or -1 (not given: the model chooses)"
GRAY_LEVEL = 1.0 / 255.0


@pytest.fixture(scope="module")
def exported(trained):
    """The trained export, loaded, with 40 test garments and their 14x14 and 7x7 versions."""
    path = trained["export"]
    config = Config.from_json((path / "assets.extra" / "config.json").read_text())
    splits = load_splits(config.data)
    x, y = unit_images(splits.test[0][:40]), splits.test[1][:40].astype(np.int32)
    loaded = tf.saved_model.load(str(path))
    low = {f: upscale_app.block_means(tf.constant(x), f).numpy() for f in upscale_app.FACTORS}
    return {"path": path, "config": config, "sig": loaded.signatures, "x": x, "y": y,
            "low": low}


def _call(sig, **inputs):
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _upscale(exported, low, labels, seeds=None):
    seeds = np.arange(len(low), dtype=np.int32) if seeds is None else seeds
    return _call(exported["sig"]["upscale"], images=low, label=np.asarray(labels, np.int32),
                 seed=seeds)


def _block_error(images, low) -> float:
    factor = 28 // low.shape[1]
    return float(np.abs(images.reshape(-1, 28 // factor, factor, 28 // factor, factor, 1)
                        .mean((2, 4)) - low).max())


# ----------------------------------------------------------------------------- the projection


def test_project_keeps_pixels_in_range_and_hits_every_block_mean():
    """Any image projected onto any block means in [0, 1] (saturated blocks of 0 and 1, blocks
    that ask for all the room they have) has those block means, within float rounding."""
    rng = np.random.default_rng(0)
    for factor in upscale_app.FACTORS:
        side = 28 // factor
        images = rng.uniform(0, 1, [50, 28, 28, 1]).astype(np.float32)
        images[:10] = 0.0  # nothing to fall, everything to rise
        images[10:20] = 1.0
        images[20:30] = rng.choice([0.0, 1.0], [10, 28, 28, 1])
        low = rng.uniform(0, 1, [50, side, side, 1]).astype(np.float32)
        low[::3] = rng.choice([0.0, 1.0, 1 / 255, 254 / 255], [17, side, side, 1])
        out = upscale_app.project(tf.constant(images), tf.constant(low), factor).numpy()
        assert 0 <= out.min() and out.max() <= 1
        assert _block_error(out, low) < 1e-5
        # An image whose block means are already the target is left as it is.
        np.testing.assert_allclose(
            upscale_app.project(tf.constant(out), tf.constant(low), factor).numpy(), out,
            atol=1e-5)


def test_project_moves_each_pixel_by_its_room():
    """A 2x2 block of 0, 0.5, 0.5, 1 asked for mean 0.75 (0.25 more, 1.0 in total) gains in
    proportion to each pixel's room 1, 0.5, 0.5, 0 (total 2): 0.5, 0.25, 0.25, 0."""
    block = np.array([[0.0, 0.5], [0.5, 1.0]], np.float32).reshape(1, 2, 2, 1)
    images = np.tile(block, [1, 14, 14, 1])
    low = np.full([1, 14, 14, 1], 0.75, np.float32)
    out = upscale_app.project(tf.constant(images), tf.constant(low), 2).numpy()
    np.testing.assert_allclose(out[0, :2, :2, 0], [[0.5, 0.75], [0.75, 1.0]], atol=1e-6)


# ----------------------------------------------------------------------------- the signature


@pytest.mark.parametrize("factor", upscale_app.FACTORS)
def test_upscale_keeps_every_block_mean_within_a_gray_level(exported, factor):
    low = exported["low"][factor].copy()
    # Saturated and nearly saturated inputs: all black, all white, 1/255 and 254/255.
    low[-4] = 0.0
    low[-3] = 1.0
    low[-2] = GRAY_LEVEL
    low[-1] = 1.0 - GRAY_LEVEL
    out = _upscale(exported, low, exported["y"])
    assert out["images"].shape == (40, 28, 28, 1) and out["images"].dtype == np.float32
    assert 0 <= out["images"].min() and out["images"].max() <= 1
    assert _block_error(out["images"], low) <= GRAY_LEVEL / 10
    np.testing.assert_array_equal(out["label"], exported["y"])
    assert out["z"].shape == (40, exported["config"].model.latent_dim)
    # The model's own detail, not the blocks repeated.
    nearest = upscale_app.nearest(low, factor).numpy()
    assert np.abs(out["images"] - nearest)[:36].mean() > 1e-3


def test_upscale_rows_depend_on_their_own_inputs_and_seed(exported):
    low, y = exported["low"][4][:8], exported["y"][:8]
    seeds = np.arange(8, dtype=np.int32)
    out = _upscale(exported, low, y, seeds)["images"]
    alone = _upscale(exported, low[3:4], y[3:4], seeds[3:4])["images"]
    np.testing.assert_allclose(alone[0], out[3], atol=1e-5)
    other = _upscale(exported, low, y, seeds + 1000)["images"]
    assert not np.array_equal(other, out)  # several completions where 7x7 leaves it open
    assert _block_error(other, low) <= GRAY_LEVEL / 10
    np.testing.assert_array_equal(_upscale(exported, low, y, seeds)["images"], out)


def test_refinement_climbs_the_block_mean_objective(trained, exported):
    model = trained["result"].model
    low, y = tf.constant(exported["low"][2][:6]), tf.constant(exported["y"][:6])

    def prior(z, labels):
        return tf.reduce_sum(-0.5 * tf.square(z) - 0.5 * importance.LOG_2PI, -1)

    def objective(z):
        return (upscale_app.log_block_means(model, model.decoder_params(z, y), low, 2)
                + prior(z, y)).numpy()

    seeds = tf.range(6)
    start = upscale_app.upscale(model, low, 2, y, seeds, prior, 0, 0.2)["z"]
    fitted = upscale_app.upscale(model, low, 2, y, seeds, prior, 20, 0.2)["z"]
    before, after = objective(start), objective(fitted)
    assert (after > before).all(), (before, after)


def test_unknown_label_is_bayes_rule_on_the_block_means(trained, exported):
    """Label -1 takes the argmax of the export's prior times the block-mean bounds, recomputed
    here from the model; a given label is kept."""
    from cvae.model import sampling
    from cvae.serving.export import exported_sampler

    model = trained["result"].model
    low = exported["low"][2][:10]
    labels = np.full(10, -1, np.int32)
    labels[0] = 3
    out = _upscale(exported, low, labels)
    sampler = exported_sampler(str(exported["path"]))
    settings = exported["config"].applications
    eps = tf.random.stateless_normal([settings.upscale_classify_samples,
                                      model.config.latent_dim], upscale_app.CLASSIFY_SEED)
    bounds = upscale_app.class_log_likelihoods(
        model, tf.constant(low), 2, eps,
        lambda z, y: importance.mixture_log_prob(sampler.loc, sampler.scale_tril,
                                                 sampler.weights, y, z)).numpy()
    from cvae.applications.classify import class_log_prior
    prior = class_log_prior(load_splits(exported["config"].data).train[1])
    expected = (bounds + prior).argmax(1)
    assert out["label"][0] == 3
    np.testing.assert_array_equal(out["label"][1:], expected[1:])
    assert sampling  # the sampler module is what the export's mixture came from


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 9, 9, 1), (2, 14, 7, 1), (2, 4, 4, 1)],
                         ids=["28x28", "9x9", "14x7", "4x4"])
def test_upscale_refuses_other_sizes(exported, shape):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(SIZES)):
        _upscale(exported, np.full(shape, 0.5, np.float32), exported["y"][:2])


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")], ids=["above-1", "negative", "nan"])
def test_upscale_refuses_pixels_outside_0_1(exported, value):
    low = exported["low"][2][:2].copy()
    low[1, 3, 4, 0] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(PIXELS)):
        _upscale(exported, low, exported["y"][:2])


@pytest.mark.parametrize("label", [10, -2])
def test_upscale_refuses_labels_outside_minus_1_to_9(exported, label):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(LABELS)):
        _upscale(exported, exported["low"][2][:2], np.array([0, label], np.int32))


def test_upscale_refuses_inputs_of_different_batch_sizes(exported):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="images and label must have the same batch size"):
        _upscale(exported, exported["low"][2][:3], exported["y"][:2], np.arange(3, dtype=np.int32))


def test_config_bounds_and_older_configs():
    with pytest.raises(ValueError, match="upscale_refine_steps=1001 must be <= 1000"):
        ApplicationsConfig(upscale_refine_steps=1001)
    with pytest.raises(ValueError, match="upscale_refine_rate=0 must be > 0"):
        ApplicationsConfig(upscale_refine_rate=0)
    with pytest.raises(ValueError, match="upscale_classify_samples=0 must be >= 1"):
        ApplicationsConfig(upscale_classify_samples=0)
    older = Config.from_dict({"applications": {"classify_samples": 8}}).applications
    newest = ApplicationsConfig()
    assert (older.upscale_refine_steps, older.upscale_refine_rate) == (
        newest.upscale_refine_steps, newest.upscale_refine_rate)
    assert Config.from_dict({}).applications == newest


# ----------------------------------------------------------------------------- served


def test_upscale_in_a_process_without_this_project_or_tfp(exported, tmp_path):
    """tests/served_outputs.py calls upscale at 14x14 with the last row's label -1."""
    n = 4
    inputs = {"label": exported["y"][:n], "target_label": exported["y"][:n],
              "seed": np.arange(n, dtype=np.int32), "images": exported["x"][:n],
              "mask": np.ones([n, 28, 28, 1], np.float32),
              "z0": np.zeros([n, exported["config"].model.latent_dim], np.float32)}
    np.savez(tmp_path / "in.npz", **inputs)
    run_python(str(REPO / "tests" / "served_outputs.py"), str(tmp_path / "in.npz"),
               str(tmp_path / "out.npz"), str(exported["path"]), check=True)
    there = dict(np.load(tmp_path / "out.npz"))
    labels = exported["y"][:n].copy()
    labels[-1] = -1
    here = _upscale(exported, exported["low"][2][:n], labels, inputs["seed"])
    assert sorted(here) == sorted(SIGNATURES["upscale"]["outputs"])
    np.testing.assert_array_equal(there["0/upscale/label"], here["label"])
    for key in ("images", "z"):  # the same graph; the CPU's reductions may round apart
        np.testing.assert_allclose(there[f"0/upscale/{key}"], here[key], atol=1e-5, err_msg=key)


@pytest.fixture(scope="module")
def servers(trained):
    store = ModelStore(trained["export"].parent)
    with rest_server(store) as url, grpc_server(store) as target:
        yield {"rest": {"url": url}, "grpc": {"grpc_target": target}}
    store.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_clients_call_upscale(exported, servers, transport, monkeypatch):
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    where = servers[transport]
    low, y, seed = exported["low"][4][:3], exported["y"][:3], np.array([7, 8, 9], np.int32)
    got = client.upscale(low, y, seed, **where)
    expected = _upscale(exported, low, y, seed)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(got[key], expected[key])
    message = "HTTP 400: " if transport == "rest" else "INVALID_ARGUMENT: "
    with pytest.raises(client.ServingError, match=message + ".*" + re.escape(SIZES)):
        client.upscale(np.full([3, 9, 9, 1], 0.5, np.float32), y, seed, **where)
    with pytest.raises(client.ServingError, match=message + ".*" + re.escape(PIXELS)):
        client.upscale(np.full_like(low, np.nan), y, seed, **where)


# ----------------------------------------------------------------------------- command line


def _png(path, image):
    path.write_bytes(tf.io.encode_png(np.round(image * 255).astype(np.uint8)).numpy())
    return path


def test_client_command_line_upscales_a_7x7_png(exported, servers, tmp_path):
    """`pipelines.client --upscale` with no label: the model's choice, the grid (the input
    as blocks, then the completions) and the .npy of completions whose block means are the
    PNG's gray levels; a 28x28 PNG is refused before any request, with nothing written."""
    small = _png(tmp_path / "small.png", exported["low"][4][0])
    out, npy = tmp_path / "up.png", tmp_path / "up.npy"
    result = run_python("-m", "pipelines.client", "--url", servers["rest"]["url"],
                        "--upscale", str(small), "--num", "2", "--seed", "3", "--out", str(out),
                        "--npy", str(npy), env=NO_PROXY)
    assert result.returncode == 0, result.stderr
    assert "2 completion(s)" in result.stdout and "the model's choice" in result.stdout
    completions = np.load(npy)
    assert completions.shape == (2, 28, 28, 1)
    low = np.round(exported["low"][4][:1] * 255) / 255
    assert _block_error(completions, np.repeat(low, 2, 0)) <= GRAY_LEVEL / 10
    assert tf.io.decode_png(out.read_bytes()).shape[1] > 28 * 3  # three tiles
    big = _png(tmp_path / "big.png", exported["x"][0])
    refused = run_python("-m", "pipelines.client", "--url", servers["rest"]["url"],
                         "--upscale", str(big), "--out", str(tmp_path / "no.png"), env=NO_PROXY)
    assert refused.returncode == 2
    assert "big.png: is 28x28; expected 14x14 or 7x7" in refused.stderr
    assert not (tmp_path / "no.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--upscale", "x.png", "--denoise", "y.png"], "give one of --inpaint, --denoise, --upscale"),
    (["--upscale", "x.png", "--num", "1001"], "--num must be <= 1000, got 1001"),
    (["--upscale", "x.png", "--num", "0"], "--num must be >= 1, got 0"),
], ids=["two-actions", "num-over-bound", "num-0"])
def test_client_upscale_usage_errors(tmp_path, args, message):
    result = run_python("-m", "pipelines.client", "--url", "http://127.0.0.1:1", *args,
                        "--out", str(tmp_path / "o.png"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "o.png").exists()


def test_generate_command_line_upscales_a_14x14_and_a_7x7_png(exported, tmp_path):
    """`pipelines.generate --upscale`: the grid (the input over its blocks, then the
    completions) and the .npy of completions, equal to the export's `upscale` for the request
    seeds `seeds_for` derives from --seed, whose block means are the PNG's gray levels; with
    --label as that class, without it the model's choice."""
    from cvae.batches import seeds_for

    model = str(exported["path"].parent)
    for factor, label in ((2, "3"), (4, None)):
        side = 28 // factor
        small = _png(tmp_path / f"small{side}.png", exported["low"][factor][5])
        out, npy = tmp_path / f"up{side}.png", tmp_path / f"up{side}.npy"
        args = ["--label", label] if label is not None else []
        result = run_python("-m", "pipelines.generate", "--model", model, "--upscale",
                            str(small), *args, "--num", "3", "--seed", "2", "--out", str(out),
                            "--npy", str(npy))
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"3 completion(s) of {small} ({side}x{side}) at 28x28 as " in result.stdout
        assert ("the model's choice" in result.stdout) == (label is None)
        completions = np.load(npy)
        low = np.round(exported["low"][factor][5:6] * 255) / 255  # the PNG's gray levels
        direct = _upscale(exported, np.repeat(low, 3, 0).astype(np.float32),
                          [-1 if label is None else int(label)] * 3, seeds_for(2, 3))
        np.testing.assert_array_equal(completions, direct["images"])
        assert _block_error(completions, np.repeat(low, 3, 0)) <= GRAY_LEVEL / 10
        grid = tf.io.decode_png(out.read_bytes()).numpy()
        assert grid.shape == (2 + 30, 2 + 4 * 30, 1)  # the input, then three completions
        shown = np.round(np.repeat(np.repeat(low[0], factor, 0), factor, 1) * 255)
        np.testing.assert_array_equal(grid[2:30, 2:30], shown.astype(np.uint8))


@pytest.mark.parametrize("args, message", [
    (["--upscale", "x.png", "--denoise", "y.png"],
     "give one of --restyle, --inpaint, --denoise and --upscale"),
    (["--upscale", "x.png", "--num", "1001"], "--num must be <= 1000, got 1001"),
    (["--upscale", "x.png", "--num", "0"], "--num must be >= 1, got 0"),
    (["--upscale", "x.png", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--upscale", "x.png", "--label", "Sneakers"], "error: unknown class 'Sneakers'"),
    (["--upscale", "gone.png"], "error: gone.png: cannot read (No such file or directory)"),
], ids=["two-actions", "num-over-bound", "num-0", "seed", "label", "no-file"])
def test_generate_upscale_usage_errors_come_before_tensorflow(tmp_path, args, message):
    """Refused with exit status 2, TensorFlow not imported and nothing written."""
    code = ("import runpy, sys\n"
            "sys.argv = ['generate.py', *sys.argv[1:]]\n"
            "try:\n"
            "    runpy.run_module('pipelines.generate', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    status = e.code\n"
            "print('tensorflow' in sys.modules, status)\n")
    (tmp_path / "x.png").write_bytes(b"")  # there, so that the flags are what is refused
    # The shipped model's path: a label is checked against its classes.json, without TensorFlow.
    result = run_python("-c", code, *args, "--model", str(REPO / "saved_models" / "cvae"),
                        "--out", str(tmp_path / "o.png"), cwd=tmp_path)
    assert result.stdout.strip().splitlines()[-1] == "False 2", result.stderr[-2000:]
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_generate_upscale_refuses_a_28x28_png(exported, tmp_path):
    big = _png(tmp_path / "big.png", exported["x"][0])
    result = run_python("-m", "pipelines.generate", "--model", str(exported["path"].parent),
                        "--upscale", str(big), "--out", str(tmp_path / "o.png"))
    assert result.returncode == 2
    assert f"error: {big}: is 28x28; expected 14x14 or 7x7" in result.stderr
    assert not (tmp_path / "o.png").exists()
