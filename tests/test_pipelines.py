"""The training and export command lines end to end, in fresh processes."""

import json
import shutil

import numpy as np
import tensorflow as tf

from cvae.evaluation import figures
from cvae.serving import generate
from cvae.applications import corruptions
from cvae.config import Config
from conftest import REPO, run_python

SMALL = ["--recipe", "scratch", "--limit", "512", "--batch-size", "64", "--validation-size", "128", "--latent-dim", "4",
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


def test_export_with_sampler_from_keeps_the_images_and_changes_inpaint(trained, tmp_path):
    """--sampler-from an earlier export: serving_default's images bit-identical to that export's,
    with its generation settings rather than the run's, and the new in-painting setting."""
    # A copy of the run (export rewrites its class_grid.png) whose config has since moved on,
    # as if the earlier export had been given --guidance, --temperature, --sampling-components.
    run = shutil.copytree(trained["result"].run_dir, tmp_path / "runs" / "small")
    earlier = Config.from_json((trained["export"] / "assets.extra/config.json").read_text())
    config = Config.from_json((run / "config.json").read_text())
    (run / "config.json").write_text(config.replace(
        guidance=earlier.model.guidance + 1, temperature=earlier.model.temperature / 2,
        sampling_components=earlier.model.sampling_components // 2).to_json())
    base = tmp_path / "saved_models" / "cvae"
    shutil.copytree(trained["export"], base / "1")

    result = run_python("-m", "pipelines.export", "--run", str(run), "--model-dir", str(base),
                        "--sampler-from", str(base / "1"), "--inpaint-refine-steps", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"exported {base / '2'}" in result.stdout
    recorded = Config.from_json((base / "2" / "assets.extra/config.json").read_text())
    assert recorded.model == earlier.model  # guidance, sampling, temperature of version 1
    assert recorded.applications.inpaint_refine_steps == 5
    assert earlier.applications.inpaint_refine_steps != 5
    one, two = (tf.saved_model.load(str(base / v)).signatures for v in ("1", "2"))
    args = dict(label=tf.constant([0, 3, 5, 9, 9]), seed=tf.constant([1, 2, 7, 7, -123456]))
    for output in ("images", "z"):
        np.testing.assert_array_equal(one["serving_default"](**args)[output],
                                      two["serving_default"](**args)[output])
    # In-painting takes its new setting: the known pixels kept, the missing ones filled anew.
    rng = np.random.default_rng(0)
    images = tf.constant((rng.integers(0, 256, (2, 28, 28, 1)) / 255).astype(np.float32))
    mask = tf.constant(corruptions.mask("bottom-half", 2))
    request = dict(images=images, mask=mask, label=tf.constant([3, 7]), seed=tf.constant([1, 2]))
    filled = [sig["inpaint"](**request)["images"].numpy() for sig in (one, two)]
    np.testing.assert_array_equal(filled[1] * mask, images * mask)
    assert np.abs(filled[1] - filled[0]).max() > 1e-3
