"""The applications (`cvae.applications`): in-painting, denoising, classification and the
typicality score, on the small trained export of the `trained` fixture: against the exported
model's own functions, in a process without this project or TFP, under `saved_model_cli run`,
and through the stand-in REST and gRPC servers."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cvae.serving import client
from cvae.evaluation import metrics
from cvae.applications import classify as classify_app
from cvae.applications import corruptions
from cvae.serving import applications as served
from cvae.config import ApplicationsConfig, Config
from cvae.data import load_splits, unit_images
from cvae.serving.contract import SIGNATURES
from cvae.batches import seeds_for
from cvae.serving.generate import load as served_model
from conftest import REPO, run_python
from fake_serving import ModelStore, grpc_server, rest_server

NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
MASK_VALUES = "mask must be 1 (pixel known) or 0 (pixel missing) at every pixel"


@pytest.fixture(scope="module")
def exported(trained):
    """The trained export, loaded, with its config and some test garments."""
    path = trained["export"]
    config = Config.from_json((path / "assets.extra" / "config.json").read_text())
    splits = load_splits(config.data)
    x, y = unit_images(splits.test[0][:40]), splits.test[1][:40].astype(np.int32)
    loaded = tf.saved_model.load(str(path))
    return {"path": path, "config": config, "loaded": loaded, "sig": loaded.signatures,
            "x": x, "y": y, "splits": splits}


def _call(sig, **inputs):
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


# ----------------------------------------------------------------------------- in-painting


def test_inpaint_keeps_known_pixels_exactly_and_fills_the_missing_ones(exported):
    x, y = exported["x"][:12], exported["y"][:12]
    mask = corruptions.mask("random", 12, seed=3)
    seed = np.arange(12, dtype=np.int32)
    out = _call(exported["sig"]["inpaint"], images=x, mask=mask, label=y, seed=seed)["images"]
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out[mask == 1], x[mask == 1])
    assert 0 <= out.min() and out.max() <= 1
    assert np.abs(out - x)[mask == 0].mean() > 1e-3  # the missing pixels are the model's
    # All known: the input itself, bit for bit.
    same = _call(exported["sig"]["inpaint"], images=x, mask=np.ones_like(x), label=y,
                 seed=seed)["images"]
    np.testing.assert_array_equal(same, x)
    # A row depends on its own inputs alone (not on its batch), and on its seed.
    alone = _call(exported["sig"]["inpaint"], images=x[5:6], mask=mask[5:6], label=y[5:6],
                  seed=seed[5:6])["images"]
    np.testing.assert_allclose(alone[0], out[5], atol=1e-6)
    other_seed = _call(exported["sig"]["inpaint"], images=x, mask=mask, label=y,
                       seed=seed + 1000)["images"]
    assert not np.array_equal(other_seed, out)


def test_refine_climbs_the_objective_row_by_row(trained, exported):
    """The gradient steps after resampling raise each row's log p(x_known | z, y) + log p(z|y),
    a row's result does not depend on its batch, and no step leaves the code as it was."""
    from cvae.applications import importance
    from cvae.applications import inpaint as inpaint_app

    model = trained["result"].model
    x, y = tf.constant(exported["x"][:6]), tf.constant(exported["y"][:6])
    mask = tf.constant(corruptions.mask("bottom-half", 6))
    known = mask * x

    def log_prior(z, labels):  # N(0, I)
        return tf.reduce_sum(-0.5 * tf.square(z) - 0.5 * importance.LOG_2PI, -1)

    def objective(z):
        params = model.decoder_params(z, y)
        return (tf.reduce_sum(mask * importance.params_log_prob(model, params, known), [1, 2, 3])
                + log_prior(z, y)).numpy()

    z0 = model.encode(known, y)["mean"]
    z = inpaint_app.refine(model, log_prior, z0, known, mask, y, 20, 0.2)
    before, after = objective(z0), objective(z)
    assert (after > before).all() and (after - before).mean() > 1.0, (before, after)
    np.testing.assert_array_equal(inpaint_app.refine(model, log_prior, z0, known, mask, y, 0, 0.2),
                                  z0)
    alone = inpaint_app.refine(model, log_prior, z0[2:3], known[2:3], mask[2:3], y[2:3], 20, 0.2)
    np.testing.assert_allclose(alone[0], z[2], atol=1e-4)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, float("nan")], ids=["half", "2", "-1", "nan"])
def test_inpaint_refuses_mask_values_other_than_0_and_1(exported, value):
    mask = np.ones([2, 28, 28, 1], np.float32)
    mask[1, 3, 4, 0] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(MASK_VALUES)):
        _call(exported["sig"]["inpaint"], images=exported["x"][:2], mask=mask,
              label=exported["y"][:2], seed=np.array([0, 1], np.int32))


