"""The model that ships in saved_models/cvae/: trained by the defaults, it follows labels, and it
passes the serving check."""

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cvae import data
from cvae.serving import generate, versions
from cvae.config import Config, DataConfig
from conftest import REPO, SHIPPED, run_python


def test_one_version_ships_and_it_passes_the_serving_check():
    """saved_models/cvae/SHIPPED names the version that ships, whatever newer versions
    `make train` has exported beside it."""
    base = REPO / "saved_models" / "cvae"
    assert (base / "SHIPPED").read_text() == f"{SHIPPED.name}\n"
    assert SHIPPED == versions.shipped_path(base) and SHIPPED.is_dir()
    result = run_python("-m", "pipelines.export", "--check", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"ok: {SHIPPED} passed the serving check")


def test_a_newer_version_beside_the_shipped_one_changes_what_serves_not_what_ships(tmp_path):
    """What `make train` leaves behind: a newer version beside the shipped one. The shipped-model
    helpers (and so these tests) still take the shipped version; TF Serving's rule, and
    `pipelines.generate`'s default, take the newest; the SHIPPED file is no version to any of
    them."""
    base = tmp_path / "cvae"
    shutil.copytree(SHIPPED.parent, base, ignore=lambda folder, names: [
        n for n in names if folder == str(SHIPPED.parent) and n not in (SHIPPED.name, "SHIPPED")])
    newer = int(SHIPPED.name) + 1
    shutil.copytree(base / SHIPPED.name, base / str(newer))
    assert versions.versions(base) == [int(SHIPPED.name), newer]
    assert versions.shipped_version(base) == int(SHIPPED.name)
    assert versions.shipped_path(base) == base / SHIPPED.name
    assert generate.resolve_version(base) == base / str(newer)
    result = run_python("-m", "pipelines.generate", "--model", str(base), "--label", "Bag",
                        "--num", "1", "--out", str(tmp_path / "bag.png"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"model {base / str(newer)}" in result.stdout


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the shipped version"),
    ("seven\n", "expected one version number, got 'seven'"),
    ("9\n", "names version 9, which is not among [1]"),
], ids=["missing", "not-a-number", "no-such-version"])
def test_a_shipped_file_that_names_no_version_is_an_error(tmp_path, content, message):
    (tmp_path / "1").mkdir()
    if content is not None:
        (tmp_path / "SHIPPED").write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        versions.shipped_version(tmp_path)


def test_shipped_model_was_trained_by_the_defaults():
    config = Config.from_json((SHIPPED / "assets.extra" / "config.json").read_text())
    defaults = Config()
    assert config.data == defaults.data and config.model == defaults.model
    # Only where the run was written may differ (`make train NAME=...`), and precision "auto"
    # is recorded as what it resolved to on the machine that trained it.
    assert defaults.train.precision == "auto"
    assert config.train.precision in ("mixed_bfloat16", "float32")
    assert dataclasses.replace(config.train, name=defaults.train.name,
                               runs_dir=defaults.train.runs_dir,
                               precision="auto") == defaults.train
    metrics = json.loads((SHIPPED / "assets.extra" / "metrics.json").read_text())
    assert metrics["epochs"] == defaults.train.epochs
    # 3.6 million float32 weights and the 10 x 16 mixtures of 64 dimensions: about 17 MB.
    assert sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file()) < 25 * 2**20


def test_samples_are_as_recognisable_as_real_images():
    """Nearest class-mean classification (a fixed, training-free yardstick) finds the label of
    generated garments about as often as that of real test garments."""
    splits = data.load_splits(DataConfig())
    images, labels = splits.train[0].reshape(-1, 784) / 255.0, splits.train[1]
    centroids = np.stack([images[labels == c].mean(0) for c in range(10)])

    def accuracy(x, y):
        distances = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        return (distances.argmin(1) == y).mean()

    real = accuracy(splits.test[0].reshape(-1, 784) / 255.0, splits.test[1])
    generate = tf.saved_model.load(str(SHIPPED)).signatures["serving_default"]
    wanted = np.repeat(np.arange(10, dtype=np.int32), 100)
    samples = generate(label=wanted, seed=np.arange(1000, dtype=np.int32))["images"].numpy()
    generated = accuracy(samples.reshape(-1, 784), wanted)
    assert real > 0.6  # the yardstick itself: ~0.68 on Fashion-MNIST
    assert generated >= 0.9 * real, (generated, real)


