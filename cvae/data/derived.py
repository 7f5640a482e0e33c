"""Fields computed from a Fashion-MNIST image itself, so that the same function measures them
on a generated image and control of each field is measured exactly:

- `fill`, continuous in [0, 1]: the share of the 28x28 frame the garment covers (pixels brighter
  than FILL_THRESHOLD);
- `tone`, categorical light / medium / dark: the mean brightness of the garment's own pixels
  against its class's terciles on the training images (`tone_edges`), so every class has its
  light, medium and dark thirds.
"""

from __future__ import annotations

import numpy as np

from cvae.labels import NUM_CLASSES

FILL_THRESHOLD = 0.1  # a pixel brighter than this (gray level 26 and up) is the garment's
TONES = ("light", "medium", "dark")


def _unit(images) -> np.ndarray:
    """uint8 [N, 28, 28] or float [N, 28, 28(, 1)] in [0, 1] -> float32 [N, 784]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x.reshape(len(x), -1)


def fill(images) -> np.ndarray:
    """The share of each image's pixels brighter than FILL_THRESHOLD, float32 [N] in [0, 1]."""
    return (_unit(images) > FILL_THRESHOLD).mean(axis=1).astype(np.float32)


def brightness(images) -> np.ndarray:
    """The mean of each image's garment pixels (those above FILL_THRESHOLD; 0 for none)."""
    x = _unit(images)
    garment = x > FILL_THRESHOLD
    total = np.where(garment, x, 0.0).sum(axis=1)
    return (total / np.maximum(garment.sum(axis=1), 1)).astype(np.float32)


def tone_edges(images, labels) -> np.ndarray:
    """float32 [10, 2]: each class's brightness terciles on `images` (the training images)."""
    b, labels = brightness(images), np.asarray(labels)
    edges = np.zeros([NUM_CLASSES, 2], np.float32)
    for c in range(NUM_CLASSES):
        if not (labels == c).any():
            raise ValueError(f"tone_edges: no image of class {c}")
        edges[c] = np.quantile(b[labels == c], [1 / 3, 2 / 3])
    return edges


def tone(images, labels, edges: np.ndarray) -> np.ndarray:
    """int [N]: 0 light (the class's brightest third), 1 medium, 2 dark, by `tone_edges`."""
    b, labels = brightness(images), np.asarray(labels)
    low, high = edges[labels, 0], edges[labels, 1]
    return np.where(b >= high, 0, np.where(b >= low, 1, 2)).astype(np.int64)
