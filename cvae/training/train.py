"""Training: data, model, checkpoints every epoch, TensorBoard, resume, and a final test score."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvae import data, images
from cvae.data.fields import grid_levels
from cvae.training.inputs import load_data, make_dataset, split_size
from cvae.model import sampling
from cvae.config import Config, resolve_precision
from cvae.files import atomic_write_text, require_writable
from cvae.labels import NUM_CLASSES
from cvae.model.losses import bits_per_dim
from cvae.model.vae import CVAE, build_model
from cvae.training.optimizers import FusedAdam


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
    # False on the workers of a multi-worker run other than the chief: they do not export.
    chief: bool = True


def sample_grid(model: CVAE, columns: int = 10, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 1]: one row per class, one column per latent code; the column's z is the same
    for every class, so a column shows one "style" drawn as each garment. The codes are the
    prior's: the per-class sampler (`cvae.model.sampling`) is fitted at export, and the exported
    version's grid is written to <run>/class_grid.png then."""
    z = tf.random.stateless_normal([columns, model.config.latent_dim], seed=[seed, 0])
    rows = grid_rows(model)
    z = tf.tile(z, [len(rows), 1])
    labels = tf.repeat(tf.constant(rows), columns, axis=0)
    return images.grid(model.decode(z, labels).numpy(), columns)


def grid_rows(model: CVAE) -> np.ndarray:
    """The condition of each row of `sample_grid`: the classes 0..9 (int [10]); for a model of
    metadata fields, its first field's values (at most 20 of a categorical field, 5 levels of
    a continuous one), the other fields unknown (float32 [rows, fields], NaN)."""
    if not model.fields:
        return np.arange(NUM_CLASSES, dtype=np.int32)
    levels = grid_levels(model.fields[0])
    rows = np.full([len(levels), len(model.fields)], np.nan, np.float32)
    rows[:, 0] = levels
    return rows


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
        self.run.save()
        if self.run.chief:
            grid = sample_grid(self.model)
            images.write_png(self.run.dir / "samples" / f"epoch_{epoch + 1:03d}.png", grid)
            with self.run.image_writer.as_default():
                tf.summary.image("samples", grid[np.newaxis], step=epoch + 1)
        # On a line of its own: Keras' progress bar has not ended its line yet.
        print(f"\nepoch {epoch + 1}: {seconds:.1f} s, "
              f"train neg_elbo {logs.get('neg_elbo', float('nan')):.2f}, "
              f"val neg_elbo {logs.get('val_neg_elbo', float('nan')):.2f} nats/image", flush=True)


