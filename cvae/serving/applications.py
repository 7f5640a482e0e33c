"""The applications through an exported SavedModel (what `pipelines.generate --inpaint`,
`--denoise`, `--upscale` and `pipelines.classify` call): numpy in, numpy out, no training code,
TFP or Keras."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from cvae import options
from cvae.applications import corruptions
from cvae.batches import batched, seeds_for
from cvae.serving.generate import ModelLoadError, ServedModel
from cvae.images import ImageError, read_png_28x28

def _signature(model: ServedModel, name: str):
    if name not in model.signatures:
        raise ModelLoadError(f"{model.path}: no {name!r} signature (exported before the "
                             f"applications: export the model again)")
    return model.signatures[name]


def read_mask(spec: str | os.PathLike) -> np.ndarray:
    """A mask float32 [28, 28, 1] (1 = known, 0 = missing) from a name in
    `cvae.options.MASK_NAMES` or a 28x28 8-bit grayscale PNG whose pixels are 255 (known) or 0
    (missing); anything else raises ImageError naming the file and the problem."""
    if str(spec) in options.MASK_NAMES:
        return corruptions.mask(str(spec))[0]
    image = read_png_28x28(spec)
    other = sorted(set(np.unique(np.round(image * 255)).astype(int).tolist()) - {0, 255})
    if other:
        shown = ", ".join(map(str, other[:3])) + (", ..." if len(other) > 3 else "")
        raise ImageError(f"{spec}: a mask PNG must be black (0: missing) and white (255: known) "
                         f"only; it has gray level(s) {shown}")
    return (image > 0.5).astype(np.float32)


def inpaint(model: ServedModel, images, masks, labels, seeds) -> np.ndarray:
    """Completions float32 [N, 28, 28, 1]: `images` [N, 28, 28, 1] in [0, 1] whose pixels where
    `masks` is 0 are filled in by the model for classes `labels` from `seeds` (int32 [N])."""
    out = _signature(model, "inpaint")(
        images=tf.constant(images, tf.float32), mask=tf.constant(masks, tf.float32),
        label=tf.constant(labels, tf.int32), seed=tf.constant(seeds, tf.int32))
    return out["images"].numpy()


def denoise(model: ServedModel, images, labels) -> np.ndarray:
    """Noisy garments [N, 28, 28, 1] of classes `labels`, cleaned: float32 [N, 28, 28, 1]."""
    out = _signature(model, "denoise")(images=tf.constant(images, tf.float32),
                                       label=tf.constant(labels, tf.int32))
    return out["images"].numpy()


def upscale(model: ServedModel, images, labels, seeds) -> dict[str, np.ndarray]:
    """{"images": float32 [N, 28, 28, 1], "z", "label"}: garments `images` [N, 14, 14, 1] or
    [N, 7, 7, 1] in [0, 1] drawn at 28x28, their block means kept, as classes `labels` (-1: the
    model's choice by Bayes' rule) from `seeds` (int32 [N])."""
    out = _signature(model, "upscale")(
        images=tf.constant(images, tf.float32), label=tf.constant(labels, tf.int32),
        seed=tf.constant(seeds, tf.int32))
    return {key: value.numpy() for key, value in out.items()}


def upscale_completions(model: ServedModel, low: np.ndarray, label: int | None, num: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(tiles, completions, the class used) for one garment `low` [S, S, 1] (S 14 or 7) in
    [0, 1]: `num` completions at 28x28 as class `label` (None: the model's choice) from the
    request seeds `seeds_for(seed, num)` derives; the tiles are the input shown at 28x28 (each
    pixel over its block) and then the completions, as `pipelines.generate --upscale` and the
    demo's Upscale tab draw them."""
    factor = 28 // low.shape[0]
    out = upscale(model, np.repeat(low[np.newaxis], num, 0),
                  [-1 if label is None else label] * num, seeds_for(seed, num))
    tiles = np.concatenate([nearest(low[np.newaxis], factor), out["images"]])
    return tiles, out["images"], int(out["label"][0])


def block_means(images: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each factor x factor block of images [N, 28, 28, 1], float32
    [N, 28 / factor, 28 / factor, 1]: the low-resolution image `upscale` takes."""
    side = 28 // factor
    return images.reshape(-1, side, factor, side, factor, 1).mean((2, 4), dtype=np.float64) \
        .astype(np.float32)


def nearest(low: np.ndarray, factor: int) -> np.ndarray:
    """Each low-resolution pixel repeated over its factor x factor block, [N, 28, 28, 1]."""
    return np.repeat(np.repeat(low, factor, axis=1), factor, axis=2)


def classify(model: ServedModel, images, batch: int = 500) -> dict[str, np.ndarray]:
    """{"probabilities" [N, 10], "label" [N], "log_likelihood" [N] (log p(x), nats),
    "typicality" [N] (nats; low = unlike the training garments)} for images [N, 28, 28, 1]."""
    return batched(_signature(model, "classify"),
                   {"images": np.asarray(images, np.float32)}, batch)


def describe(name: str, out: dict[str, np.ndarray], i: int, class_names) -> str:
    """One image's classification on one line: its class and probability, the top three, the
    log-likelihood and the typicality."""
    p = out["probabilities"][i]
    top = np.argsort(-p, kind="stable")[:3]
    ranked = ", ".join(f"{class_names[c]} {p[c]:.3f}" for c in top)
    return (f"{name}: {class_names[top[0]]} ({p[top[0]]:.3f}); top three: {ranked}; "
            f"log-likelihood {out['log_likelihood'][i]:.1f} nats; "
            f"typicality {out['typicality'][i]:.1f} nats")


def median_filter_3x3(images: np.ndarray) -> np.ndarray:
    """Each pixel's 3x3 median (edges repeated, as `cvae.applications.denoise` filters in the
    graph), float32 [N, 28, 28, 1]."""
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="symmetric")
    shifted = [padded[:, i:i + 28, j:j + 28] for i in range(3) for j in range(3)]
    return np.median(np.stack(shifted, -1), -1).astype(np.float32)


def shown_masked(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Images with their missing pixels drawn mid-gray, for figures and grids."""
    return np.where(masks > 0.5, images, 0.5).astype(np.float32)
