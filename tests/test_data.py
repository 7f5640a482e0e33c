"""IDX parsing, source resolution, and the tf.data pipeline (eagerly and through tf.data)."""

import numpy as np
import pytest
import tensorflow as tf

from cvae import data
from cvae.config import DataConfig
from conftest import make_idx_dir, write_idx


def test_valid_files_round_trip(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "i.gz", images, 2051)
    write_idx(tmp_path / "l.gz", np.array([0, 9, 4]), 2049)
    np.testing.assert_array_equal(data.read_idx_images(tmp_path / "i.gz"), images)
    np.testing.assert_array_equal(data.read_idx_labels(tmp_path / "l.gz"), [0, 9, 4])
    assert data.read_idx_images(tmp_path / "i.gz").dtype == np.uint8


def test_truncated_gzip_names_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28))
    path = write_idx(tmp_path / "i.gz", noise, 2051, truncate_to=2000)
    with pytest.raises(data.DataError, match=rf"{path}: not a complete gzip file"):
        data.read_idx_images(path)


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "i.gz", np.zeros((2, 28, 28)), 2049)
    with pytest.raises(data.DataError, match=r"i.gz: wrong IDX magic number 2049 \(expected 2051\)"):
        data.read_idx_images(path)


def test_header_and_body_disagree(tmp_path):
    path = tmp_path / "l.gz"
    import gzip

    path.write_bytes(gzip.compress((2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\0" * 4))
    with pytest.raises(data.DataError, match="header says 5 = 5 values but the file holds 4"):
        data.read_idx_labels(path)


def test_images_and_labels_count_mismatch(tmp_path):
    make_idx_dir(tmp_path, n_train=6, n_test=2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5), 2049)
    with pytest.raises(data.DataError, match="holds 6 images but .*train-labels.* holds 5 labels"):
        data.read_idx_split(tmp_path, "train")


def test_label_out_of_range(tmp_path):
    path = write_idx(tmp_path / "l.gz", np.array([1, 2, 10, 3, 11]), 2049)
    with pytest.raises(data.DataError, match=r"label 10 at index 2 is outside 0..9 \(2 label\(s\) out of range\)"):
        data.read_idx_labels(path)


def test_wrong_image_size(tmp_path):
    path = write_idx(tmp_path / "i.gz", np.zeros((2, 32, 32)), 2051)
    with pytest.raises(data.DataError, match="images are 32x32, expected 28x28"):
        data.read_idx_images(path)


def test_source_order(tmp_path, monkeypatch):
    explicit, env = make_idx_dir(tmp_path / "a"), make_idx_dir(tmp_path / "b")
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.resolve_source(str(explicit)) == data.Source("idx", str(explicit))
    assert data.resolve_source(None) == data.Source("idx", str(env))
    with pytest.raises(data.DataError, match=r"--data-dir=.*empty': expected the Fashion-MNIST"):
        data.resolve_source(str(tmp_path / "empty"))
    # An empty --data-dir is refused, not taken for "not given" (which falls back to tfds).
    with pytest.raises(data.DataError, match=r"--data-dir='': expected the Fashion-MNIST"):
        data.resolve_source("")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nothing"))
    with pytest.raises(data.DataError, match=r"\$FASHION_MNIST_DIR=.*nothing"):
        data.resolve_source(None)
    monkeypatch.delenv(data.ENV_VAR)
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "nowhere"))
    assert data.resolve_source(None) == data.Source("tfds", None)
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.resolve_source(None, source="idx")


def test_splits_hold_out_validation(tmp_path):
    folder = make_idx_dir(tmp_path, n_train=60, n_test=20)
    splits = data.load_splits(DataConfig(data_dir=str(folder), validation_size=12, batch_size=8))
    assert [len(s[0]) for s in (splits.train, splits.validation, splits.test)] == [48, 12, 20]
    train_rows = {x.tobytes() for x in splits.train[0]}
    assert not train_rows & {x.tobytes() for x in splits.validation[0]}
    # The permutation is fixed: a second load gives the same validation images.
    again = data.load_splits(DataConfig(data_dir=str(folder), validation_size=12, batch_size=8))
    np.testing.assert_array_equal(again.validation[0], splits.validation[0])


def test_batch_larger_than_data(tmp_path):
    folder = make_idx_dir(tmp_path, n_train=60)
    with pytest.raises(data.DataError, match="batch_size=64 is larger than the 50 training images"):
        data.load_splits(DataConfig(data_dir=str(folder), validation_size=10, batch_size=64))


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        splits = data.load_splits(DataConfig(source="tfds", validation_size=8, batch_size=4))
    assert splits.source.kind == "tfds"
    assert splits.train[0].shape == (32, 28, 28) and splits.train[0].dtype == np.uint8
    assert splits.test[0].shape == (40, 28, 28)
    assert splits.train[1].max() <= 9


