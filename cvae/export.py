"""SavedModel export: the serving signatures (a public contract) and versioned, atomic writes.

Layout, as TensorFlow Serving expects it: `<base>/<version>/saved_model.pb`, `variables/`, and
`assets.extra/` with `config.json`, `classes.json` and `metrics.json`. A version is written to a
non-numeric temporary sibling (which TF Serving ignores), loaded back and smoke-tested, and only
then renamed to the next integer; an existing version is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf

from cvae.config import Config
from cvae.labels import CLASS_NAMES
from cvae.model import CVAE, one_hot_labels

ASSETS_EXTRA = "assets.extra"


def _spec(shape, dtype, name):
    return tf.TensorSpec(shape, dtype, name=name)


def _image_spec(name="images"):
    return _spec([None, 28, 28, 1], tf.float32, name)


def _checked_images(images: tf.Tensor) -> tf.Tensor:
    """`images` with a run-time check that every pixel is a number in [0, 1]."""
    in_range = tf.reduce_all((images >= 0.0) & (images <= 1.0))  # False for NaN too
    check = tf.debugging.Assert(
        in_range, ["images must be float32 pixels in [0, 1] (scale 8-bit images by 1/255)"])
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _same_batch(**tensors) -> None:
    """Fails the request unless every input has the same batch size (dimension 0)."""
    names = list(tensors)
    first = tf.shape(tensors[names[0]])[0]
    for name in names[1:]:
        tf.debugging.assert_equal(
            tf.shape(tensors[name])[0], first,
            message=f"inputs {names[0]} and {name} must have the same batch size (dimension 0)")


class ServingModule(tf.Module):
    """The exported functions. Every input is batched along dimension 0."""

    def __init__(self, model: CVAE):
        super().__init__(name="cvae_serving")
        # Track the plain tf.Variables under the Keras variables, not the Keras model. Tracking
        # the model would also trace its own default signature; tracking Keras variables makes
        # SavedModel write a second copy of each that TF1-style loaders (TF Serving,
        # `saved_model_cli run`) restore instead of the one the functions read, which then fail
        # with "Could not find variable" (keras-team/keras#19274).
        self.model_variables = [v.value for v in model.variables]
        object.__setattr__(self, "model", model)  # untracked reference for the functions
        latent = model.config.latent_dim
        self.generate = tf.function(self._generate, input_signature=[
            _spec([None], tf.int32, "label"), _spec([None], tf.int32, "seed")])
        self.decode = tf.function(self._decode, input_signature=[
            _spec([None, latent], tf.float32, "z"), _spec([None], tf.int32, "label")])
        self.encode = tf.function(self._encode, input_signature=[
            _image_spec(), _spec([None], tf.int32, "label")])
        self.reconstruct = tf.function(self._reconstruct, input_signature=[
            _image_spec(), _spec([None], tf.int32, "label")])
        self.restyle = tf.function(self._restyle, input_signature=[
            _image_spec(), _spec([None], tf.int32, "label"), _spec([None], tf.int32, "target_label")])

    def _decode_mean(self, z, label):
        return self.model.decode(z, label)

    def _generate(self, label, seed):
        """z ~ N(0, I) drawn from each row's own seed (stateless Philox: the same (label, seed)
        gives the same z in any process and any batch), then the decoder's mean."""
        _same_batch(label=label, seed=seed)
        one_hot_labels(label)  # fail fast, before sampling, on a label out of range
        z = tf.map_fn(
            lambda s: tf.random.stateless_normal([self.model.config.latent_dim],
                                                 seed=tf.stack([s, 0])),
            seed, fn_output_signature=tf.float32)
        return {"images": self._decode_mean(z, label), "z": z}

    def _decode(self, z, label):
        _same_batch(z=z, label=label)
        return {"images": self._decode_mean(z, label)}

    def _encode(self, images, label):
        _same_batch(images=images, label=label)
        p = self.model.encode(_checked_images(images), label)
        return {"mean": p["mean"], "stddev": p["stddev"]}

    def _reconstruct(self, images, label):
        _same_batch(images=images, label=label)
        mean = self.model.encode(_checked_images(images), label)["mean"]
        return {"images": self._decode_mean(mean, label)}

    def _restyle(self, images, label, target_label):
        _same_batch(images=images, label=label, target_label=target_label)
        one_hot_labels(target_label)
        mean = self.model.encode(_checked_images(images), label)["mean"]
        return {"images": self._decode_mean(mean, target_label)}

    def signatures(self) -> dict:
        return {"serving_default": self.generate, "decode": self.decode, "encode": self.encode,
                "reconstruct": self.reconstruct, "restyle": self.restyle}


def versions(base_dir: str | os.PathLike) -> list[int]:
    """The integer version directories under a model base path, ascending."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def export(model: CVAE, config: Config, metrics: dict | None,
           base_dir: str | os.PathLike) -> Path:
    """Writes the model as the next version under `base_dir` and returns its path.

    The version number is taken when the finished export is renamed into place; if another
    exporter took it first (the rename finds a non-empty directory), the next one is tried.
    """
    base = Path(base_dir)
    created_base = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-export-{uuid.uuid4().hex}"
    try:
        module = ServingModule(model)
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        extra = tmp / ASSETS_EXTRA
        extra.mkdir()
        (extra / "config.json").write_text(config.to_json())
        (extra / "classes.json").write_text(json.dumps(list(CLASS_NAMES), indent=2))
        (extra / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
        _smoke_test(tmp, config.model.latent_dim)
        for _ in range(100):
            final = base / str((versions(base) or [0])[-1] + 1)
            try:
                os.rename(tmp, final)  # fails on a non-empty directory: never overwrites
                return final
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise RuntimeError(f"could not claim a version number under {base}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if created_base and not any(base.iterdir()):
            base.rmdir()


def export_run(result, base_dir: str | os.PathLike | None = None) -> Path:
    """Exports a `cvae.train.TrainResult` (to its config's export_dir by default) and writes
    the class grid of the exported version to <run dir>/class_grid.png."""
    from cvae import generate, images

    path = export(result.model, result.config, result.metrics,
                  base_dir or result.config.train.export_dir)
    print(f"exported {path}")
    grid_path = result.run_dir / "class_grid.png"
    images.write_png(grid_path, generate.class_grid(generate.load(path)))
    print(f"wrote {grid_path} (one row per class)")
    return path


def _smoke_test(path: Path, latent_dim: int) -> None:
    """Loads the export back and checks that generation gives finite images of the right shape."""
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](label=tf.range(10), seed=tf.range(10))
    images, z = out["images"].numpy(), out["z"].numpy()
    if images.shape != (10, 28, 28, 1) or z.shape != (10, latent_dim):
        raise RuntimeError(f"export smoke test: got images {images.shape}, z {z.shape}")
    if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise RuntimeError("export smoke test: generated images are not finite values in [0, 1]")
