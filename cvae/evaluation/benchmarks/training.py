"""Training throughput: the project's `fit` path, and a tutorial-style baseline loop on the
same model (`Baseline`, fed by `baseline_dataset`); and the input pipeline's throughput alone."""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from cvae import data
from cvae.config import Config
from cvae.evaluation.benchmarks.common import Settings, _seed, peak_rss_mib
from cvae.model.vae import build_model
from cvae.training.train import compiled_model, make_dataset

# The batch of the TensorFlow tutorials' loops, and of the baseline, and its constant rate:
# Keras' default for Adam, and what the square-root rule gives at batch 32 from the default
# 2e-3 at 128. It stays fixed whatever the config's rate, so that `--learning-rate` or
# `--lr-schedule` races the default's variants against one target.
BASELINE_BATCH_SIZE = 32
BASELINE_LEARNING_RATE = 1e-3

# What the default training path should beat, and by how much (issue "Speed and scale").
TARGET_PIPELINE_FACTOR = 10.0  # input pipeline images/s / training images/s


# ----------------------------------------------------------------------------- training


class _EpochEnds(keras.callbacks.Callback):
    """When each epoch ended (its metrics read back, so its steps had all run)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter())


def _rounded_steps(images: int, batch_size: int, steps_per_execution: int) -> int:
    """Steps covering `images`, rounded up to whole executions."""
    steps = max(1, math.ceil(images / batch_size))
    return math.ceil(steps / steps_per_execution) * steps_per_execution


def _throughput(images: int, seconds: float, steps: int) -> dict:
    return {"images_per_second": images / seconds, "step_ms": 1000 * seconds / steps,
            "steps": steps, "images": images, "seconds": seconds}


def training_throughput(config: Config, train: tuple[np.ndarray, np.ndarray],
                        settings: Settings) -> dict:
    """Images/s and ms/step of the project's training path: `compiled_model` and
    `make_dataset(training=True)` through one `model.fit` whose epochs are `warmup_steps`
    long. The first epoch (tracing, the pipeline filling up) is not timed; the following ones,
    enough for `timed_images`, are timed from the first one's end to the last one's end."""
    _seed(config)
    model = compiled_model(config, steps_per_epoch=data.steps_per_epoch(len(train[0]),
                                                                        config.data.batch_size))
    batch, per_call = config.data.batch_size, config.train.steps_per_execution
    epoch_steps = math.ceil(settings.warmup_steps / per_call) * per_call
    epochs = math.ceil(_rounded_steps(settings.timed_images, batch, per_call) / epoch_steps)
    ends = _EpochEnds()
    model.fit(make_dataset(config, train, training=True), epochs=1 + epochs,
              steps_per_epoch=epoch_steps, callbacks=[ends], verbose=0, shuffle=False)
    timed = epochs * epoch_steps
    return {**_throughput(timed * batch, ends.times[-1] - ends.times[0], timed),
            "batch_size": batch, "warmup_steps": epoch_steps}


def _training_child(config_json: str, settings: Settings, catch: bool = False) -> dict:
    """`training_throughput` on the full training split, with this process's peak memory;
    with `catch`, an error is returned as {"error": message} (a variant that cannot run)."""
    config = Config.from_json(config_json)
    try:
        splits = data.load_splits(config.data)
        result = training_throughput(config, splits.train, settings)
    except Exception as e:  # noqa: BLE001 -- reported in the variant's row
        if not catch:
            raise
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"}
    return {**result, "peak_rss_mib": peak_rss_mib()}


# ----------------------------------------------------------------------------- the baseline


def baseline_dataset(images: np.ndarray, labels: np.ndarray, likelihood: str,
                     seed: int) -> tf.data.Dataset:
    """The TensorFlow tutorials' pipeline: slices, a full shuffle, a per-example map and
    batches of 32, no cache and no prefetch: (x float32 [B, 28, 28, 1] in [0, 1], y int32 [B]).

    tf.data would by itself inject a prefetch, parallelise the stateless map and fuse it with
    the batch into an asynchronous op (its default optimisations); they are turned off, so this
    is the sequential pipeline the tutorial's code describes."""

    def preprocess(image, label):
        x = tf.cast(image, tf.float32)[..., tf.newaxis] / 255.0
        if likelihood == "bernoulli":
            x = tf.cast(tf.random.uniform(tf.shape(x)) < x, tf.float32)
        return x, tf.cast(label, tf.int32)

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False
    options.experimental_optimization.map_and_batch_fusion = False
    return (tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(len(images), seed=seed)
            .map(preprocess)
            .batch(BASELINE_BATCH_SIZE)
            .with_options(options))