def _uint8_batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "bernoulli"])
def test_preprocess_eager_equals_tf_data(likelihood):
    images, labels = _uint8_batch()
    seed = tf.constant([3, 4], tf.int64)
    eager = data.preprocess_batch(images, labels, likelihood, seed)
    ds = tf.data.Dataset.from_tensors((images, labels)).map(
        lambda x, y: data.preprocess_batch(x, y, likelihood, seed))
    graph = next(iter(ds))
    for a, b in zip(eager, graph):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x, y = eager
    assert x.shape == (16, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int32
    np.testing.assert_array_equal(y.numpy(), labels)
    if likelihood == "bernoulli":
        assert set(np.unique(x.numpy())) <= {0.0, 1.0}
        # Dynamic binarisation keeps the gray level as the probability of a white pixel.
        assert abs(x.numpy().mean() - images.mean() / 255) < 0.01
    else:
        np.testing.assert_allclose(x.numpy()[..., 0], images / 255.0, rtol=1e-6)


def _pipeline(images, labels, seed=1, training=True, start_step=0, batch_size=8):
    return data.make_dataset(images, labels, batch_size=batch_size, likelihood="bernoulli",
                             seed=seed, training=training, latent_dim=3, start_step=start_step)


def test_training_pipeline_is_seeded_and_reshuffles():
    images, _ = _uint8_batch(44)
    labels = np.arange(44, dtype=np.uint8)  # unique ids to follow the order
    steps = data.steps_per_epoch(44, 8)
    assert steps == 5  # full batches only: 4 images wait for another epoch's permutation

    def epochs(seed, n=2):
        batches = list(_pipeline(images, labels, seed).take(n * steps))
        return [batches[e * steps:(e + 1) * steps] for e in range(n)]

    a, b = epochs(1), epochs(1)
    for ea, eb in zip(a, b):  # same seed: the same batches, bit for bit, every epoch
        for (xa, ya, na), (xb, yb, nb) in zip(ea, eb):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(na, nb)
            assert xa.shape == (8, 28, 28, 1) and na.shape == (8, 3)
    order = [np.concatenate([y for _, y, _ in e]) for e in a]
    assert len(set(order[0])) == 40  # no image twice within an epoch
    assert not np.array_equal(order[0], order[1])  # reshuffled
    assert not np.array_equal(order[0], np.concatenate([y for _, y, _ in epochs(2, 1)[0]]))
    # Fresh binarisation and noise each epoch: the same image is drawn differently.
    first = {int(y[i]): x[i] for x, y, _ in a[0] for i in range(len(y))}
    second = {int(y[i]): x[i] for x, y, _ in a[1] for i in range(len(y))}
    assert any(not np.array_equal(first[k], second[k]) for k in set(first) & set(second))
    noise = np.concatenate([n for _, _, n in a[0] + a[1]])
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2  # standard normal eps


def test_training_pipeline_resumes_at_any_step():
    """Step t's batch does not depend on where the stream started: a run resumed at step t
    (even mid-epoch) sees exactly what an uninterrupted one would."""
    images, _ = _uint8_batch(44)
    labels = np.arange(44, dtype=np.uint8)
    full = list(_pipeline(images, labels).take(12))
    for start in (3, 5, 7):
        resumed = list(_pipeline(images, labels, start_step=start).take(12 - start))
        for (xa, ya, na), (xb, yb, nb) in zip(full[start:], resumed):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(na, nb)


def test_batch_larger_than_the_training_images_is_refused():
    images, labels = _uint8_batch(6)
    with pytest.raises(data.DataError, match="batch_size=8 is larger than the 6 training images"):
        _pipeline(images, labels)


def test_evaluation_pipeline_repeats_exactly():
    images, labels = _uint8_batch(20)
    ds = _pipeline(images, labels, seed=5, training=False)
    first, second = ([(x.numpy(), n.numpy()) for x, _, n in ds] for _ in range(2))
    assert [x.shape[0] for x, _ in first] == [8, 8, 4]
    for (xa, na), (xb, nb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(na, nb)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y, _ in ds]), labels)


def test_static_binarisation_thresholds_at_one_half_every_time():
    images = np.array([[[0, 127, 128, 255] * 7] * 28], np.uint8)
    labels = np.array([3])
    for step in (0, 1):
        x, _ = data.preprocess_batch(images, labels, "bernoulli", tf.constant([step, 0]),
                                     "static")
        np.testing.assert_array_equal(x.numpy()[0, 0, :4, 0], [0, 0, 1, 1])


def test_unit_images_are_float32_channels_last_in_0_1():
    from cvae.data import unit_images

    levels = np.stack([np.zeros((28, 28)), np.full((28, 28), 255), np.full((28, 28), 128)])
    x = unit_images(levels.astype(np.uint8))
    assert x.dtype == np.float32 and x.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(x[:, 0, 0, 0], np.float32([0, 1, 128 / 255]))
