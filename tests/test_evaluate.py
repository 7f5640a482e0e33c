"""`cvae.evaluation.evaluate` on a small trained export: the likelihood function, the IWAE bound, and
`pipelines.evaluate` end to end on a small subset."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cvae.evaluation import evaluate as ev
from cvae.model import likelihoods
from cvae.evaluation import metrics as m
from cvae.data import load_splits
from cvae.serving.generate import load
from tests.conftest import run_python


@pytest.fixture(scope="module")
def served(trained):
    return load(trained["export"])


@pytest.fixture(scope="module")
def test_batch(trained):
    splits = load_splits(trained["config"].data)
    return (splits.test[0][:48].astype(np.float32)[..., None] / 255.0,
            splits.test[1][:48].astype(np.int32))


def test_exported_log_likelihood_is_the_models_own(trained, served, test_batch):
    model, config = trained["result"].model, trained["config"].model
    x, y = test_batch
    z = tf.random.stateless_normal([len(x), config.latent_dim], [1, 2])
    exported = served._loaded.log_likelihood(images=tf.constant(x), label=tf.constant(y),
                                            z=z).numpy()
    direct = model.likelihood(z, tf.constant(y)).log_prob(
        likelihoods.target(tf.constant(x), config.likelihood)).numpy()
    np.testing.assert_allclose(exported, direct, rtol=1e-5)
    assert np.all(exported < 0)


def test_binarized_log_likelihood_sums_the_gray_levels_above_127(trained, served, test_batch):
    model, config = trained["result"].model, trained["config"].model
    x, y = test_batch[0][:4], test_batch[1][:4]
    z = tf.random.stateless_normal([4, config.latent_dim], [3, 4])
    exported = served._loaded.binarized_log_likelihood(
        images=tf.constant(x), label=tf.constant(y), z=z).numpy()
    pixel = model.likelihood(z, tf.constant(y)).distribution  # per-pixel 256-level distribution
    levels = tf.range(256, dtype=tf.float32)[:, None, None, None, None]
    p_above = tf.reduce_sum(tf.exp(pixel.log_prob(levels))[128:], 0).numpy().astype(np.float64)
    b = x > 0.5
    expected = np.where(b, np.log(p_above), np.log1p(-p_above)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(exported, expected, rtol=1e-4)


def test_iwae_with_one_sample_is_the_elbo_estimate(served, test_batch):
    x, y = test_batch
    bounds = ev.likelihood_bounds(served, x, y, k=1, seed=5)
    np.testing.assert_allclose(bounds["iwae"], bounds["elbo"], rtol=1e-12)
    # One sample's log p(z) - log q(z|x,y) estimates -KL without bias, with noise that grows
    # with the KL: over 48 images their mean difference is within 4 standard errors of 0.
    gap = bounds["elbo"] - (bounds["recon"] - bounds["kl"])
    assert abs(gap.mean()) < 4 * gap.std(ddof=1) / np.sqrt(len(gap)) + 0.1, gap


def test_iwae_bound_is_above_the_elbo_and_tightens_as_k_grows(served, test_batch):
    x, y = test_batch
    elbo = ev.likelihood_bounds(served, x, y, k=200, seed=1)["elbo"].mean()
    iwae = {k: ev.likelihood_bounds(served, x, y, k=k, seed=k)["iwae"].mean()
            for k in (1, 10, 100, 1000)}
    assert abs(iwae[1] - elbo) < 2.0, (iwae[1], elbo)  # k=1 estimates the ELBO
    assert iwae[1] < iwae[10] < iwae[100] < iwae[1000], iwae
    assert iwae[1000] - elbo > 1.0, (iwae, elbo)


def test_iwae_and_its_first_k_bound_are_the_log_mean_of_the_log_weights(served, test_batch):
    """In one call the noise is stateless_normal([N, k, D], [seed, 0]): the log-weights
    log p(x|z,y) + log p(z) - log q(z|x,y), recomputed here from the exported functions, give
    the k-sample bound and, from their first `first_k` columns, the first_k-sample bound that
    `--compare` reuses from the k=1000 pass."""
    x, y = test_batch
    k, first = 20, 5
    bounds = ev.likelihood_bounds(served, x, y, k=k, seed=3, rows_per_call=len(x) * k,
                                  first_k=first)
    posterior = ev.encode(served, x, y)
    mean, stddev = posterior["mean"].astype(np.float64), posterior["stddev"].astype(np.float64)
    eps = tf.random.stateless_normal([len(x), k, mean.shape[1]], [3, 0]).numpy()
    z = mean[:, None] + stddev[:, None] * eps
    log_q = (-0.5 * eps ** 2 - 0.5 * np.log(2 * np.pi) - np.log(stddev)[:, None]).sum(-1)
    log_pz = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_px = served._loaded.log_likelihood(
        images=tf.repeat(x, k, axis=0), label=tf.repeat(y, k, axis=0),
        z=tf.constant(z.reshape(-1, mean.shape[1]), tf.float32)).numpy().reshape(len(x), k)
    log_w = log_px + log_pz - log_q
    np.testing.assert_allclose(bounds["iwae"], m.log_mean_exp(log_w), rtol=1e-5)
    np.testing.assert_allclose(bounds["iwae_first"], m.log_mean_exp(log_w[:, :first]),
                               rtol=1e-5)
    assert not np.allclose(bounds["iwae_first"], bounds["iwae"])
    with pytest.raises(ValueError, match="first_k=21 must be between 1 and k=20"):
        ev.likelihood_bounds(served, x, y, k=k, first_k=21)


def test_elbo_parts_agree_with_the_training_loss_on_the_same_noise(trained, served, test_batch):
    """With k=1 and all images in one call, the IWAE's noise is stateless_normal([N, 1, D],
    [seed, 0]); Keras' loss on the same noise gives the same reconstruction and KL."""
    x, y = test_batch
    model, latent = trained["result"].model, trained["config"].model.latent_dim
    bounds = ev.likelihood_bounds(served, x, y, k=1, seed=9, rows_per_call=len(x))
    eps = tf.reshape(tf.random.stateless_normal([len(x), 1, latent], [9, 0]), [len(x), latent])
    terms = model.loss_terms(tf.constant(x), tf.constant(y), 1.0, eps)
    assert -bounds["recon"].mean() == pytest.approx(float(terms["recon"]), rel=1e-5)
    assert bounds["kl"].mean() == pytest.approx(float(terms["kl"]), rel=1e-4, abs=1e-4)


