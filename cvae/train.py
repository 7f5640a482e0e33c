"""Training: data, model, checkpoints every epoch, TensorBoard, resume, and a final test score."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvae import data, images
from cvae.config import Config
from cvae.files import atomic_write_text
from cvae.labels import NUM_CLASSES
from cvae.model import CVAE, build_model


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class RunError(ValueError):
    """The run directory cannot be used as asked (exists without --resume, or nothing to resume)."""


@dataclasses.dataclass
class TrainResult:
    model: CVAE
    config: Config
    run_dir: Path
    # {"validation": {...}, "test": {...}}: METRICS of the final model, nats per image.
    metrics: dict
    epoch_seconds: list[float]


def sample_grid(model: CVAE, columns: int = 10, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 1]: one row per class, one column per latent code; the column's z is the same
    for every class, so a column shows one "style" drawn as each garment."""
    z = tf.random.stateless_normal([columns, model.config.latent_dim], seed=[seed, 0])
    z = tf.tile(z, [NUM_CLASSES, 1])
    labels = tf.repeat(tf.range(NUM_CLASSES), columns)
    return images.grid(model.decode(z, labels).numpy(), columns)


class _EpochEnd(keras.callbacks.Callback):
    """Per epoch: refuses non-finite losses, checkpoints, writes a sample grid, prints timing."""

    def __init__(self, run: "_Run"):
        super().__init__()
        self.run = run
        self.failure: str | None = None
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.failure = f"non-finite training loss {loss} at epoch {self._epoch + 1}, batch {batch}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        logs = logs or {}
        if self.failure is None:
            bad = [k for k, v in logs.items() if not math.isfinite(float(v))]
            if bad:
                self.failure = f"non-finite {', '.join(bad)} at the end of epoch {epoch + 1}"
        if self.failure is not None:
            self.model.stop_training = True
            return
        self.epoch_seconds.append(seconds)
        self.run.save(epoch + 1)
        grid = sample_grid(self.model)
        images.write_png(self.run.dir / "samples" / f"epoch_{epoch + 1:03d}.png", grid)
        with self.run.image_writer.as_default():
            tf.summary.image("samples", grid[np.newaxis], step=epoch + 1)
        # On a line of its own: Keras' progress bar has not ended its line yet.
        print(f"\nepoch {epoch + 1}: {seconds:.1f} s, "
              f"train neg_elbo {logs.get('neg_elbo', float('nan')):.2f}, "
              f"val neg_elbo {logs.get('val_neg_elbo', float('nan')):.2f} nats/image", flush=True)


class _Run:
    """A run directory: config.json, checkpoints/, logs/ (TensorBoard), samples/, metrics.json."""

    def __init__(self, config: Config, model: CVAE, resume: bool):
        self.dir = Path(config.train.runs_dir) / config.train.name
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.dir / "checkpoints",
                                                  max_to_keep=3)
        if resume:
            if self.manager.latest_checkpoint is None:
                raise RunError(f"--resume: no checkpoint in {self.dir / 'checkpoints'}")
            saved = Config.from_json((self.dir / "config.json").read_text())
            if dataclasses.replace(saved, train=config.train) != config:
                raise RunError(f"--resume: data/model config differs from {self.dir}/config.json")
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            # The optimiser's checkpoint holds the old learning rate; the config says the new one.
            model.optimizer.learning_rate = config.train.learning_rate
            print(f"resumed {self.manager.latest_checkpoint} (epoch {int(self.epoch)})")
        elif self.manager.latest_checkpoint is not None:
            raise RunError(f"{self.dir} already holds a run: pass --resume to continue it, or "
                           f"--name for a new one")
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / "config.json", config.to_json())
        self.image_writer = tf.summary.create_file_writer(str(self.dir / "logs" / "images"))

    def save(self, epoch: int) -> None:
        self.epoch.assign(epoch)
        self.manager.save(checkpoint_number=epoch)


def _model(config: Config) -> CVAE:
    return build_model(config.model, beta=config.train.beta,
                       kl_warmup_steps=config.train.kl_warmup_steps, seed=config.train.seed)


