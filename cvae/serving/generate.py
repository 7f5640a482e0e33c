"""Images by label from an exported SavedModel alone: no training code, no TFP, no Keras model."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from cvae import limits
from cvae.batches import batched, seeds_for  # noqa: F401 (part of this module's API)
from cvae.errors import op_error_text
from cvae.labels import NUM_CLASSES, parse_label
# Part of this module's API: the model path is resolved before TensorFlow loads (cvae.options).
from cvae.options import ModelNotFoundError, resolve_version  # noqa: F401


class ModelLoadError(ValueError):
    """A version is there but cannot be used: a corrupt SavedModel, missing or unreadable
    assets.extra files, or a missing signature; the message names the path and the problem."""


@dataclasses.dataclass
class ServedModel:
    """A loaded version: call its `signatures` by name with batched tensors."""

    path: Path
    version: int
    signatures: dict
    class_names: list[str]
    config: dict
    _loaded: object  # keeps the restored variables alive while the signatures are used

    def label_id(self, text: str | int) -> int:
        return parse_label(text, self.class_names)


def load(model_dir: str | os.PathLike, version: int | None = None) -> ServedModel:
    """Loads a version of the exported model with `tf.saved_model.load`; a version that is not a
    loadable export of this project raises ModelLoadError naming the problem."""
    path = resolve_version(model_dir, version)
    fields_file = path / "assets.extra" / "fields.json"
    if fields_file.is_file():  # pipelines.train --images: its signatures take fields by name
        fields = [f.get("name", "?") for f in _read_json(fields_file) if isinstance(f, dict)]
        raise ModelLoadError(f"{path} is a model of metadata fields ({', '.join(fields)}); "
                             f"this command takes Fashion-MNIST models: call its signatures with "
                             f"each field by name (docs/own-images.md#serving-a-model-of-fields)")
    class_names = _read_json(path / "assets.extra" / "classes.json")
    if not (isinstance(class_names, list) and class_names
            and all(isinstance(n, str) for n in class_names)):
        raise ModelLoadError(f"{path}/assets.extra/classes.json: expected a list of class names")
    config = _read_json(path / "assets.extra" / "config.json")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001 -- OpError, DecodeError, IndexError, ...: all corrupt
        reason = op_error_text(e.message) if isinstance(e, tf.errors.OpError) else \
            next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ModelLoadError(f"{path}: cannot load the SavedModel (corrupt or incomplete: "
                             f"{reason})") from e
    return ServedModel(path=path, version=int(path.name) if path.name.isdigit() else 0,
                       signatures=dict(loaded.signatures), class_names=class_names,
                       config=config, _loaded=loaded)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def _signature(model: ServedModel, name: str):
    if name not in model.signatures:
        raise ModelLoadError(f"{model.path}: no {name!r} signature (it has "
                             f"{', '.join(sorted(model.signatures)) or 'none'}); is it an export "
                             f"of this project?")
    return model.signatures[name]


def generate(model: ServedModel, labels, seeds) -> dict[str, np.ndarray]:
    """New images: {"images": float32 [N, 28, 28, 1] in [0, 1], "z": float32 [N, latent]}."""
    out = _signature(model, "serving_default")(
        label=tf.constant(labels, tf.int32), seed=tf.constant(seeds, tf.int32))
    return {k: v.numpy() for k, v in out.items()}


def samples(model: ServedModel, label: int, num: int, seed: int) -> np.ndarray:
    """`num` images of class `label` from one user seed, float32 [num, 28, 28, 1] in [0, 1]: the
    request of `pipelines.generate --label` and of the demo page's Generate tab."""
    return generate(model, [label] * num, seeds_for(seed, num))["images"]


def sample_batches(model: ServedModel, label: int, num: int, seed: int,
                   batch: int | None = None) -> Iterator[np.ndarray]:
    """`samples(model, label, num, seed)` in order, `batch` images at a time (by default
    `limits.GENERATE_BATCH`): float32 arrays [<= batch, 28, 28, 1], made as they are asked for,
    so memory holds one batch whatever `num`. Every image has its own seed, so the images are
    those of `samples`."""
    batch = batch or limits.GENERATE_BATCH
    seeds = seeds_for(seed, num)
    for start in range(0, num, batch):
        chunk = seeds[start:start + batch]
        yield generate(model, [label] * len(chunk), chunk)["images"]


def grid_columns(num: int) -> int:
    """The columns of a grid of `num` images when none are asked for: about square."""
    return math.ceil(math.sqrt(num))


def restyle(model: ServedModel, images, labels, target_labels) -> np.ndarray:
    """Each image's style (its posterior mean under its own label) drawn as the target class."""
    out = _signature(model, "restyle")(images=tf.constant(images, tf.float32),
                                      label=tf.constant(labels, tf.int32),
                                      target_label=tf.constant(target_labels, tf.int32))
    return out["images"].numpy()


def class_grid(model: ServedModel, columns: int = 10) -> bytes:
    """One row per class, named by its label; column j uses seed j in every row: the same noise,
    drawn through each class's code distribution (the same z when the export samples from the
    prior; the classes' mixture components are not matched with one another, so a column is
    not one style across garments: `restyle` keeps a garment's code across classes)."""
    from cvae.plots import image_table  # matplotlib, only for this picture

    n = NUM_CLASSES
    out = generate(model, labels=[c for c in range(n) for _ in range(columns)],
                   seeds=[j for _ in range(n) for j in range(columns)])
    return image_table(out["images"], n, columns, row_names=model.class_names,
                       title="samples: one row per class, one seed per column")