class Baseline:
    """The same model (ModelConfig, beta and its warm-up, seed) trained by a hand-written
    loop in float32: a `tf.function` GradientTape step calling `model.loss_terms`, with the
    model drawing eps itself, and its own `keras.optimizers.Adam` at a constant
    `BASELINE_LEARNING_RATE`."""

    def __init__(self, config: Config):
        _seed(config)
        self.model = build_model(config.model, beta=config.train.beta, seed=config.train.seed)
        self.optimizer = keras.optimizers.Adam(BASELINE_LEARNING_RATE)
        beta, warmup = config.train.beta, config.train.kl_warmup_steps
        model, optimizer = self.model, self.optimizer

        # autograph=False as Keras' own steps: AutoGraph converting the model's `__call__` fails
        # ("got multiple values for argument 'training'"), and the step has no tensor branches.
        @tf.function(autograph=False)
        def train_step(x, labels):
            weight = beta
            if warmup:
                step = tf.cast(optimizer.iterations, tf.float32)
                weight = beta * tf.minimum(1.0, step / float(warmup))
            with tf.GradientTape() as tape:
                terms = model.loss_terms(x, labels, weight, training=True)
            grads = tape.gradient(terms["loss"], model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return terms

        self.train_step = train_step

    def run_epoch(self, dataset: tf.data.Dataset) -> float:
        """One pass over `dataset`; returns the last batch's loss (checked finite)."""
        terms = None
        for x, labels in dataset:
            terms = self.train_step(x, labels)
        loss = float(terms["loss"])
        if not math.isfinite(loss):
            raise RuntimeError(f"baseline: non-finite training loss {loss}")
        return loss


def _passes(dataset: tf.data.Dataset):
    """The batches of `dataset`, pass after pass, as a training loop's epochs take them."""
    while True:
        yield from dataset


def baseline_throughput(config: Config, train: tuple[np.ndarray, np.ndarray],
                        settings: Settings) -> dict:
    """Images/s and ms/step of the baseline loop over the full pipeline: `warmup_steps` untimed
    steps (tracing), then the steps covering `timed_images`; a finished pass starts the next
    epoch as the tutorial's loop does (refilling the shuffle buffer)."""
    baseline = Baseline(config)
    batches = _passes(baseline_dataset(*train, config.model.likelihood, config.train.seed))
    for _ in range(settings.warmup_steps):
        baseline.train_step(*next(batches))
    timed = _rounded_steps(settings.timed_images, BASELINE_BATCH_SIZE, 1)
    images = 0
    start = time.perf_counter()
    for _ in range(timed):
        x, labels = next(batches)
        terms = baseline.train_step(x, labels)
        images += len(labels)
    float(terms["loss"])  # the last step has finished
    seconds = time.perf_counter() - start
    return {**_throughput(images, seconds, timed), "batch_size": BASELINE_BATCH_SIZE,
            "warmup_steps": settings.warmup_steps}


def _baseline_child(config_json: str, settings: Settings) -> dict:
    config = Config.from_json(config_json)
    splits = data.load_splits(config.data)
    return {**baseline_throughput(config, splits.train, settings),
            "peak_rss_mib": peak_rss_mib()}


# ----------------------------------------------------------------------------- input pipeline


def _delivery(dataset: tf.data.Dataset, images: int) -> dict:
    """Images/s that `dataset` delivers to a Python loop with no model, over about `images`
    images after 10 untimed batches; a finished pass starts the next one, as a training loop's
    next epoch would."""
    batches = _passes(dataset)
    for _ in range(10):
        next(batches)
    delivered, count = 0, 0
    start = time.perf_counter()
    while delivered < images:
        delivered += len(next(batches)[1])
        count += 1
    seconds = time.perf_counter() - start
    return {"images_per_second": delivered / seconds, "images": delivered, "batches": count,
            "seconds": seconds}


def input_pipeline_throughput(config: Config, train: tuple[np.ndarray, np.ndarray],
                              settings: Settings) -> dict:
    """Images/s that `make_dataset(training=True)` delivers alone, and the baseline's pipeline
    (`baseline`: what the tutorial loop's input could deliver at best)."""
    result = _delivery(make_dataset(config, train, training=True), settings.pipeline_images)
    naive = baseline_dataset(*train, config.model.likelihood, config.train.seed)
    return {**result, "batch_size": config.data.batch_size,
            "baseline": {**_delivery(naive, settings.pipeline_images),
                         "batch_size": BASELINE_BATCH_SIZE}}