class _Run:
    """A run directory: config.json, checkpoints/, logs/ (TensorBoard), samples/, metrics.json.

    Checkpoints hold the weights, the optimiser's state and step counter, and the epoch; they
    are numbered by optimiser step. Under MultiWorkerMirroredStrategy every worker saves (the
    save is collective) but only the chief writes to the run directory; the others write to a
    scratch folder that `close` removes."""

    def __init__(self, config: Config, model: CVAE, resume: bool, steps_per_epoch: int,
                 chief: bool = True, worker_id: int = 0):
        self.dir = Path(config.train.runs_dir) / config.train.name
        self.chief = chief
        self.steps_per_epoch = steps_per_epoch
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.model = model
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              epoch=self.epoch)
        checkpoints = self.dir / "checkpoints"
        latest = _latest_checkpoint(checkpoints)
        if resume:
            if latest is None:
                raise RunError(f"--resume: no checkpoint in {checkpoints}")
            saved = Config.from_json((self.dir / "config.json").read_text())
            if dataclasses.replace(saved, train=config.train) != config:
                raise RunError(f"--resume: data/model config differs from {self.dir}/config.json")
            if saved.train.lr_schedule != config.train.lr_schedule:
                # A constant rate is a variable of the optimiser's checkpoint; a schedule is not.
                raise RunError(f"--resume: {self.dir} was trained with lr_schedule "
                               f"{saved.train.lr_schedule!r}, whose optimiser state does not "
                               f"restore into {config.train.lr_schedule!r}: resume it with "
                               f"--lr-schedule {saved.train.lr_schedule}")
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 -- OpError, IndexError, AssertionError...
                from cvae.errors import op_error_text

                detail = op_error_text(e.message) if isinstance(e, tf.errors.OpError) else str(e)
                raise RunError(f"--resume: cannot restore {latest} (corrupt or incomplete "
                               f"checkpoint; delete it to fall back to an earlier one): "
                               f"{detail.strip().splitlines()[0] if detail.strip() else type(e).__name__}") from e
            # A constant rate is a variable of the optimiser's checkpoint, which holds the old
            # one; the config says the new one. (A schedule is computed from the step.)
            if config.train.lr_schedule == "constant":
                model.optimizer.learning_rate = config.train.learning_rate
            print(f"resumed {latest} (epoch {int(self.epoch)}, step "
                  f"{_step(model)})", flush=True)
        elif latest is not None:
            raise RunError(f"{self.dir} already holds a run: pass --resume to continue it, or "
                           f"--name for a new one")
        self.write_dir = self.dir if chief else self.dir / f".worker-{worker_id}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir / "checkpoints",
                                                  max_to_keep=3)
        self.write_dir.mkdir(parents=True, exist_ok=True)
        if chief:
            atomic_write_text(self.dir / "config.json", config.to_json())
        self.image_writer = tf.summary.create_file_writer(str(self.write_dir / "logs" / "images"))

    def save(self) -> str:
        """Checkpoints the current state, numbered by optimiser step; returns its path."""
        step = _step(self.model)
        self.epoch.assign(step // self.steps_per_epoch)
        return self.manager.save(checkpoint_number=step)

    def close(self) -> None:
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def _step(model: CVAE) -> int:
    """The optimiser's step counter (a mirrored variable under tf.distribute)."""
    return int(model.optimizer.iterations.numpy())


def _latest_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint in `folder`, or None if there is none. Checkpoint files without a
    readable state file raise RunError: a run is never silently restarted from scratch."""
    if not folder.is_dir():
        return None
    state = tf.train.get_checkpoint_state(str(folder))  # None for a garbled file, too
    if state is None or not state.model_checkpoint_path:
        if any(folder.glob("ckpt-*.index")):
            raise RunError(f"{folder} holds checkpoint files but its 'checkpoint' state file, "
                           f"which names the latest, is missing or unreadable; refusing to start "
                           f"the run again from scratch (restore the file, or move the folder away)")
        return None
    latest = str(folder / Path(state.model_checkpoint_path).name)
    if not Path(latest + ".index").is_file():
        raise RunError(f"{folder}/checkpoint names {Path(latest).name}, whose files are missing "
                       f"(restore them, or edit the state file to name an earlier checkpoint)")
    return latest


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `TrainConfig.strategy` names (see its comment)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy=multiworker needs the TF_CONFIG environment variable "
                             "(the cluster and this worker's task); see docs/training.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def _task(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """(is this process the chief, its task id) under `strategy`; one process is the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0
    kind, index = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief), index


def split_cpu(devices: int) -> None:
    """Splits the CPU into `devices` logical devices, so MirroredStrategy can be run (and
    tested) without GPUs. Must be called before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


def compiled_model(config: Config, *, steps_per_epoch: int | None) -> CVAE:
    """The model of `config`, compiled with its optimiser built (so a checkpoint can restore
    into it), in the current tf.distribute scope. The learning-rate schedule spans the config's
    `epochs` of `steps_per_epoch` steps; None is for a model that will not be trained
    (evaluation, export), which gets the constant peak rate."""
    precision = resolve_precision(config.train.precision)
    model = build_model(config.model, beta=config.train.beta,
                        kl_warmup_steps=config.train.kl_warmup_steps, seed=config.train.seed,
                        dtype_policy=precision, xla_loss=config.train.xla_loss,
                        code_adversary_weight=config.train.code_adversary_weight,
                        code_adversary_ramp_steps=config.train.code_adversary_ramp_steps,
                        swap_weight=config.train.swap_weight,
                        swap_prior_share=config.train.swap_prior_share)
    adam = FusedAdam if config.train.fused_adam else keras.optimizers.Adam
    optimizer = adam(learning_rate(config, steps_per_epoch))
    if precision == "mixed_float16":  # float16 gradients underflow unscaled
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer,
                  jit_compile=config.train.jit_compile,
                  steps_per_execution=config.train.steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model


def copy_exported_weights(model: CVAE, version_dir: str | os.PathLike) -> None:
    """Sets the encoder's and decoder's weights of `model` to those of an exported version
    (`TrainConfig.init_from`). The export holds the model's variables in `model.variables`'
    order (`cvae.serving.module.ServingModule.model_variables`); the label terms' networks,
    which an export may lack, keep their initialisation. Raises RunError if the version is
    missing or its variables are not this model's (another architecture or size)."""
    path = Path(version_dir)
    if not (path / "saved_model.pb").is_file():
        raise RunError(f"init_from: {path} is not an exported version (no saved_model.pb); "
                       f"--recipe scratch trains from random weights")
    source = list(tf.saved_model.load(str(path)).model_variables)
    own = {id(v) for v in model.auxiliary_variables()}
    target = [v for v in model.variables if id(v) not in own]
    shapes = [tuple(v.shape) for v in source], [tuple(v.shape) for v in target]
    if shapes[0] != shapes[1]:
        raise RunError(f"init_from: {path} holds {len(source)} variables whose shapes are not "
                       f"this model's {len(target)} (another architecture or size?); "
                       f"--recipe scratch trains from random weights")
    for mine, theirs in zip(target, source):
        mine.assign(theirs)
    print(f"init_from: started from the weights of {path}", flush=True)


