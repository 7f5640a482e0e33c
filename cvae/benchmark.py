"""Speed and scale on the current machine: training throughput through the project's `fit`
path, the input pipeline alone, SavedModel generation latency, peak training memory, and time
to quality against a tutorial-style baseline loop on the same model."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvae import data, generate
from cvae.config import Config
from cvae.files import atomic_write_text
from cvae.model import CVAE, build_model
from cvae.train import compiled_model, make_dataset

# The batch of the TensorFlow tutorials' loops, and of the baseline, and its constant rate:
# Keras' default for Adam, and what the square-root rule gives at batch 32 from the default
# 2e-3 at 128. It stays fixed whatever the config's rate, so that `--learning-rate` or
# `--lr-schedule` races the default's variants against one target.
BASELINE_BATCH_SIZE = 32
BASELINE_LEARNING_RATE = 1e-3
GENERATION_LATENCY_BATCHES = (1, 64)
GENERATION_THROUGHPUT_BATCH = 1000

# What the default training path should beat, and by how much (issue "Speed and scale").
TARGET_TIME_RATIO = 0.5  # default's seconds to the baseline's quality / the baseline's
TARGET_PIPELINE_FACTOR = 10.0  # input pipeline images/s / training images/s
# Generation by the SavedModel (issue "Fidelity": the resnet decoder, guided, costs about 20
# times version 7's dense one, whose targets were 10 ms at batch 64 and 10,000 images/s).
TARGET_BATCH1_P50_MS = 20.0
TARGET_BATCH1000_IMAGES_PER_SECOND = 2_000.0

# --variants without a list: alternatives to the configuration given, one field at a time.
STANDARD_VARIANTS = ("batch_size=64", "batch_size=128", "batch_size=256", "batch_size=512",
                     "steps_per_execution=1", "steps_per_execution=8",
                     "precision=float32", "precision=mixed_bfloat16", "xla_loss=true",
                     "fused_adam=false", "precision=float32,fused_adam=false",
                     "jit_compile=true")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much the benchmark measures. With the defaults the whole run took 124 and 128 s on
    the project's 2-core CPU machine (docs/speed.md)."""

    model_dir: str = "saved_models/cvae"
    # Time to quality: training images (the first N of the training split) and validation
    # images (the first N // 5 of the validation split, as `--limit` does).
    train_images: int = 3000
    baseline_epochs: int = 10
    # The default training stops at the baseline's quality or after this many epochs.
    max_epochs: int = 30
    # Throughput: images timed after `warmup_steps` untimed steps (which trace the step).
    # (The baseline's 32-image steps are timed on as many images.)
    timed_images: int = 12_800
    warmup_steps: int = 10
    pipeline_images: int = 256_000
    # Generation: timed calls per latency batch size, and calls at batch 1000.
    latency_calls: int = 200
    throughput_calls: int = 20
    # Applications (`--applications`): timed calls of each signature at batch 100.
    application_calls: int = 3

    @classmethod
    def quick(cls, **overrides) -> "Settings":
        """Seconds-long settings for tests: a few steps, calls and epochs."""
        return cls(**{"train_images": 256, "baseline_epochs": 1, "max_epochs": 2,
                      "timed_images": 256, "warmup_steps": 2, "pipeline_images": 2560,
                      "latency_calls": 5, "throughput_calls": 2, "application_calls": 1,
                      **overrides})

    def __post_init__(self):
        for name in ("train_images", "baseline_epochs", "max_epochs", "timed_images",
                     "warmup_steps", "pipeline_images", "latency_calls", "throughput_calls",
                     "application_calls"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def quick_config() -> Config:
    """`Config.small()` without its KL warm-up: the tiny model of the `--quick` mode."""
    return Config.small(kl_warmup_steps=0)


# ----------------------------------------------------------------------------- the machine


def machine() -> dict:
    """CPU model, core counts, memory, load and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow_probability as tfp

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                                1),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "tensorflow": tf.__version__, "keras": keras.__version__, "tfp": tfp.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError("/proc/self/status has no VmHWM line")


def _in_child(function, *args):
    """`function(*args)` in a fresh spawned Python process (its own peak memory and TensorFlow
    state); returns its result or re-raises its exception."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


# ----------------------------------------------------------------------------- training


def _seed(config: Config) -> None:
    """Seeds Python, NumPy and TensorFlow as `cvae.train.train` does (and, with
    `deterministic`, makes the ops deterministic), so every model starts from the same weights."""
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)


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


# ----------------------------------------------------------------------------- generation


