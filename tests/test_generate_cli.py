"""`python -m pipelines.generate` end to end against an exported model, in fresh processes."""

import numpy as np
import pytest
import tensorflow as tf

from cvae import images
from conftest import run_python


def _generate(*args):
    return run_python("-m", "pipelines.generate", *args)


def _png(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


def test_label_by_name_writes_grid_and_npy_without_importing_tfp(trained, tmp_path):
    model_dir = trained["export"].parent
    out, npy = tmp_path / "sneakers.png", tmp_path / "sneakers.npy"
    # -X importtime lists every module the process imported, on stderr.
    result = run_python("-X", "importtime", "-m", "pipelines.generate", "--model", str(model_dir),
                        "--label", "sneaker", "--num", "6", "--seed", "3", "--out", str(out),
                        "--npy", str(npy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 x Sneaker (seed 3)" in result.stdout and "cvae/1" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tensorflow_probability" not in imported and "keras" not in imported
    assert "tensorflow" in imported
    grid = _png(out)
    assert grid.shape == (2 + 2 * 30, 2 + 3 * 30, 1)  # 6 images: 3 columns, 2 rows, 2 px gaps
    samples = np.load(npy)
    assert samples.shape == (6, 28, 28, 1) and samples.dtype == np.float32
    np.testing.assert_array_equal(grid, images.grid(samples, 3))
    # The same request again (label given as its id): the same images, bit for bit.
    again = _generate("--model", str(model_dir), "--label", "7", "--num", "6", "--seed", "3",
                      "--out", str(tmp_path / "again.png"), "--npy", str(tmp_path / "again.npy"))
    assert again.returncode == 0, again.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), samples)
    other = _generate("--model", str(model_dir), "--label", "Dress", "--num", "6", "--seed", "3",
                      "--out", str(tmp_path / "dress.png"), "--npy", str(tmp_path / "dress.npy"))
    assert other.returncode == 0
    assert not np.allclose(np.load(tmp_path / "dress.npy"), samples)


@pytest.mark.parametrize("label,message", [
    ("-1", "label -1 is out of range: ids are 0..9"),
    ("10", "label 10 is out of range: ids are 0..9"),
    ("Sneakers", "unknown class 'Sneakers': choose a name or id from 0=T-shirt/top"),
], ids=["minus-1", "10", "unknown-name"])
def test_bad_labels_exit_non_zero_and_write_nothing(trained, tmp_path, label, message):
    out = tmp_path / "x.png"
    result = _generate("--model", str(trained["export"].parent), "--label", label, "--out",
                       str(out), "--npy", str(tmp_path / "x.npy"))
    assert result.returncode == 2
    assert f"error: {message}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_version_selection_and_missing_model(trained, tmp_path):
    ok = _generate("--model", str(trained["export"].parent), "--version", "1", "--label", "Bag",
                   "--num", "1", "--out", str(tmp_path / "bag.png"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert _png(tmp_path / "bag.png").shape == (32, 32, 1)
    missing = _generate("--model", str(trained["export"].parent), "--version", "9", "--label",
                        "Bag", "--out", str(tmp_path / "no.png"))
    assert missing.returncode == 2 and "cvae/9: no SavedModel there (versions present: [1])" \
        in missing.stderr
    nowhere = _generate("--model", str(tmp_path / "nowhere"), "--label", "Bag", "--out",
                        str(tmp_path / "no.png"))
    assert nowhere.returncode == 2 and "no such model directory" in nowhere.stderr
    assert not (tmp_path / "no.png").exists()


def test_restyle(trained, tmp_path):
    from cvae.data import load_splits

    splits = load_splits(trained["config"].data)
    shirt = splits.test[0][splits.test[1] == 6][0]
    source = tmp_path / "shirt.png"
    images.write_png(source, shirt[..., np.newaxis])
    out = tmp_path / "dress.png"
    result = _generate("--model", str(trained["export"].parent), "--restyle", str(source),
                       "--from", "shirt", "--to", "DRESS", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(Shirt) as Dress" in result.stdout
    grid = _png(out)
    assert grid.shape == (32, 62, 1)
    np.testing.assert_array_equal(grid[2:30, 2:30, 0], shirt)  # the input, then its restyling
    # restyle: reconstruct's fitted code, decoded under the target label at restyle's guidance.
    from cvae.applications.inpaint import fitted_code

    model, settings = trained["result"].model, trained["config"].applications
    z = fitted_code(model, tf.constant(shirt[np.newaxis, ..., np.newaxis] / 255.0, tf.float32),
                    tf.constant([6]), settings.reconstruct_refine_steps,
                    settings.reconstruct_refine_rate, settings.reconstruct_pixel_outlier)
    restyled = model.decode(z, tf.constant([3]), guidance=settings.restyle_guidance).numpy()
    expected = np.round(restyled[0, ..., 0] * 255)
    assert np.abs(grid[2:30, 32:60, 0].astype(float) - expected).max() <= 1


@pytest.mark.parametrize("kind,message", [
    ("rgb", "is a RGB PNG; expected 8-bit grayscale"),
    ("size", "is 32x28; expected 28x28"),
    ("text", "not a PNG file"),
], ids=["rgb", "size", "text"])
def test_restyle_rejects_other_images(trained, tmp_path, kind, message):
    source = tmp_path / "in.png"
    if kind == "rgb":
        source.write_bytes(tf.io.encode_png(np.zeros((28, 28, 3), np.uint8)).numpy())
    elif kind == "size":
        source.write_bytes(tf.io.encode_png(np.zeros((28, 32, 1), np.uint8)).numpy())
    else:
        source.write_text("not an image")
    result = _generate("--model", str(trained["export"].parent), "--restyle", str(source),
                       "--from", "Shirt", "--to", "Dress", "--out", str(tmp_path / "out.png"),
                       "--npy", str(tmp_path / "out.npy"))
    assert result.returncode == 2 and f"error: {source}: {message}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_usage_errors(tmp_path):
    out = str(tmp_path / "x.png")
    for args, message in ((["--out", out], "give --label"),
                          (["--restyle", "a.png", "--out", out], "--restyle needs --from"),
                          (["--label", "Bag", "--num", "0", "--out", out],
                           "--num must be >= 1, got 0"),
                          (["--label", "Bag", "--seed", "-1", "--out", out],
                           "--seed must be >= 0"),
                          (["--label", "Bag", "--columns", "0", "--out", out],
                           "--columns must be >= 1"),
                          (["--label", "Bag", "--out", str(tmp_path / "x.jpg")],
                           "--out must name a .png"),
                          (["--label", "Bag"], "give --out (a PNG grid), --npy (the images as "
                                               "an array) or both")):
        result = _generate(*args)
        assert result.returncode == 2 and f"error: {message}" in result.stderr, \
            (args, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_npy_alone_is_made_and_written_a_batch_at_a_time(trained, tmp_path, monkeypatch):
    """Without --out, `pipelines.generate` holds one batch of images at a time
    (`limits.GENERATE_BATCH`) whatever --num, writing the .npy as they come: the images are
    those of `generate.samples`, made at once; a failure halfway leaves no file behind."""
    import pipelines.generate
    from cvae.serving import generate
    from cvae import limits

    model_dir = trained["export"].parent
    batches, real = [], generate.generate

    def counted(model, labels, seeds):
        batches.append(len(seeds))
        if fail and len(batches) == 2:
            raise RuntimeError("out of memory")
        return real(model, labels, seeds)

    monkeypatch.setattr(limits, "GENERATE_BATCH", 7)
    monkeypatch.setattr(generate, "generate", counted)
    npy, fail = tmp_path / "bags.npy", False
    pipelines.generate.main(["--model", str(model_dir), "--label", "Bag", "--num", "20",
                             "--seed", "5", "--npy", str(npy)])
    assert batches == [7, 7, 6]
    batches.clear()
    fail = True
    with pytest.raises(RuntimeError, match="out of memory"):
        pipelines.generate.main(["--model", str(model_dir), "--label", "Bag", "--num", "20",
                                 "--npy", str(tmp_path / "failed.npy")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bags.npy"]  # no temporary either
    monkeypatch.undo()
    samples = np.load(npy)
    assert samples.dtype == np.float32 and samples.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(samples, generate.samples(generate.load(model_dir), 8, 20, 5))