def _dataset(config: Config, arrays, training: bool, seed: int | None = None) -> tf.data.Dataset:
    """The pipeline for one split; evaluation always uses the run's seed, so it repeats."""
    return data.make_dataset(*arrays, batch_size=config.data.batch_size,
                             likelihood=config.model.likelihood,
                             seed=config.train.seed if seed is None else seed, training=training)


def train(config: Config, resume: bool = False, verbose: int | str = "auto") -> TrainResult:
    """Trains `config` into runs/<name>/ and returns the model with its validation and test
    metrics. Raises NonFiniteLossError (keeping the last good checkpoint) if the loss diverges."""
    keras.utils.set_random_seed(config.train.seed)
    splits = data.load_splits(config.data)
    print(f"data: {splits.source}; train {len(splits.train[0])}, validation "
          f"{len(splits.validation[0])}, test {len(splits.test[0])} images", flush=True)

    model = _model(config)
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate),
                  jit_compile=config.train.jit_compile)
    model.optimizer.build(model.trainable_variables)
    run = _Run(config, model, resume)
    end = _EpochEnd(run)
    callbacks = [
        end,
        keras.callbacks.TensorBoard(log_dir=str(run.dir / "logs"), write_graph=False),
    ]
    initial_epoch = int(run.epoch)
    seed = config.train.seed
    if initial_epoch:  # resumed: a new shuffle/binarisation stream rather than epoch 1's again
        seed = int(np.random.SeedSequence([seed, initial_epoch]).generate_state(1)[0])
    if initial_epoch < config.train.epochs:
        model.fit(_dataset(config, splits.train, training=True, seed=seed),
                  validation_data=_dataset(config, splits.validation, training=False),
                  epochs=config.train.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  shuffle=False, verbose=verbose)  # the dataset shuffles itself, seeded
    if end.failure is not None:
        kept = run.manager.latest_checkpoint
        raise NonFiniteLossError(
            f"training stopped: {end.failure}. " + (f"The last good checkpoint is {kept}"
                                                    if kept else "No checkpoint was written."))
    metrics = evaluate(model, config, splits)
    metrics["epochs"] = int(run.epoch)
    if end.epoch_seconds:
        metrics["seconds_per_epoch"] = float(np.mean(end.epoch_seconds))
    atomic_write_text(run.dir / "metrics.json", json.dumps(metrics, indent=2))
    test = metrics["test"]
    bits = f", {test['bits_per_dim']:.3f} bits/dim" if "bits_per_dim" in test else ""
    print(f"test: neg_elbo {test['neg_elbo']:.2f} nats/image{bits} (recon {test['recon']:.2f}, "
          f"kl {test['kl']:.2f})", flush=True)
    return TrainResult(model, config, run.dir, metrics, end.epoch_seconds)


def evaluate(model: CVAE, config: Config, splits: data.Splits | None = None) -> dict:
    """{"validation": {...}, "test": {...}}: neg_elbo, recon, kl in nats per image (and
    bits_per_dim for the 8-bit likelihood), one reparameterised sample per image."""
    splits = splits or data.load_splits(config.data)
    metrics = {}
    for split in ("validation", "test"):
        result = model.evaluate(_dataset(config, getattr(splits, split), training=False),
                                return_dict=True, verbose=0)
        metrics[split] = {k: float(v) for k, v in result.items() if k != "loss"}
        if config.model.likelihood == "discretized_logistic":  # discrete, over 8 bits
            metrics[split]["bits_per_dim"] = metrics[split]["neg_elbo"] / (28 * 28 * math.log(2))
    return metrics


def load_run(run_dir: str | Path) -> TrainResult:
    """The model of a run directory at its last checkpoint, with its config and metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir}: not a run directory (no config.json)")
    config = Config.from_json((run_dir / "config.json").read_text())
    model = _model(config)
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise RunError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, epoch=epoch).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if metrics.get("epochs") != int(epoch):  # metrics.json is of another epoch, or missing
        model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate))
        metrics = {**evaluate(model, config), "epochs": int(epoch)}
    return TrainResult(model, config, run_dir, metrics, [])