def generation_latency(model_dir: str, settings: Settings) -> dict:
    """The exported model's `serving_default` (label, seed) -> images, through
    `tf.saved_model.load`: latency p50/p99 (ms, to the images as numpy) at batch 1 and 64, and
    images/s at batch 1000, each after untimed warm-up calls."""
    served = generate.load(model_dir)
    signature = served.signatures["serving_default"]
    rng = np.random.default_rng(0)

    def timed_calls(batch: int, calls: int, warmup: int) -> np.ndarray:
        requests = [(tf.constant(rng.integers(0, 10, batch), tf.int32),
                     tf.constant(rng.integers(0, 2**31 - 1, batch), tf.int32))
                    for _ in range(warmup + calls)]
        seconds = []
        for label, seed in requests:
            start = time.perf_counter()
            signature(label=label, seed=seed)["images"].numpy()
            seconds.append(time.perf_counter() - start)
        return np.array(seconds[warmup:])

    result = {"model": str(served.path)}
    for batch in GENERATION_LATENCY_BATCHES:
        ms = 1000 * timed_calls(batch, settings.latency_calls, warmup=10)
        result[f"batch_{batch}"] = {"p50_ms": float(np.percentile(ms, 50)),
                                    "p99_ms": float(np.percentile(ms, 99)), "calls": len(ms)}
    seconds = timed_calls(GENERATION_THROUGHPUT_BATCH, settings.throughput_calls, warmup=2)
    result[f"batch_{GENERATION_THROUGHPUT_BATCH}"] = {
        "images_per_second": GENERATION_THROUGHPUT_BATCH * len(seconds) / float(seconds.sum()),
        "p50_ms": float(1000 * np.percentile(seconds, 50)), "calls": len(seconds)}
    return result


# ----------------------------------------------------------------------------- applications

# The applications' signatures at the batch the issue times them, and the target (seconds a
# call, p50) that classify and inpaint must meet at the export's settings; denoise is timed too.
APPLICATIONS_BATCH = 100
TARGET_APPLICATION_SECONDS = 5.0
TIMED_APPLICATIONS = ("classify", "inpaint", "denoise")


def applications_latency(model_dir: str, calls: int) -> dict:
    """Seconds per call (p50 and max over `calls`, after one untimed call) of the exported
    model's `classify`, `inpaint` (bottom half missing) and `denoise` at batch
    APPLICATIONS_BATCH, through `tf.saved_model.load`, on the model's own samples; with the
    settings the export recorded (its config.json's `applications` section)."""
    from cvae.applications import corruptions

    served = generate.load(model_dir)
    missing = [name for name in TIMED_APPLICATIONS if name not in served.signatures]
    if missing:
        raise ValueError(f"{served.path}: no {', '.join(missing)} signature(s); export the "
                         f"model with this version of the project")
    n = APPLICATIONS_BATCH
    label = tf.constant(np.arange(n) % 10, tf.int32)
    seed = tf.constant(np.arange(n), tf.int32)
    images = served.signatures["serving_default"](label=label, seed=seed)["images"]
    inputs = {"classify": {"images": images},
              "inpaint": {"images": images, "mask": tf.constant(corruptions.mask("bottom-half", n)),
                          "label": label, "seed": seed},
              "denoise": {"images": images, "label": label}}
    result = {"model": str(served.path), "batch_size": n, "config": served.config,
              "settings": served.config.get("applications", {})}
    for name in TIMED_APPLICATIONS:
        signature = served.signatures[name]
        seconds = []
        for _ in range(1 + calls):
            start = time.perf_counter()
            {k: v.numpy() for k, v in signature(**inputs[name]).items()}
            seconds.append(time.perf_counter() - start)
        timed = np.array(seconds[1:])
        result[name] = {"p50_seconds": float(np.percentile(timed, 50)),
                        "max_seconds": float(timed.max()), "calls": calls,
                        "first_call_seconds": seconds[0]}
    return result


def run_applications(settings: Settings) -> dict:
    """`applications_latency` of `settings.model_dir`'s newest version with its target."""
    started = time.perf_counter()
    generate.resolve_version(settings.model_dir)
    results = {"machine": machine(), "settings": dataclasses.asdict(settings)}
    _log(f"timing classify, inpaint and denoise at batch {APPLICATIONS_BATCH} ...")
    results["applications"] = applications_latency(settings.model_dir,
                                                   settings.application_calls)
    results["config"] = results["applications"].pop("config")  # the export's, for the header
    checks = [{"what": f"{name} p50 s", "value": results["applications"][name]["p50_seconds"],
               "op": "<=", "threshold": TARGET_APPLICATION_SECONDS}
              for name in ("classify", "inpaint")]
    for c in checks:
        c["passed"] = compare(c["value"], c["op"], c["threshold"])
    results["targets"] = [{"name": f"applications at batch {APPLICATIONS_BATCH}",
                           "checks": checks, "passed": all(c["passed"] for c in checks)}]
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