def test_inpaint_refuses_a_mask_of_another_shape_or_batch(exported):
    x, y, seed = exported["x"][:2], exported["y"][:2], np.array([0, 1], np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mask must have shape \[N, 28, 28"):
        _call(exported["sig"]["inpaint"], images=x, mask=np.ones([2, 28, 27, 1], np.float32),
              label=y, seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="images and mask must have the same batch size"):
        _call(exported["sig"]["inpaint"], images=x, mask=np.ones([1, 28, 28, 1], np.float32),
              label=y, seed=seed)


def test_inpaint_with_nothing_known_is_a_sample_of_the_class(exported):
    """With an all-zero mask the completion is drawn from the class's own codes: the project's
    classifier recognises it about as often as `serving_default`'s samples."""
    from cvae.evaluation import classifier

    classify = classifier.load()[0]
    labels = np.repeat(np.arange(10, dtype=np.int32), 20)
    seeds = np.arange(200, dtype=np.int32)
    inpainted = _call(exported["sig"]["inpaint"], images=np.zeros([200, 28, 28, 1], np.float32),
                      mask=np.zeros([200, 28, 28, 1], np.float32), label=labels,
                      seed=seeds)["images"]
    generated = _call(exported["sig"]["serving_default"], label=labels, seed=seeds)["images"]

    def recognised(images):
        return (classifier.predict(classify, images)["probabilities"].argmax(1) == labels).mean()

    assert len({im.tobytes() for im in inpainted}) > 100  # samples, not one image per class
    assert recognised(inpainted) >= recognised(generated) - 0.1, (recognised(inpainted),
                                                                  recognised(generated))


def test_named_masks_and_mask_pngs(tmp_path):
    assert corruptions.mask("bottom-half")[0, 14:].max() == 0
    assert corruptions.mask("bottom-half")[0, :14].min() == 1
    assert corruptions.mask("right-half")[0, :, 14:].max() == 0
    centre = corruptions.mask("centre")[0]
    assert centre.sum() == 784 - 14 * 14 and centre[14, 14, 0] == 0
    missing = 1 - corruptions.mask("random", 200, seed=1).mean((1, 2, 3))
    assert 0.45 < missing.min() and missing.max() < 0.75
    png = tmp_path / "mask.png"
    png.write_bytes(tf.io.encode_png(
        (corruptions.mask("centre")[0] * 255).astype(np.uint8)).numpy())
    np.testing.assert_array_equal(served.read_mask(png), corruptions.mask("centre")[0])
    gray = tmp_path / "gray.png"
    gray.write_bytes(tf.io.encode_png(np.full([28, 28, 1], 128, np.uint8)).numpy())
    with pytest.raises(ValueError, match="a mask PNG must be black .* and white .* only"):
        served.read_mask(gray)
    with pytest.raises(ValueError, match="unknown mask 'top'"):
        corruptions.mask("top")


# ----------------------------------------------------------------------------- classification


def test_bayes_rule_on_a_hand_made_two_class_case():
    log_px_y = tf.constant([[-10.0, -12.0], [-3.0, -3.0]])
    log_prior = tf.math.log(tf.constant([0.3, 0.7]))
    p = classify_app.bayes_posterior(log_px_y, log_prior).numpy()
    first = 0.3 * math.exp(-10) / (0.3 * math.exp(-10) + 0.7 * math.exp(-12))
    np.testing.assert_allclose(p[0], [first, 1 - first], rtol=1e-5)
    np.testing.assert_allclose(p[1], [0.3, 0.7], rtol=1e-5)  # equal likelihoods: the prior
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    evidence = classify_app.log_evidence(log_px_y, log_prior).numpy()
    np.testing.assert_allclose(evidence[0], math.log(0.3 * math.exp(-10) + 0.7 * math.exp(-12)),
                               rtol=1e-6)
    # A temperature T divides the log joint: T = 2 is the square root of the odds.
    odds = classify_app.bayes_posterior(log_px_y, log_prior, 2.0).numpy()[0]
    np.testing.assert_allclose(odds[0] / odds[1], math.sqrt(first / (1 - first)), rtol=1e-5)


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, size=(20000, 10))  # overconfident log-likelihoods
    p = np.exp(logits / 12 - (logits / 12).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    fitted = classify_app.fit_temperature(logits, np.zeros(10), labels)
    assert abs(fitted - 12) < 0.6, fitted
    assert classify_app.class_log_prior(np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))[0] == \
        pytest.approx(math.log(2 / 11))
    with pytest.raises(ValueError, match="class 9 has no training images"):
        classify_app.class_log_prior(np.arange(9))


def _mixture_log_density(z, loaded, c):
    """log p(z | y = c) [n] under class c's fitted mixture at temperature 1, from the export's
    variables (numpy: independent of the graph's computation)."""
    loc, tril = loaded.sampling_loc.numpy()[c], loaded.sampling_scale_tril.numpy()[c]
    weights = loaded.sampling_weights.numpy()[c]
    d = z.shape[1]
    parts = []
    for m in range(len(loc)):
        white = np.linalg.solve(tril[m].astype(np.float64), (z - loc[m]).T).T
        parts.append(-0.5 * (white ** 2).sum(1) - np.log(np.diag(tril[m])).sum()
                     - 0.5 * d * math.log(2 * math.pi) + math.log(weights[m]))
    parts = np.stack(parts, 1)
    top = parts.max(1)
    return top + np.log(np.exp(parts - top[:, None]).sum(1))


def test_classify_is_bayes_rule_on_robust_bounds(trained, exported):
    """The per-class bounds recomputed with the same draws from the export's own `encode`
    signature and the prior generation draws from (each class's fitted mixture at temperature
    1) give `classify`'s outputs: its probabilities are Bayes' rule on bounds whose pixel
    likelihoods are the model's mixed with a uniform one in the config's share
    (`classify_pixel_outlier`), its log p(x) is on the bounds of the model's own likelihood
    (the export's `log_likelihood` function)."""
    from cvae.applications import importance

    model = trained["result"].model
    assert exported["config"].model.sampling == "class_posterior"
    assert 0 < exported["config"].applications.classify_pixel_outlier < 1
    x = exported["x"][:8]
    loaded, config = exported["loaded"], exported["config"]
    settings = config.applications
    d = config.model.latent_dim
    eps = tf.random.stateless_normal([settings.classify_samples, d], classify_app.SEED).numpy()
    own, robust = np.zeros([len(x), 10]), np.zeros([len(x), 10])
    for c in range(10):
        label = np.full(len(x), c, np.int32)
        post = _call(exported["sig"]["encode"], images=x, label=label)
        z = post["mean"][:, None] + post["stddev"][:, None] * eps  # [n, K, d]
        k = len(eps)
        log_pz = _mixture_log_density(z.reshape(-1, d), loaded, c).reshape(-1, k)
        log_q = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)
                 - np.log(post["stddev"])[:, None]).sum(-1)
        log_px = loaded.log_likelihood(images=tf.constant(np.repeat(x, k, 0)),
                                       label=tf.constant(np.repeat(label, k)),
                                       z=tf.constant(z.reshape(-1, d))).numpy().reshape(-1, k)
        own[:, c] = metrics.log_mean_exp(log_px + log_pz - log_q, axis=1)
        # Each pixel's likelihood, the decoder's mixed with a uniform one over the 256 gray
        # levels in the config's share: log((1 - p) p(x_ij | z, y) + p / 256).
        log_pixel = importance.params_log_prob(
            model, model.decoder_params(tf.constant(z.reshape(-1, d)), np.repeat(label, k)),
            tf.constant(np.repeat(x, k, 0))).numpy()
        share = settings.classify_pixel_outlier
        log_px = np.log((1 - share) * np.exp(log_pixel.astype(np.float64)) + share / 256)
        log_px = log_px.sum((1, 2, 3)).reshape(-1, k)
        robust[:, c] = metrics.log_mean_exp(log_px + log_pz - log_q, axis=1)
    log_prior = loaded.class_log_prior.numpy()
    train_labels = exported["splits"].train[1]
    np.testing.assert_allclose(log_prior, np.log(np.bincount(train_labels, minlength=10)
                                                 / len(train_labels)), rtol=1e-5)
    # The export's own bounds (what the calibration was fitted on) are the robust ones.
    np.testing.assert_allclose(loaded.class_log_likelihoods(images=tf.constant(x)).numpy(),
                               robust, rtol=1e-5)
    joint = robust + log_prior
    t = settings.classify_temperature
    expected = np.exp(joint / t - (joint / t).max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    out = _call(exported["sig"]["classify"], images=x)
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(out["label"], out["probabilities"].argmax(1))
    joint = own + log_prior
    top = joint.max(1)
    np.testing.assert_allclose(out["log_likelihood"],
                               top + np.log(np.exp(joint - top[:, None]).sum(1)), rtol=1e-5)
    bits = np.array([8 * len(tf.io.encode_png(np.round(im * 255).astype(np.uint8)).numpy())
                     for im in x])
    np.testing.assert_allclose(out["typicality"], out["log_likelihood"] + math.log(2) * bits,
                               rtol=1e-5)
    # One image's answer does not depend on its batch.
    alone = _call(exported["sig"]["classify"], images=x[3:4])
    np.testing.assert_allclose(alone["probabilities"][0], out["probabilities"][3], atol=1e-6)


def test_typicality_ranks_noise_and_blank_images_below_garments(exported):
    """On the small model (one epoch of 512 images) already: most garments above every noise
    image and every blank one (raw log p(x) puts blank images above every garment)."""
    garments = _call(exported["sig"]["classify"], images=exported["x"])
    noise = _call(exported["sig"]["classify"], images=corruptions.uniform_noise(40, seed=1))
    blank = _call(exported["sig"]["classify"], images=corruptions.blank(2))
    for other in (noise, blank):
        assert np.median(garments["typicality"]) > other["typicality"].max()
    assert metrics.auroc(garments["typicality"], noise["typicality"]) > 0.8
    assert blank["log_likelihood"].min() > np.median(garments["log_likelihood"])


def test_classify_refuses_pixels_outside_0_1(exported):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixels in \[0, 1\]"):
        _call(exported["sig"]["classify"], images=np.full([1, 28, 28, 1], 255.0, np.float32))


# ----------------------------------------------------------------------------- denoising


def test_median_filter_is_the_3x3_median(exported):
    from cvae.applications import denoise

    rng = np.random.default_rng(0)
    images = rng.random([3, 28, 28, 1]).astype(np.float32)
    graph = denoise.median_filter_3x3(tf.constant(images)).numpy()
    np.testing.assert_array_equal(graph, served.median_filter_3x3(images))
    # An inner pixel by hand.
    np.testing.assert_array_equal(graph[1, 10, 7, 0], np.median(images[1, 9:12, 6:9, 0]))


def test_grid_posterior_mean_follows_the_more_certain_side():
    """A sure decoder keeps its value whatever the noisy pixel says; with little noise the
    observed value wins where the decoder is unsure (but for the outlier component's share,
    which pulls towards the decoder's own values)."""
    from cvae.applications import denoise

    def params(loc, scale):  # the discretised logistic's parameters: loc, softplus^-1(scale)
        raw = np.log(np.expm1(scale - 1e-3))
        return np.stack([np.full([1, 28, 28], loc), np.full([1, 28, 28], raw)],
                        -1).astype(np.float32)

    observed = np.full([1, 28, 28, 1], 0.6, np.float32)
    sure = denoise.grid_posterior_mean(params(0.2, 0.002), 1e-3, observed, tf.constant([0.2]))
    assert abs(float(sure.numpy().mean()) - 0.2) < 0.02
    unsure = denoise.grid_posterior_mean(params(0.2, 0.5), 1e-3, observed, tf.constant([0.02]))
    assert abs(float(unsure.numpy().mean()) - 0.6) < 0.05


def test_denoise_is_deterministic_and_in_range(exported):
    x, y = exported["x"][:6], exported["y"][:6]
    noisy = corruptions.gaussian_noise(x, 0.2, seed=4)
    out = _call(exported["sig"]["denoise"], images=noisy, label=y)["images"]
    again = _call(exported["sig"]["denoise"], images=noisy, label=y)["images"]
    np.testing.assert_array_equal(out, again)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    alone = _call(exported["sig"]["denoise"], images=noisy[2:3], label=y[2:3])["images"]
    np.testing.assert_allclose(alone[0], out[2], atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
        _call(exported["sig"]["denoise"], images=noisy[:1], label=np.array([10], np.int32))


def test_denoise_refinement_climbs_the_noise_models_likelihood(trained, exported):
    """The steps after weighting raise each image's log p(noisy | z, y) + log N(z; 0, I) at the
    noise level chosen, from the best-weighted code; 0 steps leave that code as it was."""
    from cvae.applications import denoise

    model = trained["result"].model
    x, y = exported["x"][:6], tf.constant(exported["y"][:6])
    noisy = tf.constant(corruptions.gaussian_noise(x, 0.2, seed=4))
    settings = exported["config"].applications
    eps = tf.random.stateless_normal([settings.denoise_samples, model.config.latent_dim],
                                     denoise.SEED)
    plain = denoise.denoise(model, noisy, y, eps)
    refined = denoise.denoise(model, noisy, y, eps, refine_steps=20,
                              refine_rate=settings.denoise_refine_rate)
    np.testing.assert_array_equal(plain["sigma"], refined["sigma"])
    assert not np.allclose(plain["z"], refined["z"])

    def objective(z):
        return (denoise.log_noisy_image(model, noisy, model.decoder_params(z, y),
                                        plain["sigma"]) + model.prior().log_prob(z)).numpy()

    before, after = objective(plain["z"]), objective(refined["z"])
    assert (after > before).all(), (before, after)
    # The export's denoise is this function with the config's steps.
    steps = exported["config"].applications.denoise_refine_steps
    assert steps > 0
    served = _call(exported["sig"]["denoise"], images=noisy.numpy(), label=y.numpy())["images"]
    np.testing.assert_allclose(served, denoise.denoise(
        model, noisy, y, eps, refine_steps=steps, refine_rate=settings.denoise_refine_rate)
        ["images"], atol=1e-4)


# ----------------------------------------------------------------------------- serving


def test_new_signatures_in_a_process_without_this_project_or_tfp(exported, tmp_path):
    rng = np.random.default_rng(1)
    n = 4
    inputs = {"label": exported["y"][:n], "target_label": exported["y"][:n],
              "seed": np.arange(n, dtype=np.int32), "images": exported["x"][:n],
              "mask": corruptions.mask("centre", n),
              "z0": rng.normal(size=(n, exported["config"].model.latent_dim)).astype(np.float32)}
    np.savez(tmp_path / "in.npz", **inputs)
    run_python(str(REPO / "tests" / "served_outputs.py"), str(tmp_path / "in.npz"),
               str(tmp_path / "out.npz"), str(exported["path"]), check=True)
    there = dict(np.load(tmp_path / "out.npz"))
    calls = {"inpaint": dict(images=inputs["images"], mask=inputs["mask"],
                             label=inputs["label"], seed=inputs["seed"]),
             "denoise": dict(images=inputs["images"], label=inputs["label"]),
             "classify": dict(images=inputs["images"])}
    for name, kwargs in calls.items():
        here = _call(exported["sig"][name], **kwargs)
        assert sorted(here) == sorted(SIGNATURES[name]["outputs"])
        for key, value in here.items():
            np.testing.assert_array_equal(there[f"0/{name}/{key}"], value, err_msg=name)


def test_new_signatures_under_saved_model_cli_run(exported, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    x, y = exported["x"][:2], exported["y"][:2]
    mask = corruptions.mask("bottom-half", 2)
    files = {"images": x, "label": y, "mask": mask, "seed": np.array([0, 1], np.int32),
             "bad_mask": np.full_like(mask, 0.5)}
    for name, value in files.items():
        np.save(tmp_path / f"{name}.npy", value)

    def run(signature, names, mask_file="mask"):
        given = ";".join(f"{n}={tmp_path / (mask_file if n == 'mask' else n)}.npy" for n in names)
        return subprocess.run([cli, "run", "--dir", str(exported["path"]), "--tag_set", "serve",
                               "--signature_def", signature, "--outdir",
                               str(tmp_path / f"out-{signature}-{mask_file}"), "--inputs", given],
                              capture_output=True, text=True, timeout=300)

    for signature, names in (("inpaint", ["images", "mask", "label", "seed"]),
                             ("denoise", ["images", "label"]), ("classify", ["images"])):
        result = run(signature, names)
        assert result.returncode == 0, result.stderr[-2000:]
        here = _call(exported["sig"][signature], **{n: files[n] for n in names})
        for key, value in here.items():
            np.testing.assert_allclose(
                np.load(tmp_path / f"out-{signature}-mask" / f"{key}.npy"), value, rtol=1e-5,
                atol=1e-6, err_msg=f"{signature}/{key}")
    bad = run("inpaint", ["images", "mask", "label", "seed"], mask_file="bad_mask")
    assert bad.returncode != 0 and MASK_VALUES in bad.stderr


@pytest.fixture(scope="module")
def servers(trained):
    store = ModelStore(trained["export"].parent)
    with rest_server(store) as url, grpc_server(store) as target:
        yield {"rest": {"url": url}, "grpc": {"grpc_target": target}}
    store.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_clients_call_every_new_signature(exported, servers, transport, monkeypatch):
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    where = servers[transport]
    x, y = exported["x"][:3], exported["y"][:3]
    mask, seed = corruptions.mask("right-half", 3), np.array([7, 8, 9], np.int32)
    sig = exported["sig"]
    np.testing.assert_array_equal(
        client.inpaint(x, mask, y, seed, **where),
        _call(sig["inpaint"], images=x, mask=mask, label=y, seed=seed)["images"])
    np.testing.assert_array_equal(client.denoise(x, y, **where),
                                  _call(sig["denoise"], images=x, label=y)["images"])
    got, expected = client.classify(x, **where), _call(sig["classify"], images=x)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(got[key], expected[key])
    message = "HTTP 400: " if transport == "rest" else "INVALID_ARGUMENT: "
    with pytest.raises(client.ServingError, match=message + ".*" + re.escape(MASK_VALUES)):
        client.inpaint(x, np.full_like(mask, 0.5), y, seed, **where)


def test_client_output_dtypes_are_the_contracts():
    assert sorted(client.OUTPUT_DTYPES) == sorted(SIGNATURES)
    for name, contract in SIGNATURES.items():
        assert client.OUTPUT_DTYPES[name] == {k: t.dtype for k, t in contract["outputs"].items()}


# ----------------------------------------------------------------------------- command lines


def _png(path, image):
    path.write_bytes(tf.io.encode_png(np.round(image * 255).astype(np.uint8)).numpy())
    return path


def test_generate_inpaint_and_denoise_and_classify_command_lines(exported, tmp_path):
    model = str(exported["path"].parent)
    garment = _png(tmp_path / "garment.png", exported["x"][0])
    label = str(int(exported["y"][0]))
    result = run_python("-m", "pipelines.generate", "--model", model, "--inpaint", str(garment),
                        "--mask", "bottom-half", "--label", label, "--num", "3", "--seed", "2",
                        "--out", str(tmp_path / "done.png"), "--npy", str(tmp_path / "done.npy"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 completion(s) of" in result.stdout and "(mask bottom-half)" in result.stdout
    completions = np.load(tmp_path / "done.npy")
    source = np.round(exported["x"][0] * 255) / 255
    mask = corruptions.mask("bottom-half")[0]
    np.testing.assert_allclose(completions[:, :14], np.broadcast_to(source[:14], (3, 14, 28, 1)),
                               atol=1e-6)
    grid = tf.io.decode_png((tmp_path / "done.png").read_bytes()).numpy()
    assert grid.shape == (2 + 30, 2 + 4 * 30, 1)  # the masked input, then three completions
    direct = served.inpaint(served_model(model), np.repeat(source[None], 3, 0),
                            np.repeat(mask[None], 3, 0), [int(label)] * 3,
                            seeds_for(2, 3))
    np.testing.assert_array_equal(completions, direct)

    noisy = _png(tmp_path / "noisy.png", corruptions.gaussian_noise(exported["x"][:1], 0.2)[0])
    result = run_python("-m", "pipelines.generate", "--model", model, "--denoise", str(noisy),
                        "--label", label, "--out", str(tmp_path / "clean.png"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "denoised as" in result.stdout and (tmp_path / "clean.png").is_file()

    result = run_python("-m", "pipelines.classify", str(garment), str(noisy), "--model", model)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{garment}: ")
    assert "top three: " in lines[0] and "log-likelihood " in lines[0] and " nats" in lines[0]


@pytest.mark.parametrize("args,message", [
    (["--inpaint", "x.png", "--label", "Dress"], "--inpaint needs --mask and --label"),
    (["--label", "Dress", "--mask", "centre"], "--mask goes with --inpaint"),
    (["--inpaint", "x.png", "--denoise", "y.png", "--mask", "centre", "--label", "Dress"],
     "give one of --restyle, --inpaint, --denoise and --upscale"),
    (["--denoise", "x.png"], "give --label"),
    (["--inpaint", "x.png", "--mask", "centre", "--label", "Dress", "--num", "1001"],
     "--num must be <= 1000"),
], ids=["no-mask", "mask-alone", "two-actions", "denoise-no-label", "inpaint-num"])
def test_generate_application_usage_errors(tmp_path, args, message):
    result = run_python("-m", "pipelines.generate", *args, "--out", str(tmp_path / "o.png"))
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_generate_inpaint_refuses_a_gray_mask_png(exported, tmp_path):
    garment = _png(tmp_path / "garment.png", exported["x"][0])
    gray = _png(tmp_path / "gray.png", np.full([28, 28, 1], 0.5, np.float32))
    result = run_python("-m", "pipelines.generate", "--model", str(exported["path"].parent),
                        "--inpaint", str(garment), "--mask", str(gray), "--label", "Dress",
                        "--out", str(tmp_path / "o.png"))
    assert result.returncode == 2
    assert (f"error: {gray}: a mask PNG must be black (0: missing) and white (255: known) only; "
            f"it has gray level(s) 128") in result.stderr
    assert not (tmp_path / "o.png").exists()


def test_classify_command_line_refuses_a_colour_png(exported, tmp_path):
    rgb = tmp_path / "rgb.png"
    rgb.write_bytes(tf.io.encode_png(np.zeros([28, 28, 3], np.uint8)).numpy())
    result = run_python("-m", "pipelines.classify", str(rgb), "--model",
                        str(exported["path"].parent))
    assert result.returncode == 2
    assert f"error: {rgb}: is a RGB PNG; expected 8-bit grayscale" in result.stderr


# ----------------------------------------------------------------------------- evaluation, speed


def test_evaluate_sections_and_their_figures(exported):
    from cvae.evaluation import classifier
    from cvae.evaluation import applications as apps
    from cvae.evaluation import application_figures as figures

    model = served_model(exported["path"])
    settings = apps.Settings(images=20, classify_images=20, ood_images=10)
    results, arrays = apps.evaluate(model, classifier.load()[0], exported["splits"], settings,
                                    log=lambda *_: None)
    assert sorted(results["inpainting"]["masks"]) == sorted(corruptions.MASKS)
    assert sorted(results["denoising"]["noises"]) == sorted(corruptions.NOISES)
    for r in results["inpainting"]["masks"].values():
        assert r["ratio"] == pytest.approx(r["mse_missing"] / r["class_mean_mse_missing"])
    c = results["classification"]
    assert c["images"] == 20 and 0 <= c["accuracy"] <= 1 and 0 <= c["ece"] <= 1
    assert c["temperature"] == exported["config"].applications.classify_temperature
    assert sorted(results["scores"]["auroc"]) == ["blank", "constant", "digits", "uniform noise",
                                                  "upside down"]
    rows = apps.targets(results)
    assert len(rows) == 7 + 4 and all(isinstance(ok, bool) for _, _, ok in rows)  # 4: upscale
    text = "\n".join(apps.markdown(results))
    assert "## Applications" in text and "| bottom-half |" in text
    assert "### Super-resolution" in text and "| 7x7 |" in text
    for picture in (figures.inpainting(arrays["inpainting"]),
                    figures.denoising(arrays["denoising"]),
                    figures.upscaling(arrays["upscaling"]),
                    figures.reliability(arrays["classification"]),
                    figures.score_histograms(arrays["scores"])):
        assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(results)  # JSON-ready


def test_upscale_section_recomputed_from_the_signature(exported):
    """The super-resolution section's figures, recomputed here: the export's `upscale` of the
    test images' block means (numpy's means of each block; the section's request seeds),
    bicubic by `tf.image.resize` clipped to [0, 1], nearest by repeating each pixel, the
    classifier's verdicts, label -1's choices, and the target rows that follow from them."""
    from cvae.evaluation import applications as apps
    from cvae.evaluation import classifier

    model = served_model(exported["path"])
    settings = apps.Settings(images=12, seed=5)
    classify = classifier.load()[0]
    x = unit_images(exported["splits"].test[0][:12])
    y = exported["splits"].test[1][:12].astype(np.int32)
    results, arrays = apps.upscaling(model, classify, (x, y), settings, log=lambda *_: None)
    assert results["images"] == 12 and sorted(results["factors"]) == ["14x14", "7x7"]

    def recognised(images):
        return float((classifier.predict(classify, images)["probabilities"].argmax(1)
                      == y).mean())

    for key, factor in (("14x14", 2), ("7x7", 4)):
        r = results["factors"][key]
        side = 28 // factor
        low = x.reshape(12, side, factor, side, factor, 1).mean((2, 4))
        seeds = seeds_for(5, 12)
        out = _call(exported["sig"]["upscale"], images=low.astype(np.float32), label=y,
                    seed=seeds)
        np.testing.assert_allclose(arrays["outputs"][key], out["images"], atol=1e-6)
        cubic = np.clip(tf.image.resize(low, [28, 28], method="bicubic").numpy(), 0, 1)
        near = np.repeat(np.repeat(low, factor, 1), factor, 2)
        for name, images in (("upscale", out["images"]), ("bicubic", cubic), ("nearest", near)):
            assert r["mse"][name] == pytest.approx(float(((images - x) ** 2).mean()), rel=1e-4)
            assert r["recognised"][name] == pytest.approx(recognised(images))
        assert r["ratio_to_bicubic"] == pytest.approx(r["mse"]["upscale"] / r["mse"]["bicubic"])
        blocks = out["images"].reshape(12, side, factor, side, factor, 1).mean((2, 4))
        assert r["max_block_error"] == pytest.approx(np.abs(blocks - low).max(), abs=1e-6)
        assert r["max_block_error"] <= apps.TARGET_BLOCK_ERROR  # the projection's promise
        guessed = _call(exported["sig"]["upscale"], images=low.astype(np.float32),
                        label=np.full(12, -1, np.int32), seed=seeds)
        u = r["label_unknown"]
        assert u["chosen_accuracy"] == pytest.approx(float((guessed["label"] == y).mean()))
        assert u["mse"] == pytest.approx(float(((guessed["images"] - x) ** 2).mean()), rel=1e-4)
        # The figure: input (each pixel over its block), bicubic, upscale, truth.
        row = arrays["rows"][(0 if factor == 2 else apps.UPSCALE_FIGURE_ROWS)]
        np.testing.assert_allclose(row[0], near[0], atol=1e-6)
        np.testing.assert_array_equal(row[3], x[0])
    rows = apps.upscale_targets(results)
    factors = results["factors"]
    assert [ok for _, _, ok in rows] == [
        factors["14x14"]["ratio_to_bicubic"] <= 0.6, factors["7x7"]["ratio_to_bicubic"] <= 0.8,
        factors["7x7"]["recognised"]["upscale"] >= 0.80, True]
    assert rows[0][0] == "super-resolution, 14x14: MSE <= 0.6x bicubic's"


def test_benchmark_times_the_applications(exported, tmp_path):
    out = tmp_path / "apps.json"
    result = run_python("-m", "pipelines.benchmark", "--applications", "--quick", "--model",
                        str(exported["path"].parent), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    timed = report["applications"]
    assert timed["batch_size"] == 100 and timed["settings"]["classify_samples"] >= 1
    names = ("classify", "inpaint", "denoise", "upscale 14x14", "upscale 7x7")
    assert timed["timed"] == list(names)  # the fixture's export has upscale
    for name in names:
        assert timed[name]["p50_seconds"] > 0 and timed[name]["calls"] == 1
    checks = report["targets"][0]["checks"]
    assert [c["what"] for c in checks] == ["classify p50 s", "inpaint p50 s",
                                           "upscale 14x14 p50 s", "upscale 7x7 p50 s"]
    assert [c["threshold"] for c in checks] == [5.0, 5.0, 2.0, 2.0]
    assert all(c["passed"] == (c["value"] <= c["threshold"]) for c in checks)
    assert report["targets"][0]["passed"] == all(c["passed"] for c in checks)
    assert "applications at batch 100" in result.stdout
    assert "upscale 7x7, batch 100" in result.stdout


def test_applications_config_is_checked():
    with pytest.raises(ValueError, match="classify_samples=0 must be >= 1"):
        ApplicationsConfig(classify_samples=0)
    with pytest.raises(ValueError, match="classify_temperature=-1.0 must be > 0"):
        ApplicationsConfig(classify_temperature=-1.0)
    with pytest.raises(ValueError, match=r"inpaint_samples=1 must be >= 2 \(one from the encoder"):
        ApplicationsConfig(inpaint_samples=1)
    with pytest.raises(ValueError, match="inpaint_refine_steps=-1 must be >= 0"):
        ApplicationsConfig(inpaint_refine_steps=-1)
    with pytest.raises(ValueError, match="inpaint_refine_steps=1001 must be <= 1000"):
        ApplicationsConfig(inpaint_refine_steps=1001)
    with pytest.raises(ValueError, match="inpaint_refine_rate=0 must be > 0"):
        ApplicationsConfig(inpaint_refine_rate=0)
    for name in ("denoise_refine_steps", "reconstruct_refine_steps"):
        with pytest.raises(ValueError, match=f"{name}=-1 must be >= 0"):
            ApplicationsConfig(**{name: -1})
        with pytest.raises(ValueError, match=f"{name}=1001 must be <= 1000"):
            ApplicationsConfig(**{name: 1001})
    for name in ("denoise_refine_rate", "reconstruct_refine_rate"):
        with pytest.raises(ValueError, match=f"{name}=0 must be > 0"):
            ApplicationsConfig(**{name: 0})
    for name in ("classify_pixel_outlier", "reconstruct_pixel_outlier"):
        for share in (-0.1, 1.0):
            with pytest.raises(ValueError, match=rf"{name}={share} must be in \[0, 1\)"):
                ApplicationsConfig(**{name: share})
    assert ApplicationsConfig(inpaint_refine_steps=0).inpaint_refine_steps == 0  # resampling only
    config = Config().replace(classify_samples=4, inpaint_iterations=2, inpaint_refine_steps=7,
                              inpaint_refine_rate=0.05)
    assert Config.from_json(config.to_json()) == config
    # A config written before the applications existed reads as their defaults.
    old = json.loads(Config().to_json())
    del old["applications"]
    assert Config.from_dict(old).applications == ApplicationsConfig()
    # One written before the refinement existed (its exports resampled only) reads as 0 steps.
    before_refine = json.loads(Config().replace(inpaint_iterations=6).to_json())
    del before_refine["applications"]["inpaint_refine_steps"]
    del before_refine["applications"]["inpaint_refine_rate"]
    applications = Config.from_dict(before_refine).applications
    assert applications.inpaint_refine_steps == 0 and applications.inpaint_iterations == 6
    assert applications.inpaint_refine_rate == ApplicationsConfig().inpaint_refine_rate
    # One written before denoise and reconstruct refined their codes and classify's pixels
    # were robust reads as what its export did: none of the three.
    before = json.loads(Config().to_json())
    for name in ("denoise_refine_steps", "denoise_refine_rate", "reconstruct_refine_steps",
                 "reconstruct_refine_rate", "reconstruct_pixel_outlier",
                 "classify_pixel_outlier"):
        del before["applications"][name]
    applications = Config.from_dict(before).applications
    assert (applications.denoise_refine_steps, applications.reconstruct_refine_steps,
            applications.reconstruct_pixel_outlier,
            applications.classify_pixel_outlier) == (0, 0, 0.0, 0.0)