def _brightness_classifier(images):
    """A stand-in for the evaluation classifier: the class is the image's mean gray level in
    tenths, so what it says of any image can be worked out by hand."""
    mean = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])
    label = tf.clip_by_value(tf.cast(tf.floor(mean * 10), tf.int32), 0, 9)
    logits = 10.0 * tf.one_hot(label, 10)
    return {"logits": logits, "probabilities": tf.nn.softmax(logits), "features": logits}


def _brightness(images):
    return np.clip(np.floor(images.mean(axis=(1, 2, 3)) * 10), 0, 9).astype(int)


def test_label_control_is_what_the_signatures_give(served, test_batch):
    """restyle's figures, its round trip and the N(0, I) codes' accuracy, recomputed from the
    export's restyle, reconstruct and decode signatures and the classifier's answers."""
    images, labels = test_batch
    settings = ev.Settings(restyle_per_class=2, samples_per_class=3, seed=5)
    out = ev.label_control(served, images, labels, _brightness_classifier, settings)
    pick = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    x, y = images[pick], labels[pick]
    sig = served.signatures
    pairs, source, trip = np.full([10, 10], np.nan), [], []
    for shift in range(1, 10):
        t = ((y + shift) % 10).astype(np.int32)
        there = sig["restyle"](images=tf.constant(x), label=tf.constant(y),
                               target_label=tf.constant(t))["images"].numpy()
        seen = _brightness(there)
        for c in range(10):
            pairs[c, (c + shift) % 10] = np.mean(seen[y == c] == t[y == c])
        source.append(seen == y)
        back = sig["restyle"](images=tf.constant(there), label=tf.constant(t),
                              target_label=tf.constant(y))["images"].numpy()
        trip.append(((back - x) ** 2).mean(axis=(1, 2, 3)))
    off = pairs[~np.eye(10, dtype=bool)]
    recon = sig["reconstruct"](images=tf.constant(x), label=tf.constant(y))["images"].numpy()
    restyle = out["restyle"]
    assert restyle["images"] == len(x) == 20
    assert restyle["target_accuracy"] == pytest.approx(off.mean())
    assert restyle["worst_pair"]["accuracy"] == pytest.approx(off.min())
    names = served.class_names
    worst = restyle["worst_pair"]
    assert pairs[names.index(worst["source"]), names.index(worst["target"])] == off.min()
    assert restyle["still_source"] == pytest.approx(np.mean(source))
    assert restyle["round_trip_mse"] == pytest.approx(np.mean(trip), rel=1e-4)
    assert restyle["reconstruction_mse"] == pytest.approx(((recon - x) ** 2).mean(), rel=1e-4)
    # Codes from N(0, I): 3 a class, from the settings' seed, decoded under each label.
    prior_labels = np.repeat(np.arange(10), 3).astype(np.int32)
    z = np.random.default_rng(5).standard_normal(
        [30, served.config["model"]["latent_dim"]]).astype(np.float32)
    drawn = sig["decode"](z=tf.constant(z), label=tf.constant(prior_labels))["images"].numpy()
    seen = _brightness(drawn)
    assert out["prior_codes"]["overall"] == pytest.approx(np.mean(seen == prior_labels))
    assert list(out["prior_codes"]["per_class"].values()) == pytest.approx(
        [np.mean(seen[prior_labels == c] == c) for c in range(10)])


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier") / "classifier"
    run_python("-m", "pipelines.train_classifier", "--epochs", "1", "--limit", "1000",
               "--out", str(out), check=True)
    return out