def format_applications(results: dict) -> str:
    """The printed table of `run_applications`' results."""
    a = results["applications"]
    rows = [[f"{name}, batch {a['batch_size']}", f"{a[name]['p50_seconds']:.2f}",
             f"{a[name]['max_seconds']:.2f}", f"{a[name]['first_call_seconds']:.2f}"]
            for name in TIMED_APPLICATIONS]
    settings = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in sorted(a["settings"].items()))
    return "\n".join([*_header(results), "",
                      *_table(["signature", "p50 s", "max s", "first call s"], rows),
                      f"model: {a['model']} ({settings or 'settings not recorded'})", "",
                      "targets:", *("  " + format_target(t) for t in results["targets"]),
                      f"benchmark took {results['seconds']:.0f} s"])


# ----------------------------------------------------------------------------- time to quality


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
    scorer = compiled_model(config.replace(precision="float32", steps_per_execution=1,
                                           jit_compile=False), steps_per_epoch=None)
    validation_batches = make_dataset(config, validation, training=False)

    def validation_neg_elbo(model: CVAE) -> float:
        scorer.set_weights(model.get_weights())
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


# ----------------------------------------------------------------------------- the whole run


def check(config: Config, settings: Settings, splits: data.Splits) -> None:
    """Raises ValueError for settings that cannot run on `splits`, before anything is measured."""
    if config.train.strategy != "default":
        raise ValueError(f"--strategy {config.train.strategy}: the benchmark measures one "
                         f"device (strategy default)")
    available = len(splits.train[0])
    if settings.train_images > available:
        raise ValueError(f"--train-images {settings.train_images} is more than the {available} "
                         f"training images")
    smallest = max(config.data.batch_size, BASELINE_BATCH_SIZE)
    if settings.train_images < smallest:
        raise ValueError(f"--train-images {settings.train_images} is fewer than one batch "
                         f"({smallest} images)")


def targets(results: dict) -> list[dict]:
    """The issue's three targets, each with its checks (measured value, comparison, threshold)
    and whether every check passes."""
    quality = results["time_to_quality"]
    pipeline_factor = (results["input_pipeline"]["images_per_second"]
                       / results["training"]["images_per_second"])
    generation = results["generation"]
    rows = [
        ("time to quality, default / baseline seconds",
         [("ratio", quality["ratio"], "<=", TARGET_TIME_RATIO)],
         quality["default"]["reached"]),
        ("input pipeline images/s over training images/s",
         [("factor", pipeline_factor, ">=", TARGET_PIPELINE_FACTOR)], True),
        ("SavedModel generation",
         [("batch-1 p50 ms", generation["batch_1"]["p50_ms"], "<", TARGET_BATCH1_P50_MS),
          ("batch-1000 images/s", generation["batch_1000"]["images_per_second"], ">=",
           TARGET_BATCH1000_IMAGES_PER_SECOND)], True),
    ]
    out = []
    for name, checks, valid in rows:
        checks = [{"what": what, "value": value, "op": op, "threshold": threshold,
                   "passed": compare(value, op, threshold)}
                  for what, value, op, threshold in checks]
        out.append({"name": name, "checks": checks,
                    "passed": valid and all(c["passed"] for c in checks)})
    return out


def compare(value: float, op: str, threshold: float) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">=": value >= threshold}[op]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(config: Config, settings: Settings) -> dict:
    """Every measurement (see the module docstring), as one JSON-ready dict."""
    started = time.perf_counter()
    generate.resolve_version(settings.model_dir)  # a missing model fails before any work
    config = config.resolved()
    splits = data.load_splits(config.data)
    check(config, settings, splits)
    results = {"machine": machine(), "config": config.to_dict(),
               "settings": dataclasses.asdict(settings)}
    _log("measuring the input pipeline ...")
    results["input_pipeline"] = input_pipeline_throughput(config, splits.train, settings)
    _log("measuring SavedModel generation ...")
    results["generation"] = generation_latency(settings.model_dir, settings)
    _log("measuring training throughput (child process) ...")
    results["training"] = _in_child(_training_child, config.to_json(), settings)
    _log("measuring the baseline's throughput (child process) ...")
    results["baseline"] = _in_child(_baseline_child, config.to_json(), settings)
    _log(f"time to quality: baseline {settings.baseline_epochs} epochs, then the default "
         f"(child processes) ...")
    results["time_to_quality"] = time_to_quality(config, settings)
    quality = results["time_to_quality"]
    results["speedups"] = {
        "training_images_per_second": (results["training"]["images_per_second"]
                                       / results["baseline"]["images_per_second"]),
        "time_to_quality": quality["baseline"]["seconds"] / quality["default"]["seconds"]}
    results["targets"] = targets(results)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


