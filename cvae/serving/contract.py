"""The serving contract, the one place it is written down: each signature's inputs and outputs
(dtype, shape, the values it may take), and the names TF Serving looks for in an export.

The exported module builds its input signatures from `SIGNATURES`, the warm-up requests and
`cvae.serving.check` follow it, and clients (`cvae.serving.rest_json`, docs/serving.md) may rely
on it: a change here is a change of the public API.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import tensorflow as tf

from cvae.labels import NUM_CLASSES

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra/
PREDICT_METHOD = "tensorflow/serving/predict"
# One single-row request, and one with a row per class (a typical batch), for each signature.
WARMUP_BATCH_SIZES = (1, NUM_CLASSES)
VERSION_NAME = re.compile(r"[0-9]+")  # what TF Serving takes for a version directory

N, D = "N", "D"  # symbolic dimensions: the batch, and the latent size (config.json's latent_dim)
# The side of a low-resolution image (`upscale`): any size in the graph, 14 or 7 at run time
# (28 / the factors of `cvae.applications.upscale.FACTORS`); examples (warm-up, the serving
# check's synthetic requests) are 14x14.
S = "S"
LOW_RES_SIDES = (14, 7)


class TensorContract(NamedTuple):
    """One input or output of a signature: dtype name, shape (ints, N or D) and, where the
    model checks it (inputs) or guarantees it (outputs), the inclusive range of its values and
    (`values`) the only values it may take."""

    dtype: str
    shape: tuple
    value_range: tuple | None = None
    values: tuple | None = None

    def resolved_shape(self, latent_dim: int | None) -> list[int | None]:
        """The shape with N as None (any batch) and D as `latent_dim` (None: not known)."""
        return [None if d in (N, S) else latent_dim if d == D else d for d in self.shape]

    def describe(self) -> str:
        """e.g. "int32 [N]"."""
        return f"{self.dtype} [{', '.join(map(str, self.shape))}]"


LABEL = TensorContract("int32", (N,), (0, NUM_CLASSES - 1))
SEED = TensorContract("int32", (N,))
LATENT = TensorContract("float32", (N, D))
IMAGES = TensorContract("float32", (N, 28, 28, 1), (0.0, 1.0))
MASK = TensorContract("float32", (N, 28, 28, 1), (0.0, 1.0), values=(0.0, 1.0))  # 1 = known
PROBABILITIES = TensorContract("float32", (N, NUM_CLASSES), (0.0, 1.0))
NATS = TensorContract("float32", (N,))
LOW_RES = TensorContract("float32", (N, S, S, 1), (0.0, 1.0))  # S x S, S 14 or 7
# `upscale`'s label: a class, or -1 for "not given: the generative classifier's choice".
LABEL_OR_UNKNOWN = TensorContract("int32", (N,), (-1, NUM_CLASSES - 1))

# The serving contract, the one place it is written down: signature name -> inputs (in the order
# the exported functions take them) and outputs. ServingModule builds its input signatures from
# it and `cvae.serving.check` verifies every export against it. Every signature uses PREDICT_METHOD.
SIGNATURES: dict[str, dict[str, dict[str, TensorContract]]] = {
    "serving_default": {"inputs": {"label": LABEL, "seed": SEED},
                        "outputs": {"images": IMAGES, "z": LATENT}},
    "decode": {"inputs": {"z": LATENT, "label": LABEL}, "outputs": {"images": IMAGES}},
    "encode": {"inputs": {"images": IMAGES, "label": LABEL},
               "outputs": {"mean": LATENT, "stddev": LATENT}},
    "reconstruct": {"inputs": {"images": IMAGES, "label": LABEL}, "outputs": {"images": IMAGES}},
    "restyle": {"inputs": {"images": IMAGES, "label": LABEL, "target_label": LABEL},
                "outputs": {"images": IMAGES}},
    # The applications (`cvae.applications`, docs/applications.md).
    "inpaint": {"inputs": {"images": IMAGES, "mask": MASK, "label": LABEL, "seed": SEED},
                "outputs": {"images": IMAGES}},
    "denoise": {"inputs": {"images": IMAGES, "label": LABEL}, "outputs": {"images": IMAGES}},
    "upscale": {"inputs": {"images": LOW_RES, "label": LABEL_OR_UNKNOWN, "seed": SEED},
                "outputs": {"images": IMAGES, "z": LATENT, "label": LABEL}},
    "classify": {"inputs": {"images": IMAGES},
                 "outputs": {"probabilities": PROBABILITIES, "label": LABEL,
                             "log_likelihood": NATS, "typicality": NATS}},
}


def input_specs(signature: str, latent_dim: int) -> list[tf.TensorSpec]:
    """The tf.TensorSpecs of a signature's inputs, in the order its function takes them."""
    return [tf.TensorSpec(t.resolved_shape(latent_dim), t.dtype, name=name)
            for name, t in SIGNATURES[signature]["inputs"].items()]


# A model of metadata fields (one's own images, docs/own-images.md) has the signatures its
# fields make: each field a named input, int32 [N] (a categorical field's value index, -1
# unknown) or float32 [N] (a continuous field's value in its range, NaN unknown); restyle takes
# the image's values and, as to_<field>, the values to give it (-1 or NaN: keep).
FIELD_SIGNATURE_NAMES = ("serving_default", "decode", "encode", "reconstruct", "restyle")
RESERVED_INPUTS = ("images", "z", "seed")


def field_input(field) -> TensorContract:
    """The contract of one field's input (`cvae.data.fields.Field`)."""
    if field.kind == "categorical":
        return TensorContract("int32", (N,), (-1, len(field.values) - 1))
    return TensorContract("float32", (N,), (field.low, field.high))


def field_signatures(fields, image_shape) -> dict[str, dict[str, dict[str, TensorContract]]]:
    """The contract of a model of metadata fields, in `SIGNATURES`' form."""
    names = [f.name for f in fields]
    clash = sorted(set(names) & (set(RESERVED_INPUTS) | {"to_" + n for n in names}))
    if clash:
        raise ValueError(f"field name(s) {', '.join(clash)} clash with the signatures' inputs "
                         f"({', '.join(RESERVED_INPUTS)}, to_<field>)")
    images = TensorContract("float32", (N, *image_shape), (0.0, 1.0))
    given = {f.name: field_input(f) for f in fields}
    target = {"to_" + f.name: field_input(f) for f in fields}
    return {
        "serving_default": {"inputs": {**given, "seed": SEED},
                            "outputs": {"images": images, "z": LATENT}},
        "decode": {"inputs": {"z": LATENT, **given}, "outputs": {"images": images}},
        "encode": {"inputs": {"images": images, **given},
                   "outputs": {"mean": LATENT, "stddev": LATENT}},
        "reconstruct": {"inputs": {"images": images, **given}, "outputs": {"images": images}},
        "restyle": {"inputs": {"images": images, **given, **target},
                    "outputs": {"images": images}},
    }


def signatures_for(model_config) -> dict:
    """The contract an export of `model_config` (a ModelConfig) follows: SIGNATURES for a
    Fashion-MNIST model, `field_signatures` for a model of metadata fields."""
    if not model_config.fields:
        return SIGNATURES
    from cvae.data.fields import Field

    return field_signatures([Field.from_json(f) for f in model_config.fields],
                            tuple(model_config.image_shape))