def test_evaluate_end_to_end_writes_every_file_it_promises(trained, small_classifier, tmp_path):
    models_dir = tmp_path / "models"
    out = tmp_path / "report"
    args = ["-m", "pipelines.evaluate", "--model", str(trained["export"]), "--out", str(out),
            "--classifier", str(small_classifier), "--compare", "unconditional", "tutorial",
            "--models-dir", str(models_dir),
            "--iwae-k", "20", "--compare-k", "5", "--iwae-images", "64",
            "--samples-per-class", "20", "--frechet-images", "100", "--restyle-per-class", "3",
            "--reconstruction-images", "200", "--application-images", "20",
            "--classify-images", "30"]
    result = run_python(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {"class_grid.png", "reconstructions.png", "interpolation.png", "restyle.png",
               "confusion.png", "training_curves.png", "manifold.png", "latent_scatter.png",
               "samples_tutorial.png",
               # the applications' sections (cvae.evaluation.applications)
               "inpainting.png", "denoising.png", "classify_confusion.png", "reliability.png",
               "scores.png", "upscaling.png"}
    assert {p.name for p in out.iterdir()} == figures | {"report.md", "metrics.json"}
    for name in figures:
        image = tf.io.decode_png((out / name).read_bytes()).numpy()
        assert image.shape[0] > 100 and image.shape[1] > 100, name
        assert image.std() > 5, f"{name} is blank"
    metrics = json.loads((out / "metrics.json").read_text())
    main = metrics["model"]
    assert main["test"]["images"] == 64 and main["test"]["iwae_k"] == 20
    assert main["reconstruction"]["images"] == 200  # --reconstruction-images, the comparisons'
    assert metrics["comparisons"]["tutorial"]["reconstruction"]["images"] == 200
    assert main["test"]["neg_iwae"] <= main["test"]["neg_elbo"] + 1e-6
    assert main["frechet"]["samples"] > main["frechet"]["held_out_real"] > 0
    # The --compare bound on the main model's gray levels is the first 5 of its 20 samples.
    first = main["test"]["first_k"]
    assert first["k"] == 5
    gray = main["comparable"]["gray"]
    assert gray["seconds"] == 0.0 and gray["k"] == 5
    assert gray["neg_log_px_bound"] == pytest.approx(first["neg_iwae"] + np.log(10))
    assert 0 <= main["conditional_accuracy"]["overall"] <= 1
    assert set(metrics["comparisons"]) == {"unconditional", "tutorial"}
    assert metrics["comparisons"]["tutorial"]["latent_dim"] == 2
    # Trained on the main model's data and epochs, into --models-dir.
    assert sorted(p.name for p in models_dir.iterdir()) == ["cvae-tutorial", "cvae-unconditional"]
    for t in metrics["targets"]:
        assert isinstance(t["met"], bool)
    applications = main["applications"]
    assert applications["inpainting"]["images"] == 20
    assert applications["classification"]["images"] == 30
    assert applications["scores"]["ood_images"] == 20
    assert sorted(metrics["figures"]) == sorted(figures)
    # Super-resolution: its figures recomputed from the test images and the export's signature.
    upscaling = applications["upscaling"]
    assert upscaling["images"] == 20
    splits = load_splits(trained["config"].data)
    x, y = splits.test[0][:20].astype(np.float32)[..., None] / 255.0, splits.test[1][:20]
    signature = tf.saved_model.load(str(trained["export"])).signatures["upscale"]
    from cvae.batches import seeds_for
    for key, factor in (("14x14", 2), ("7x7", 4)):
        r = upscaling["factors"][key]
        side = 28 // factor
        low = x.reshape(20, side, factor, side, factor, 1).mean((2, 4)).astype(np.float32)
        drawn = signature(images=tf.constant(low), label=tf.constant(y.astype(np.int32)),
                        seed=tf.constant(seeds_for(0, 20)))["images"].numpy()
        cubic = np.clip(tf.image.resize(low, [28, 28], method="bicubic").numpy(), 0, 1)
        assert r["mse"]["upscale"] == pytest.approx(float(((drawn - x) ** 2).mean()), rel=1e-4)
        assert r["mse"]["bicubic"] == pytest.approx(float(((cubic - x) ** 2).mean()), rel=1e-4)
        assert r["ratio_to_bicubic"] == pytest.approx(r["mse"]["upscale"] / r["mse"]["bicubic"])
        assert r["max_block_error"] <= 1 / 255
    met = {t["target"]: t["met"] for t in metrics["targets"]}
    assert met["super-resolution, 14x14: MSE <= 0.6x bicubic's"] == (
        upscaling["factors"]["14x14"]["ratio_to_bicubic"] <= 0.6)
    assert met["super-resolution, 7x7: results recognised >= 0.8"] == (
        upscaling["factors"]["7x7"]["recognised"]["upscale"] >= 0.8)
    assert met["super-resolution: every output's block means within 1/255 of the input"]
    report = (out / "report.md").read_text()
    assert "### Super-resolution" in report and "| 14x14 |" in report
    assert "## Comparison" in report and "## Targets" in report
    assert "## Applications" in report and "### Application targets" in report
    for name in figures:
        assert f"]({name})" in report

    # A second run into the same folder is refused and changes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_python(*args)
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("extra,message", [
    (["--iwae-k", "0"], "--iwae-k must be >= 1, got 0"),
    (["--classifier", "/nonexistent/classifier"], "/nonexistent/classifier: no such model "
                                                  "directory"),
    (["--manifold-model", "/nonexistent/cvae-2d"], "--manifold-model /nonexistent/cvae-2d: no "
                                                   "such model"),
], ids=["iwae-k-0", "no-classifier", "no-manifold-model"])
def test_evaluate_bad_input_is_an_error_and_writes_nothing(trained, tmp_path, extra, message):
    out = tmp_path / "report"
    result = run_python("-m", "pipelines.evaluate", "--model", str(trained["export"]),
                        "--out", str(out), *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_train_classifier_refuses_zero_epochs(tmp_path):
    result = run_python("-m", "pipelines.train_classifier", "--epochs", "0",
                        "--out", str(tmp_path / "classifier"))
    assert result.returncode == 2
    assert "classifier: epochs=0 must be >= 1" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field,value", [
    ("learning_rate", 1e-3), ("lr_schedule", "constant"), ("precision", "mixed_float16"),
    ("beta", 1.0), ("epochs", 7), ("seed", 5)])
def test_a_comparison_model_of_another_recipe_is_refused(trained, served, tmp_path, field, value):
    """`--compare` reuses a comparison model only if it was trained by the recipe the main model
    implies: the training fields that shape the weights, and the data."""
    import shutil

    from cvae.evaluation import report
    from cvae.config import Config, resolve_precision

    wanted = report.comparison_config(served, "unconditional")
    wanted = wanted.replace(precision=resolve_precision(wanted.train.precision))
    for name, config in (("matching", wanted), ("other", wanted.replace(**{field: value}))):
        version = tmp_path / name / "cvae-unconditional" / "1"
        shutil.copytree(trained["export"], version)
        (version / "assets.extra" / "config.json").write_text(config.to_json())
    assert Config.from_dict(report.comparison_model(
        served, "unconditional", tmp_path / "matching").config) == wanted
    with pytest.raises(report.ReportError, match=f"was trained with {field}={value}, the "
                                                 f"unconditional recipe of the main model is "):
        report.comparison_model(served, "unconditional", tmp_path / "other")