def _flat(config: Config) -> dict:
    """Every config field by its flat name (as `Config.replace` takes them)."""
    return {f.name: getattr(section, f.name)
            for section in (getattr(config, s.name) for s in dataclasses.fields(config))
            for f in dataclasses.fields(section)}


def parse_variant(spec: str, base: Config) -> Config:
    """`base` with the fields of `spec` ("batch_size=256" or "precision=mixed_bfloat16,
    jit_compile=true") changed; raises ValueError naming a bad field or value."""
    fields = _flat(base)
    changes = {}
    for item in spec.split(","):
        name, sep, text = item.strip().partition("=")
        name = name.replace("-", "_")
        if not sep or name not in fields:
            raise ValueError(f"--variants: {item!r} is not FIELD=VALUE with a config field")
        current = fields[name]
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError
                value = text.lower() == "true"
            elif isinstance(current, tuple):
                value = tuple(int(v) for v in text.split("x"))
            elif current is None:
                value = int(text) if text.isdigit() else text
            else:
                value = type(current)(text)
        except ValueError:
            raise ValueError(f"--variants: bad value in {item!r} (the field is "
                             f"{type(current).__name__})") from None
        changes[name] = value
    return base.replace(**changes)


def variant_name(config: Config, base: Config) -> str:
    """The fields where `config` differs from `base`, e.g. "batch_size=256" ("reference")."""
    fields, reference = _flat(config), _flat(base)
    return ", ".join(f"{k}={v}" for k, v in fields.items() if v != reference[k]) or "reference"


def run_variants(config: Config, variants: list[Config], settings: Settings) -> dict:
    """Training throughput (each in its own child process) of `config` and of every variant
    that differs from it. A variant that cannot run gets an "error" instead of figures."""
    started = time.perf_counter()
    # "auto" made concrete: a variant naming the same precision is then the same config, and
    # the JSON says what ran.
    config, variants = config.resolved(), [v.resolved() for v in variants]
    results = {"machine": machine(), "config": config.to_dict(),
               "settings": dataclasses.asdict(settings), "variants": []}
    data.load_splits(config.data)  # fails here, once, if the data cannot be read
    seen = []
    for variant in [config, *variants]:
        if variant in seen:
            continue
        seen.append(variant)
        name = variant_name(variant, config)
        _log(f"measuring training throughput: {name} ...")
        row = _in_child(_training_child, variant.to_json(), settings, True)
        results["variants"].append({"name": name, "batch_size": variant.data.batch_size,
                                    "steps_per_execution": variant.train.steps_per_execution,
                                    "precision": variant.train.precision,
                                    "jit_compile": variant.train.jit_compile, **row})
    reference = results["variants"][0]
    for row in results["variants"]:
        if "error" not in row and "error" not in reference:
            row["vs_reference"] = row["images_per_second"] / reference["images_per_second"]
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


# ----------------------------------------------------------------------------- reports


def _describe(config: Config) -> str:
    t, m = config.train, config.model
    return (f"batch {config.data.batch_size}, {t.precision}, steps_per_execution "
            f"{t.steps_per_execution}, jit_compile {t.jit_compile}, xla_loss {t.xla_loss}, "
            f"{'fused ' if t.fused_adam else ''}Adam {t.learning_rate:g} {t.lr_schedule} over "
            f"{t.epochs} epochs, beta {t.beta:g}; latent {m.latent_dim}, encoder "
            f"{list(m.encoder_filters)} + {m.hidden_dim}, decoder {_decoder(m)}, "
            f"{m.likelihood}")


def _decoder(m) -> str:
    if m.architecture == "mlp":
        return f"mlp {list(m.decoder_hidden)}"
    if m.architecture == "conv":
        return f"conv {m.hidden_dim} + {list(m.decoder_filters)}"
    return m.architecture