def test_shipped_classifier_reaches_its_test_accuracy():
    """The yardstick of `pipelines.evaluate`: >= 0.92 on the 10,000 test images, as its
    metrics.json says."""
    from cvae.evaluation import classifier

    classify, metrics, path = classifier.load()
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]
    splits = data.load_splits(DataConfig())
    x = splits.test[0].astype(np.float32)[..., None] / 255.0
    predicted = classifier.predict(classify, x)["probabilities"].argmax(1)
    accuracy = (predicted == splits.test[1]).mean()
    assert accuracy >= 0.92
    assert accuracy == metrics["test_accuracy"]


def test_shipped_model_samples_carry_their_label_as_the_report_says():
    """Conditional accuracy of the shipped model by the shipped classifier on 100 samples per
    class, with other seeds than the report's 1,000: overall within 0.03 of the report in
    docs/report/metrics.json (whose model must be the shipped one), every class within 0.15."""
    from cvae.evaluation import classifier
    from cvae.evaluation import metrics as m
    from conftest import REPO

    report = json.loads((REPO / "docs" / "report" / "metrics.json").read_text())["model"]
    assert report["model"] == f"saved_models/cvae/{SHIPPED.name}"
    classify = classifier.load()[0]
    generate = tf.saved_model.load(str(SHIPPED)).signatures["serving_default"]
    wanted = np.repeat(np.arange(10, dtype=np.int32), 100)
    seeds = np.arange(5000, 6000, dtype=np.int32)
    samples = generate(label=wanted, seed=seeds)["images"].numpy()
    predicted = classifier.predict(classify, samples)["probabilities"].argmax(1)
    per_class = m.per_class_accuracy(m.confusion_matrix(wanted, predicted, 10))
    reported = report["conditional_accuracy"]
    assert abs((predicted == wanted).mean() - reported["overall"]) <= 0.03
    for c, name in enumerate(reported["per_class"]):
        assert abs(per_class[c] - reported["per_class"][name]) <= 0.15, name


def test_shipped_codes_come_from_mixtures_fitted_to_the_training_images():
    """`serving_default` draws z from each class's mixture of Gaussians (cvae.model.sampling);
    refitting them through the export's own `encode` signature on the 55,000 training images
    (no Keras model) gives the numbers the SavedModel holds, and a class's samples are coded
    near its mixture's centre."""
    from cvae.model import sampling

    config = Config.from_json((SHIPPED / "assets.extra" / "config.json").read_text())
    assert config.model.sampling == "class_posterior" and config.model.sampling_components > 1
    loaded = tf.saved_model.load(str(SHIPPED))
    encode = loaded.signatures["encode"]
    images, labels = data.load_splits(config.data).train
    weights, loc = loaded.sampling_weights.numpy(), loaded.sampling_loc.numpy()
    tril = loaded.sampling_scale_tril.numpy()
    # Two classes' mixtures (the fit of all ten, 16 Gaussians of 64 dimensions each, takes
    # minutes): Coat and Shirt, the two the classifier confuses most.
    for c in (4, 6):
        mine = labels == c
        codes = generate.batched(encode, {"images": images[mine].astype(np.float32)[..., None]
                                          / 255.0, "label": labels[mine].astype(np.int32)})
        refit = sampling.fit_mixture(codes["mean"].astype(np.float64),
                                     codes["stddev"].astype(np.float64) ** 2,
                                     config.model.sampling_components, seed=c)
        np.testing.assert_allclose(weights[c], refit[2], atol=1e-4)
        np.testing.assert_allclose(loc[c], refit[0], atol=1e-4)
        np.testing.assert_allclose(tril[c], np.linalg.cholesky(refit[1]), atol=1e-4)
    centres = (weights[..., None] * loc).sum(1)  # [10, d]
    # The classes' centres are away from the prior's 0, so the fit matters.
    assert (np.linalg.norm(centres, axis=1) > 0.2).all()
    z = loaded.signatures["serving_default"](label=np.full(4000, 4, np.int32),
                                             seed=np.arange(4000, dtype=np.int32))["z"].numpy()
    np.testing.assert_allclose(z.mean(0), centres[4], atol=0.1)
