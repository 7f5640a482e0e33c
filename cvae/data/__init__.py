"""The data: Fashion-MNIST read from the original IDX files (or tfds) and the tf.data input
pipeline, here; metadata fields in `cvae.data.fields`, a folder of one's own images in
`cvae.data.folder`. (Fashion-MNIST's reader stays in the package's own module, where every
caller and test has always found it.)"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from cvae.config import Binarization, DataConfig, Likelihood
from cvae.labels import NUM_CLASSES

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "FASHION_MNIST_DIR"
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Fixed seed of the train/validation permutation: every run validates on the same images.
VALIDATION_PERMUTATION_SEED = 20170825  # Fashion-MNIST's arXiv date


class DataError(ValueError):
    """A data file is missing, unreadable or not what it should be; the message names it."""


def _read_gz(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: not a complete gzip file ({e})") from None


def _parse_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    raw = _read_gz(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes is shorter than the {header}-byte IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found} (expected {magic})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    body = len(raw) - header
    if body != expected:
        raise DataError(f"{path}: header says {'x'.join(map(str, dims))} = {expected} values "
                        f"but the file holds {body}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX3 image file (gzip): uint8 [N, 28, 28]; raises DataError naming the problem."""
    images = _parse_idx(Path(path), IMAGE_MAGIC, 3)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    return images


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX1 label file (gzip): uint8 [N] in 0..9; raises DataError naming the problem."""
    labels = _parse_idx(Path(path), LABEL_MAGIC, 1)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside "
                        f"0..{NUM_CLASSES - 1} ({bad.size} label(s) out of range)")
    return labels


def read_idx_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split ("train" or "test") from a folder of the original IDX .gz files."""
    image_file, label_file = (Path(data_dir) / name for name in SPLIT_FILES[split])
    images, labels = read_idx_images(image_file), read_idx_labels(label_file)
    if len(images) != len(labels):
        raise DataError(f"{image_file} holds {len(images)} images but {label_file} holds "
                        f"{len(labels)} labels")
    return images, labels


def _has_idx_files(folder: str | os.PathLike) -> bool:
    return all((Path(folder) / n).is_file() for names in SPLIT_FILES.values() for n in names)


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "idx" or "tfds"
    path: str | None  # the IDX folder, for kind "idx"

    def __str__(self):
        return f"IDX files in {self.path}" if self.kind == "idx" else 'tfds.load("fashion_mnist")'


def resolve_source(data_dir: str | None = None, source: str = "auto") -> Source:
    """Where the data comes from: `data_dir`, then $FASHION_MNIST_DIR, then Debian's
    /usr/share/datasets/fashion-mnist, then tfds (needs the internet on first use).

    A folder the user named explicitly must hold the files: it is an error, not a fallback.
    """
    if source == "tfds":
        return Source("tfds", None)
    missing = ", ".join(n for names in SPLIT_FILES.values() for n in names)
    # An empty --data-dir is a mistake to report; an empty environment variable counts as unset.
    for where, folder in (("--data-dir", data_dir), (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None)):
        if folder is not None:
            if not _has_idx_files(folder):
                absent = [n for names in SPLIT_FILES.values() for n in names
                          if not (Path(folder) / n).is_file()]
                raise DataError(f"{where}={folder!r}: expected the Fashion-MNIST IDX files "
                                f"{missing}; missing: {', '.join(absent)}")
            return Source("idx", str(folder))
    if _has_idx_files(DEBIAN_DIR):
        return Source("idx", DEBIAN_DIR)
    if source == "idx":
        raise DataError(
            f"Fashion-MNIST IDX files not found. Install them with `apt-get install "
            f"dataset-fashion-mnist` (into {DEBIAN_DIR}), or put {missing} in a folder and pass "
            f"--data-dir or set ${ENV_VAR}.")
    return Source("tfds", None)