def _header(results: dict) -> list[str]:
    m = results["machine"]
    return [f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']} GiB, {m['gpus']} GPU; load average {m['load_average'][0]} "
            f"-> {m['load_average_after'][0]}",
            f"software: TensorFlow {m['tensorflow']}, Keras {m['keras']}, TFP {m['tfp']}, "
            f"Python {m['python']}",
            f"training config: {_describe(Config.from_dict(results['config']))}"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def format_target(target: dict) -> str:
    """One line: "PASS  name: what 0.412 <= 0.5; ..." (values rounded as `format_value`)."""
    checks = "; ".join(f"{c['what']} {format_value(c['value'])} {c['op']} "
                       f"{format_value(c['threshold'])}" for c in target["checks"])
    return f"{'PASS' if target['passed'] else 'FAIL'}  {target['name']}: {checks}"


def format_value(value: float) -> str:
    """4 significant digits at most, no exponent: 0.4123, 12.35, 1235, 123457."""
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.2e}"


def format_report(results: dict) -> str:
    """The printed table of `run`'s results."""
    train, base, pipe = results["training"], results["baseline"], results["input_pipeline"]
    gen, quality = results["generation"], results["time_to_quality"]
    rows = [
        [f"training: fit + make_dataset, batch {train['batch_size']}",
         f"{train['images_per_second']:.0f}", f"{train['step_ms']:.1f} /step",
         f"{train['peak_rss_mib']:.0f}"],
        [f"baseline: tutorial loop, batch {base['batch_size']}",
         f"{base['images_per_second']:.0f}", f"{base['step_ms']:.1f} /step",
         f"{base['peak_rss_mib']:.0f}"],
        [f"input pipeline alone, batch {pipe['batch_size']}",
         f"{pipe['images_per_second']:.0f}", "", ""],
        [f"baseline's pipeline alone, batch {pipe['baseline']['batch_size']}",
         f"{pipe['baseline']['images_per_second']:.0f}", "", ""],
    ]
    for batch in GENERATION_LATENCY_BATCHES:
        g = gen[f"batch_{batch}"]
        rows.append([f"generation, batch {batch}", f"{batch * 1000 / g['p50_ms']:.0f}",
                     f"p50 {g['p50_ms']:.2f}, p99 {g['p99_ms']:.2f}", ""])
    g = gen[f"batch_{GENERATION_THROUGHPUT_BATCH}"]
    rows.append([f"generation, batch {GENERATION_THROUGHPUT_BATCH}",
                 f"{g['images_per_second']:.0f}", f"p50 {g['p50_ms']:.1f}", ""])
    b, d = quality["baseline"], quality["default"]
    lines = [*_header(results), "",
             *_table(["measurement", "images/s", "ms", "peak RSS MiB"], rows), "",
             f"time to quality ({quality['train_images']} training images, "
             f"{quality['validation_images']} validation images; validation neg_elbo, "
             f"nats/image):",
             f"  baseline: {b['epochs']} epochs at batch {b['batch_size']}: {b['seconds']:.1f} s "
             f"-> {b['neg_elbo']:.2f} (the target)",
             f"  default:  {d['epochs']} epochs at batch {d['batch_size']}: {d['seconds']:.1f} s "
             f"-> {d['neg_elbo']:.2f}" + ("" if d["reached"] else
                                          f" (target NOT reached in {d['max_epochs']} epochs)"),
             f"speed-up of the default over the baseline: "
             f"{results['speedups']['training_images_per_second']:.2f}x training images/s, "
             f"{results['speedups']['time_to_quality']:.2f}x time to quality",
             f"generation model: {gen['model']}", "", "targets:",
             *("  " + format_target(t) for t in results["targets"]),
             f"benchmark took {results['seconds']:.0f} s"]
    return "\n".join(lines)


def format_variants(results: dict) -> str:
    """The printed table of `run_variants`' results."""
    rows = []
    for row in results["variants"]:
        if "error" in row:
            rows.append([row["name"], str(row["batch_size"]), "failed", "", "", ""])
            continue
        rows.append([row["name"], str(row["batch_size"]), f"{row['images_per_second']:.0f}",
                     f"{row['step_ms']:.1f}", f"{row['vs_reference']:.2f}x",
                     f"{row['peak_rss_mib']:.0f}"])
    errors = [f"  {row['name']}: {row['error']}" for row in results["variants"] if "error" in row]
    return "\n".join([*_header(results), "",
                      *_table(["training variant", "batch", "images/s", "ms/step", "vs reference",
                               "peak RSS MiB"], rows),
                      *(["failed:", *errors] if errors else []),
                      f"benchmark took {results['seconds']:.0f} s"])


def write_report(path: str | os.PathLike, results: dict) -> Path:
    """Writes `results` as JSON, atomically."""
    return atomic_write_text(path, json.dumps(results, indent=2) + "\n")
