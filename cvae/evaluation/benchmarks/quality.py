"""Time to quality: the seconds the default training path (`fit`) takes to reach the
validation quality that the baseline loop reaches in its epochs, against the baseline's."""

from __future__ import annotations

import math
import time

import keras

from cvae import data
from cvae.config import Config
from cvae.evaluation.benchmarks.common import Settings, _in_child, _seed
from cvae.evaluation.benchmarks.training import BASELINE_BATCH_SIZE, Baseline, baseline_dataset
from cvae.model.vae import CVAE
from cvae.training.train import compiled_model, make_dataset

# What the default training path should beat, and by how much (issue "Speed and scale").
TARGET_TIME_RATIO = 0.5  # default's seconds to the baseline's quality / the baseline's


class _QualityStop(keras.callbacks.Callback):
    """After each epoch: the validation negative ELBO (timed apart, so it can be taken off the
    training clock); stops training once it is at or below `target`."""

    def __init__(self, measure, target: float):
        super().__init__()
        self.measure, self.target = measure, target
        self.curve: list[float] = []
        self.evaluation_seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        value = self.measure(self.model)
        self.evaluation_seconds += time.perf_counter() - start
        self.curve.append(value)
        if value <= self.target:
            self.model.stop_training = True


def _race_data(config: Config, settings: Settings):
    """The race's training images and its validation scorer: a float32 model's `evaluate` on
    the first train_images // 5 validation images (`make_dataset(training=False)`)."""
    splits = data.load_splits(config.data)
    n = settings.train_images
    train = tuple(a[:n] for a in splits.train)
    validation = tuple(a[:max(n // 5, 1)] for a in splits.validation)
    # The VAE alone: the label terms' networks (the swap loss's judge) do not enter the ELBO,
    # and the baseline's model has none.
    scorer = compiled_model(config.replace(precision="float32", steps_per_execution=1,
                                           jit_compile=False, swap_weight=0.0,
                                           code_adversary_weight=0.0), steps_per_epoch=None)
    validation_batches = make_dataset(config, validation, training=False)

    def validation_neg_elbo(model: CVAE) -> float:
        scorer.set_weights(model.vae_weights())
        value = float(scorer.evaluate(validation_batches, return_dict=True, verbose=0)["neg_elbo"])
        if not math.isfinite(value):
            raise RuntimeError(f"time to quality: validation neg_elbo is {value}")
        return value

    return train, len(validation[0]), validation_neg_elbo


def _race_baseline(config_json: str, settings: Settings) -> dict:
    """The baseline's half of the race (in a child process): its seconds and validation curve."""
    config = Config.from_json(config_json)
    train, _, validation_neg_elbo = _race_data(config, settings)
    baseline = Baseline(config)
    dataset = baseline_dataset(*train, config.model.likelihood, config.train.seed)
    seconds, curve = 0.0, []
    for _ in range(settings.baseline_epochs):
        start = time.perf_counter()
        baseline.run_epoch(dataset)
        seconds += time.perf_counter() - start
        curve.append(validation_neg_elbo(baseline.model))
    return {"epochs": settings.baseline_epochs, "seconds": seconds,
            "batch_size": BASELINE_BATCH_SIZE, "neg_elbo": curve[-1], "validation_curve": curve}


def _race_default(config_json: str, settings: Settings, target: float) -> dict:
    """The default's half of the race (in a child process): `fit` epoch by epoch to `target`."""
    config = Config.from_json(config_json)
    train, validation_images, validation_neg_elbo = _race_data(config, settings)
    _seed(config)
    steps = data.steps_per_epoch(len(train[0]), config.data.batch_size)
    model = compiled_model(config, steps_per_epoch=steps)  # its schedule spans `epochs` of these
    # A cosine schedule's rate is 0 after the config's epochs: no use going on.
    max_epochs = (settings.max_epochs if config.train.lr_schedule == "constant"
                  else min(settings.max_epochs, config.train.epochs))
    stop = _QualityStop(validation_neg_elbo, target)
    start = time.perf_counter()
    model.fit(make_dataset(config, train, training=True), epochs=max_epochs,
              steps_per_epoch=steps, callbacks=[stop], verbose=0, shuffle=False)
    seconds = time.perf_counter() - start - stop.evaluation_seconds
    return {"epochs": len(stop.curve), "seconds": seconds, "batch_size": config.data.batch_size,
            "neg_elbo": stop.curve[-1], "reached": stop.curve[-1] <= target,
            "max_epochs": max_epochs, "validation_curve": stop.curve,
            "validation_images": validation_images}


def time_to_quality(config: Config, settings: Settings) -> dict:
    """The baseline trains `baseline_epochs` on the first `train_images` training images; its
    validation negative ELBO (nats/image) is the target. The default path (`fit`) then trains
    on the same images epoch by epoch until it reaches the target, or `max_epochs` (with a
    cosine schedule, at most the config's `epochs`, after which its rate is 0). Both
    models are scored by the project's evaluation (`make_dataset(training=False)` and a float32
    model's `evaluate`) on the same validation images; scoring is off both clocks. Each half
    runs in a fresh child process, as the throughput measurements do: on the project's VM the
    default's epochs in the benchmark's own process, after its other measurements, took about
    twice as long as in a process of their own (19 s against 12 s for 13 or 14 epochs)."""
    baseline = _in_child(_race_baseline, config.to_json(), settings)
    target = baseline["neg_elbo"]
    default = _in_child(_race_default, config.to_json(), settings, target)
    return {"train_images": settings.train_images,
            "validation_images": default.pop("validation_images"),
            "target_neg_elbo": target, "baseline": baseline, "default": default,
            "ratio": default["seconds"] / baseline["seconds"]}