def _load_tfds(split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds  # heavy import; only on this path

    # Batched iteration rather than `batch_size=-1`, which aborts on datasets of unknown size
    # (as tfds.testing.mock_data makes them).
    ds = tfds.load("fashion_mnist", split=split, as_supervised=True).batch(8192)
    batches = list(tfds.as_numpy(ds))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Splits:
    """uint8 images [N, 28, 28] and uint8 labels [N] for each split."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    source: Source


def load_splits(config: DataConfig) -> Splits:
    """Loads train, validation (held out of train by a fixed permutation) and the official test."""
    source = resolve_source(config.data_dir, config.source)
    if source.kind == "idx":
        train, test = (read_idx_split(source.path, s) for s in ("train", "test"))
    else:
        train, test = _load_tfds("train"), _load_tfds("test")
    n = len(train[0])
    if not 1 <= config.validation_size < n:
        raise DataError(f"validation_size={config.validation_size} must be between 1 and {n - 1} "
                        f"(the training split has {n} images)")
    order = np.random.default_rng(VALIDATION_PERMUTATION_SEED).permutation(n)
    train_idx, val_idx = order[:-config.validation_size], order[-config.validation_size:]
    splits = {"train": tuple(a[train_idx] for a in train),
              "validation": tuple(a[val_idx] for a in train), "test": test}
    if config.limit:
        small = {"train": config.limit, "validation": max(config.limit // 5, 1),
                 "test": max(config.limit // 5, 1)}
        splits = {k: tuple(a[:small[k]] for a in v) for k, v in splits.items()}
    if config.batch_size > len(splits["train"][0]):
        raise DataError(f"batch_size={config.batch_size} is larger than the "
                        f"{len(splits['train'][0])} training images")
    return Splits(**splits, source=source)


def unit_images(images: np.ndarray) -> np.ndarray:
    """Gray levels uint8 [N, 28, 28] (as the splits hold them) -> float32 [N, 28, 28, 1] in
    [0, 1], the images every model and the classifier take."""
    return np.asarray(images).astype(np.float32)[..., None] / 255.0


def binarize_static(x: tf.Tensor) -> tf.Tensor:
    """Pixels in [0, 1] -> 1.0 where pixel > 0.5 (gray level >= 128), else 0.0."""
    return tf.cast(x > 0.5, tf.float32)


def preprocess_batch(images: tf.Tensor, labels: tf.Tensor, likelihood: Likelihood,
                     seed: tf.Tensor, binarization: Binarization = "dynamic",
                     ) -> tuple[tf.Tensor, tf.Tensor]:
    """Turns a batch of uint8 images [B, 28, 28] into float32 [B, 28, 28, 1] in [0, 1] and
    labels into int32 [B]. For the Bernoulli likelihood pixels are binarised: dynamically,
    x ~ Bernoulli(pixel / 255) with the stateless `seed` (shape [2]), so a seed gives one draw;
    or statically, by `binarize_static`.
    """
    x = tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0
    return binarised(x, likelihood, seed, binarization), tf.cast(labels, tf.int32)


def binarised(x: tf.Tensor, likelihood: Likelihood, seed: tf.Tensor,
              binarization: Binarization = "dynamic") -> tf.Tensor:
    """Pixels in [0, 1] as the likelihood takes them: binarised for the Bernoulli likelihood
    (`preprocess_batch`), unchanged otherwise."""
    if likelihood != "bernoulli":
        return x
    if binarization == "static":
        return binarize_static(x)
    u = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    return tf.cast(u < x, tf.float32)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimiser steps in one training epoch: full batches only (the remainder waits for the
    next epoch's permutation), so every replica of a distributed step gets the same share."""
    return num_images // batch_size


def _stream(seed: tf.Tensor, purpose: int, counter: tf.Tensor) -> tf.Tensor:
    """A stateless seed (int64 [2]) for one use (`purpose`) at one step or epoch (`counter`)."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.constant(purpose, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(counter, tf.int64))


_SHUFFLE, _BINARISE, _NOISE = 1, 2, 3


def make_dataset(images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 likelihood: Likelihood, seed: int, training: bool, latent_dim: int,
                 start_step: int = 0, binarization: Binarization = "dynamic",
                 ) -> tf.data.Dataset:
    """A tf.data pipeline of (x float32 [B, 28, 28, 1] in [0, 1], y int32 [B], eps float32
    [B, latent_dim]), eps being the standard normal noise of the reparameterisation trick.

    Every random draw is a stateless function of (seed, epoch) for the order and of (seed,
    step) for binarisation and noise, so batch t is the same in any process, after any
    restart, and however the batch is later split across replicas: `start_step` resumes the
    stream exactly where a checkpoint left it.

    Training: an endless stream of epochs, each a fresh permutation cut into
    `steps_per_epoch` full batches (give `fit` that many steps per epoch). Evaluation: the
    images once, in order, the last batch partial, the same draws every time.
    """
    images_t, labels_t = tf.constant(images), tf.constant(labels)

    def batch(step, index):
        x, y = preprocess_batch(tf.gather(images_t, index), tf.gather(labels_t, index),
                                likelihood, _stream(seed, _BINARISE, step), binarization)
        eps = tf.random.stateless_normal([tf.shape(index)[0], latent_dim],
                                         _stream(seed, _NOISE, step))
        return x, y, eps

    ds = batch_indices(len(images), batch_size, seed, training, start_step)
    ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def batch_indices(n: int, batch_size: int, seed: int, training: bool,
                  start_step: int = 0) -> tf.data.Dataset:
    """The (step, row indices [B]) of `make_dataset`'s batches over n rows: for training an
    endless stream of epochs, each a permutation keyed by (seed, epoch) cut into
    `steps_per_epoch` full batches, from `start_step` on; for evaluation the rows once, in
    order, the last batch partial."""
    if training:
        steps = steps_per_epoch(n, batch_size)
        if steps < 1:
            raise DataError(f"batch_size={batch_size} is larger than the {n} training images")

        def epoch_batches(epoch):
            order = tf.argsort(tf.random.stateless_uniform([n], _stream(seed, _SHUFFLE, epoch)))
            return tf.data.Dataset.from_tensor_slices(
                tf.reshape(order[:steps * batch_size], [steps, batch_size]))

        first_epoch, skip = divmod(start_step, steps)
        indices = (tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_batches)
                   .skip(skip))
    else:
        indices = tf.data.Dataset.range(n).batch(batch_size)
        start_step = 0
    return tf.data.Dataset.zip(tf.data.Dataset.range(start_step, 2**62), indices)