def learning_rate(config: Config, steps_per_epoch: int | None):
    """The optimiser's learning rate: `learning_rate`, or for the cosine schedule a
    `CosineDecay` from it to 0 over `epochs * steps_per_epoch` steps (the constant rate when
    `steps_per_epoch` is None)."""
    t = config.train
    if t.lr_schedule == "constant" or steps_per_epoch is None:
        return t.learning_rate
    return keras.optimizers.schedules.CosineDecay(t.learning_rate, t.epochs * steps_per_epoch)


def _float32_model(config: Config, weights: list | None = None) -> CVAE:
    """A single-device float32 model (what is evaluated and exported), with `weights`."""
    model = compiled_model(config.replace(precision="float32", steps_per_execution=1,
                                          jit_compile=False), steps_per_epoch=None)
    if weights is not None:
        model.set_weights(weights)
    return model


def _describe(field) -> str:
    if field.kind == "categorical":
        shown = ", ".join(field.values[:6]) + (", ..." if len(field.values) > 6 else "")
        return f"{field.name} ({len(field.values)} values: {shown})"
    return f"{field.name} ({field.low:g} to {field.high:g})"


def train(config: Config, resume: bool = False, verbose: int | str = "auto",
          callbacks: list[keras.callbacks.Callback] | None = None) -> TrainResult:
    """Trains `config` into runs/<name>/ and returns the float32 model with its validation and
    test metrics. Raises NonFiniteLossError (keeping the last good checkpoint) if the loss
    diverges. Ctrl-C saves a checkpoint of the step reached and re-raises KeyboardInterrupt;
    `resume=True` then continues from that very step, with the same data as an uninterrupted
    run would have seen."""
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)
    # "auto" is made concrete before the run's config.json records it.
    config = config.resolved()
    strategy = distribution_strategy(config.train.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.data.batch_size % replicas:
        raise ValueError(f"config: batch_size={config.data.batch_size} (the global batch) must "
                         f"be a multiple of the {replicas} replicas")
    chief, worker_id = _task(strategy)
    require_writable(config.train.runs_dir, "runs")
    splits = load_data(config)
    if config.data.images:  # the model takes the folder's fields and image shape
        catalogue = splits.train.catalogue
        config = config.replace(fields=tuple(f.to_json() for f in catalogue.fields),
                                image_shape=catalogue.shape)
        print(f"fields: {', '.join(_describe(f) for f in catalogue.fields)}", flush=True)
    elif tuple(config.model.image_shape) != (28, 28, 1):
        raise ValueError(f"config: image_shape={tuple(config.model.image_shape)} is for a folder "
                         f"of one's own images (--images); Fashion-MNIST is 28x28x1")
    elif config.model.sampling == "class_posterior":  # fitted at export: fail now, not then
        sampling.check_fittable(splits.train[1], config.model.sampling_components,
                                pooled=not config.model.conditional)
    print(f"data: {splits.source}; train {split_size(splits.train)}, validation "
          f"{split_size(splits.validation)}, test {split_size(splits.test)} images; "
          f"{replicas} replica(s) of batch {config.data.batch_size // replicas}", flush=True)

    steps = data.steps_per_epoch(split_size(splits.train), config.data.batch_size)
    with strategy.scope():
        model = compiled_model(config, steps_per_epoch=steps)
        if config.train.init_from and not resume:
            copy_exported_weights(model, config.train.init_from)
    run = _Run(config, model, resume, steps, chief, worker_id)
    end = _EpochEnd(run)
    log_dir = run.write_dir / "logs"
    callbacks = [end, keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
                 *(callbacks or [])]
    validation = make_dataset(config, splits.validation, training=False)
    try:
        step = _step(model)
        while step < config.train.epochs * steps and end.failure is None:
            # One `fit` to the end of a partly done epoch (after Ctrl-C), one for the rest.
            epoch, done = divmod(step, steps)
            last = epoch + 1 if done else config.train.epochs
            model.fit(make_dataset(config, splits.train, training=True, start_step=step),
                      validation_data=validation, epochs=last, initial_epoch=epoch,
                      steps_per_epoch=steps - done, callbacks=callbacks,
                      shuffle=False, verbose=verbose)  # the dataset shuffles itself, seeded
            step = _step(model)
    except KeyboardInterrupt:
        if end.failure is None and config.train.strategy != "multiworker":
            print(f"\ninterrupted: saved {run.save()} (step {_step(model)}); "
                  f"continue with --resume", flush=True)
        raise
    finally:
        run.close()
    if end.failure is not None:
        kept = _latest_checkpoint(run.dir / "checkpoints")
        raise NonFiniteLossError(
            f"training stopped: {end.failure}. " + (f"The last good checkpoint is {kept}"
                                                    if kept else "No checkpoint was written."))
    if config.train.strategy != "default" or config.train.precision != "float32":
        model = _float32_model(config, model.get_weights())
    metrics = evaluate(model, config, splits)
    metrics["epochs"] = int(run.epoch)
    if end.epoch_seconds:
        metrics["seconds_per_epoch"] = float(np.mean(end.epoch_seconds))
    if chief:
        atomic_write_text(run.dir / "metrics.json", json.dumps(metrics, indent=2))
    test = metrics["test"]
    bits = f", {test['bits_per_dim']:.3f} bits/dim" if "bits_per_dim" in test else ""
    print(f"test: neg_elbo {test['neg_elbo']:.2f} nats/image{bits} (recon {test['recon']:.2f}, "
          f"kl {test['kl']:.2f})", flush=True)
    return TrainResult(model, config, run.dir, metrics, end.epoch_seconds, chief)


def evaluate(model: CVAE, config: Config, splits: data.Splits | None = None) -> dict:
    """{"validation": {...}, "test": {...}}: neg_elbo, recon, kl in nats per image (and
    bits_per_dim for the 8-bit likelihood), one reparameterised sample per image."""
    splits = splits or load_data(config)
    metrics = {}
    for split in ("validation", "test"):
        result = model.evaluate(make_dataset(config, getattr(splits, split), training=False),
                                return_dict=True, verbose=0)
        metrics[split] = {k: float(v) for k, v in result.items() if k != "loss"}
        if config.model.likelihood == "discretized_logistic":  # discrete, over 8 bits
            metrics[split]["bits_per_dim"] = bits_per_dim(
                metrics[split]["neg_elbo"], int(np.prod(config.model.image_shape)))
    return metrics


def load_run(run_dir: str | Path) -> TrainResult:
    """The model of a run directory at its last checkpoint, with its config and metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir}: not a run directory (no config.json)")
    config = Config.from_json((run_dir / "config.json").read_text())
    latest = _latest_checkpoint(run_dir / "checkpoints")
    if latest is None:
        raise RunError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    # Keras 3 layers held in a list (the dense decoder's) reach the checkpoint only through the
    # optimiser's list of the variables it trains, so the model is restored with an optimiser
    # of the run's layout: a constant rate is a variable of its state, a schedule is not (the
    # schedule's length does not matter here), and mixed_float16 wraps it in a loss-scale
    # optimiser. Then the float32 model, for evaluation and export.
    restored = compiled_model(config.replace(steps_per_execution=1, jit_compile=False),
                              steps_per_epoch=1)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=restored, epoch=epoch).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    model = _float32_model(config, restored.get_weights())
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if metrics.get("epochs") != int(epoch):  # metrics.json is of another epoch, or missing
        metrics = {**evaluate(model, config), "epochs": int(epoch)}
    return TrainResult(model, config, run_dir, metrics, [])
