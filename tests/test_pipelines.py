"""The training and export command lines end to end, in fresh processes."""

import json

import numpy as np
import tensorflow as tf

from cvae import figures, generate
from conftest import REPO, run_python

SMALL = ["--limit", "512", "--batch-size", "64", "--validation-size", "128", "--latent-dim", "4",
         "--encoder-filters", "8", "16", "--decoder-filters", "16", "8", "--hidden-dim", "32",
         "--epochs", "1"]


def test_train_exports_and_writes_a_class_grid_then_export_adds_a_version(tmp_path):
    result = run_python("-m", "pipelines.train", "--name", "e2e", *SMALL,
                        "--likelihood", "discretized_logistic", cwd=tmp_path,
                        env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1:" in result.stdout and "bits/dim" in result.stdout
    assert "exported saved_models/cvae/1" in result.stdout
    # The report's class grid (rows named by their labels), of the version just exported.
    grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "runs/e2e/class_grid.png"))).numpy()
    report_grid = figures.class_grid(generate.load(tmp_path / "saved_models/cvae"))
    np.testing.assert_array_equal(grid, tf.io.decode_png(report_grid).numpy())
    assert grid.shape[1] > 302  # wider than the bare 10 x 10 tiles: the row labels
    metrics = json.loads((tmp_path / "saved_models/cvae/1/assets.extra/metrics.json").read_text())
    assert metrics["epochs"] == 1 and np.isfinite(metrics["test"]["neg_elbo"])
    again = run_python("-m", "pipelines.export", "--run", "runs/e2e", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exported saved_models/cvae/2" in again.stdout
    one, two = (tf.saved_model.load(str(tmp_path / f"saved_models/cvae/{v}")) for v in (1, 2))
    args = dict(label=tf.constant([0, 5]), seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(one.signatures["serving_default"](**args)["images"],
                                  two.signatures["serving_default"](**args)["images"])


def test_bad_config_fails_before_anything_is_written(tmp_path):
    for flags, message in ((["--epochs", "-1"], "config: epochs=-1 must be >= 1"),
                           (["--latent-dim", "0"], "config: latent_dim=0 must be >= 1"),
                           (["--limit", "100", "--batch-size", "512"],
                            "batch_size=512 is larger than the 100 training images"),
                           (["--data-dir", str(tmp_path / "none")],
                            f"--data-dir='{tmp_path / 'none'}': expected the Fashion-MNIST IDX"),
                           (["--resume", "--name", "nothing"],
                            "--resume: runs/nothing/config.json not found; nothing to resume")):
        result = run_python("-m", "pipelines.train", *flags, cwd=tmp_path)
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        assert f"error: {message}" in result.stderr, (flags, result.stderr[-2000:])
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "runs").exists()


def test_export_of_a_missing_run(tmp_path):
    result = run_python("-m", "pipelines.export", "--run", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {tmp_path / 'nope'}: not a run directory (no config.json)" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no saved_models/ either
