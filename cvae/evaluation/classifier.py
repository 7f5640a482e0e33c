"""The project's own Fashion-MNIST classifier: the yardstick `pipelines.evaluate` measures
generated images with (conditional accuracy, Fréchet distance, diversity). It is not part of the
generator.

A small CNN trained on the 55,000-image training split only (the validation split picks the
epoch, the test split is scored once at the end), exported as a SavedModel whose one function,
`classify`, returns the logits, the class probabilities and the 128 penultimate features.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cvae import data
from cvae.config import DataConfig
from cvae.serving.versions import write_version
from cvae.labels import CLASS_NAMES, NUM_CLASSES

FEATURES = 128
CLASSIFIER_DIR = "saved_models/classifier"


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"classifier: {name}={getattr(self, name)!r} must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"classifier: learning_rate={self.learning_rate!r} must be > 0")


def build_classifier() -> tuple[keras.Model, keras.Model]:
    """(classifier: images [B, 28, 28, 1] in [0, 1] -> logits [B, 10], features: the same
    images -> the penultimate layer [B, FEATURES], after its ReLU)."""
    images = keras.Input((28, 28, 1))
    h = images
    for filters, pool in ((32, True), (64, True), (128, False)):  # 28 -> 14 -> 7 -> 7
        h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        if pool:
            h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.3)(h)
    features = keras.layers.Dense(FEATURES, activation="relu", name="features")(h)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(keras.layers.Dropout(0.3)(features))
    return keras.Model(images, logits), keras.Model(images, features)


class ClassifierModule(tf.Module):
    """What is exported: `classify(images)` -> {"logits", "probabilities", "features"}."""

    def __init__(self, model: keras.Model, features: keras.Model):
        super().__init__(name="classifier")
        self.model_variables = [v.value for v in model.variables]  # see module.ServingModule
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "features_model", features)
        self.classify = tf.function(self._classify, input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])

    def _classify(self, images):
        logits = self.model(images, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                "features": self.features_model(images, training=False)}


def _dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int | None):
    x = data.unit_images(images)
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int32)))
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_classifier(config: ClassifierConfig, data_config: DataConfig = DataConfig(),
                     out_dir: str = CLASSIFIER_DIR, verbose: int | str = 2) -> tuple[Path, dict]:
    """Trains on the training split, keeps the epoch with the best validation accuracy, scores
    the test split, exports the next version under `out_dir` and returns (path, metrics)."""
    keras.utils.set_random_seed(config.seed)
    splits = data.load_splits(dataclasses.replace(data_config, batch_size=config.batch_size))
    model, features = build_classifier()
    steps = int(np.ceil(len(splits.train[0]) / config.batch_size)) * config.epochs
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            config.learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    best = {"accuracy": -1.0}

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_accuracy"] > best["accuracy"]:
                best.update(accuracy=logs["val_accuracy"], epoch=epoch + 1,
                            weights=model.get_weights())

    start = time.perf_counter()
    model.fit(_dataset(*splits.train, config.batch_size, config.seed), epochs=config.epochs,
              validation_data=_dataset(*splits.validation, 512, None), callbacks=[KeepBest()],
              verbose=verbose)
    model.set_weights(best["weights"])
    module = ClassifierModule(model, features)
    test_images = data.unit_images(splits.test[0])
    predicted = predict(module.classify, test_images)["probabilities"].argmax(axis=1)
    correct = predicted == splits.test[1]
    metrics = {
        "test_accuracy": float(correct.mean()),
        "test_accuracy_per_class": {name: float(correct[splits.test[1] == k].mean())
                                    for k, name in enumerate(CLASS_NAMES)},
        "validation_accuracy": float(best["accuracy"]),
        "best_epoch": best["epoch"],
        "train_seconds": round(time.perf_counter() - start, 1),
        "config": dataclasses.asdict(config),
    }

    def fill(tmp: Path) -> None:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.classify})
        (tmp / "assets.extra").mkdir()
        (tmp / "assets.extra" / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (tmp / "assets.extra" / "classes.json").write_text(json.dumps(list(CLASS_NAMES)))

    return write_version(out_dir, fill), metrics


def predict(classify, images: np.ndarray, batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Runs `classify` (a loaded classifier's function) over float32 images [N, 28, 28, 1] in
    batches; returns {"logits", "probabilities", "features"} as arrays."""
    from cvae.batches import batched

    return batched(classify, {"images": np.asarray(images, np.float32)}, batch_size)


def load(model_dir: str = CLASSIFIER_DIR, version: int | None = None):
    """The loaded classifier's `classify` function and its metrics.json."""
    from cvae.serving.generate import resolve_version

    path = resolve_version(model_dir, version)
    loaded = tf.saved_model.load(str(path))
    metrics = json.loads((path / "assets.extra" / "metrics.json").read_text())

    def classify(images):
        return loaded.signatures["serving_default"](images=images)  # keeps `loaded` alive

    return classify, metrics, path
