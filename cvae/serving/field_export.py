"""The export of a model of metadata fields (one's own images, docs/own-images.md): its
signatures take each field by name (`cvae.serving.contract.field_signatures`), written as the
next version with config.json, fields.json, metrics.json and warm-up requests, like
`cvae.serving.export` writes a Fashion-MNIST model.

Codes come from N(0, I) at the config's temperature (`Config.own_images`); images are the
decoder's (with the config's guidance towards the given fields; an unknown field is left to
the model). restyle encodes the image under its own fields and decodes its code under the
fields asked for, keeping the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from cvae.config import Config
from cvae.model.vae import CVAE
from cvae.serving.contract import (ASSETS_EXTRA, WARMUP_BATCH_SIZES, WARMUP_FILE,
                                   field_signatures)
from cvae.serving.versions import write_version

FIELDS_FILE = "fields.json"  # assets.extra/: the fields, their values and ranges


def _checked_field(field, value: tf.Tensor) -> tf.Tensor:
    """A field's input as the model's float value (NaN unknown), after a run-time check of its
    range: a categorical index in -1..n-1 (-1 unknown), a continuous value in its range or
    NaN."""
    if field.kind == "categorical":
        ok = tf.reduce_all((value >= -1) & (value < len(field.values)))
        check = tf.debugging.Assert(ok, [f"{field.name} out of range: values are -1 (unknown) "
                                         f"or 0..{len(field.values) - 1} ({', '.join(field.values[:10])}"
                                         f"{', ...' if len(field.values) > 10 else ''})"])
        with tf.control_dependencies([check]):
            return tf.where(value >= 0, tf.cast(value, tf.float32), np.nan)
    ok = tf.reduce_all(tf.math.is_nan(value) | ((value >= field.low) & (value <= field.high)))
    check = tf.debugging.Assert(ok, [f"{field.name} out of range: values are in "
                                     f"{field.low:g}..{field.high:g}, or NaN (unknown)"])
    with tf.control_dependencies([check]):
        return tf.identity(value)


class FieldServingModule(tf.Module):
    """The exported functions of a model of metadata fields; every input batched along
    dimension 0."""

    def __init__(self, model: CVAE):
        super().__init__(name="cvae_serving")
        # The plain tf.Variables under the Keras ones, and an untracked model, as
        # `cvae.serving.module.ServingModule` does (keras-team/keras#19274).
        self.model_variables = [v.value for v in model.variables]
        object.__setattr__(self, "model", model)
        self.fields = model.fields
        self.contract = field_signatures(model.fields, tuple(model.config.image_shape))
        self.image_shape = tuple(model.config.image_shape)

    def _values(self, inputs: dict, prefix: str = "") -> tf.Tensor:
        return tf.stack([_checked_field(f, inputs[prefix + f.name]) for f in self.fields], 1)

    def _images(self, images):
        shape = tf.debugging.assert_equal(
            tf.shape(images)[1:], tf.constant(self.image_shape),
            message=f"images must have shape [N, {', '.join(map(str, self.image_shape))}]")
        with tf.control_dependencies([shape]):
            ok = tf.reduce_all((images >= 0.0) & (images <= 1.0))
        check = tf.debugging.Assert(ok, ["images must be float32 pixels in [0, 1]"])
        with tf.control_dependencies([check]):
            return tf.identity(images)

    def _z(self, z):
        check = tf.debugging.assert_equal(tf.shape(z)[1], self.model.config.latent_dim,
                                          message=f"z must have shape [N, "
                                                  f"{self.model.config.latent_dim}]")
        with tf.control_dependencies([check]):
            return tf.identity(z)

    def _serving_default(self, inputs):
        values = self._values(inputs)
        config = self.model.config
        eps = tf.map_fn(lambda s: tf.random.stateless_normal([config.latent_dim],
                                                             seed=tf.stack([s, 0])),
                        inputs["seed"], fn_output_signature=tf.float32)
        z = config.temperature * eps
        return {"images": self.model.decode(z, values), "z": z}

    def _decode(self, inputs):
        return {"images": self.model.decode(self._z(inputs["z"]), self._values(inputs))}

    def _encode(self, inputs):
        p = self.model.encode(self._images(inputs["images"]), self._values(inputs))
        return {"mean": p["mean"], "stddev": p["stddev"]}

    def _reconstruct(self, inputs):
        values = self._values(inputs)
        mean = self.model.encode(self._images(inputs["images"]), values)["mean"]
        return {"images": self.model.decode(mean, values, guided=False)}

    def _restyle(self, inputs):
        values = self._values(inputs)
        target = self._values(inputs, "to_")
        target = tf.where(tf.math.is_nan(target), values, target)  # not asked: kept
        mean = self.model.encode(self._images(inputs["images"]), values)["mean"]
        return {"images": self.model.decode(mean, target, guided=False)}

    def signatures(self) -> dict:
        latent_dim = self.model.config.latent_dim
        bodies = {"serving_default": self._serving_default, "decode": self._decode,
                  "encode": self._encode, "reconstruct": self._reconstruct,
                  "restyle": self._restyle}
        out = {}
        for name, body in bodies.items():
            inputs = self.contract[name]["inputs"]
            specs = [tf.TensorSpec(t.resolved_shape(latent_dim), t.dtype, name=key)
                     for key, t in inputs.items()]
            out[name] = _function(body, list(inputs), specs)
        return out


def _function(body, names, specs):
    def call(*args):
        first = tf.shape(args[0])[0]
        checks = [tf.debugging.assert_equal(
            tf.shape(a)[0], first, message=f"inputs {names[0]} and {name} must have the same "
                                           f"batch size (dimension 0)")
            for name, a in zip(names[1:], args[1:])]
        with tf.control_dependencies(checks):
            args = [tf.identity(a) for a in args]
        return body(dict(zip(names, args)))

    return tf.function(call, input_signature=specs).get_concrete_function()


def warmup_requests(module: FieldServingModule, signatures: dict, model_name: str) -> list:
    """A request per signature and batch size of WARMUP_BATCH_SIZES: the fields' values in
    turn (unknown included), the model's own samples as images and its codes as z."""
    logs = []
    for n in WARMUP_BATCH_SIZES:
        values = {}
        for f in module.fields:
            if f.kind == "categorical":
                values[f.name] = (np.arange(n) % (len(f.values) + 1) - 1).astype(np.int32)
            else:
                levels = np.linspace(f.low, f.high, max(n, 2))[:n].astype(np.float32)
                values[f.name] = np.where(np.arange(n) % 4 == 3, np.nan, levels).astype(
                    np.float32)
            values["to_" + f.name] = np.roll(values[f.name], 1)
        values["seed"] = np.arange(n, dtype=np.int32)
        sample = signatures["serving_default"](
            **{k: tf.constant(v) for k, v in values.items() if not k.startswith("to_")})
        values["images"], values["z"] = sample["images"].numpy(), sample["z"].numpy()
        for signature, contract in module.contract.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, tensor in contract["inputs"].items():
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(np.asarray(values[name], dtype=tensor.dtype)))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def export_fields(model: CVAE, config: Config, metrics: dict | None,
                  base_dir: str | os.PathLike) -> Path:
    """Writes a model of metadata fields as the next version under `base_dir` and returns its
    path (atomic and never overwriting, as `cvae.serving.export.export`)."""
    if model.config != config.model or not model.fields:
        raise ValueError("export_fields: a model of metadata fields with its own config")
    model_name = Path(base_dir).resolve().name
    others = sorted(p.name for p in Path(base_dir).glob("*/assets.extra/classes.json"))
    if others:
        raise ValueError(f"export: {base_dir} holds a Fashion-MNIST model's versions; a model of "
                         f"metadata fields goes under its own base path (--name / --export-dir)")

    def fill(tmp: Path) -> None:
        module = FieldServingModule(model)
        signatures = module.signatures()
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        extra = tmp / ASSETS_EXTRA
        extra.mkdir()
        (extra / "config.json").write_text(config.resolved().to_json())
        (extra / FIELDS_FILE).write_text(json.dumps([f.to_json() for f in model.fields],
                                                    indent=2))
        (extra / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
        with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
            for log in warmup_requests(module, signatures, model_name):
                writer.write(log.SerializeToString())
        _smoke_test(tmp, module)

    return write_version(base_dir, fill)


def field_grid(path: str | os.PathLike, columns: int = 10) -> np.ndarray:
    """uint8 [H, W, C]: the export's samples, one row per value of its first field (at most 20;
    5 levels of a continuous one), one column per seed, the other fields unknown."""
    from cvae import images
    from cvae.data.fields import Field, grid_levels

    config = json.loads((Path(path) / ASSETS_EXTRA / "config.json").read_text())
    fields = [Field.from_json(f) for f in config["model"]["fields"]]
    levels = grid_levels(fields[0])
    rows = len(levels)
    inputs = {}
    for i, f in enumerate(fields):
        if i == 0:
            column = np.repeat(levels, columns)
        else:
            column = np.full(rows * columns, -1 if f.kind == "categorical" else np.nan)
        inputs[f.name] = tf.constant(column.astype(np.int32 if f.kind == "categorical"
                                                   else np.float32))
    seeds = tf.constant(np.tile(np.arange(columns), rows).astype(np.int32))
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return images.grid(serve(seed=seeds, **inputs)["images"].numpy(), columns)


def _smoke_test(path: Path, module: FieldServingModule) -> None:
    """Loads the export back: serving_default gives finite images in [0, 1] of the shape."""
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = {f.name: (tf.fill([4], -1) if f.kind == "categorical"
                       else tf.fill([4], np.float32(np.nan))) for f in module.fields}
    images = loaded(seed=tf.range(4), **inputs)["images"].numpy()
    if images.shape != (4, *module.image_shape) or not (
            np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise RuntimeError(f"export smoke test: got images {images.shape}, not finite values "
                           f"in [0, 1] of [4, {', '.join(map(str, module.image_shape))}]")
