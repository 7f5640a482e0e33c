"""Running a function over arrays a batch at a time, and the seeds of a request."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def batched(fn, arrays: dict[str, np.ndarray], batch: int = 1000) -> dict[str, np.ndarray]:
    """Calls `fn` (a signature or function taking keyword tensors and returning a dict of them)
    on `batch` rows of every array at a time; returns its outputs concatenated as arrays."""
    n = len(next(iter(arrays.values())))
    parts: dict[str, list] = {}
    for start in range(0, n, batch):
        out = fn(**{k: tf.constant(v[start:start + batch]) for k, v in arrays.items()})
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def seeds_for(seed: int, num: int) -> np.ndarray:
    """`num` int32 request seeds derived from one user seed; the first k are the same for any
    num >= k, so asking for more images keeps the ones already seen."""
    return np.random.default_rng(seed).integers(0, 2**31 - 1, size=num, dtype=np.int64).astype(
        np.int32)
