"""Generation latency and throughput: the exported SavedModel's `serving_default`, through
`tf.saved_model.load`."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from cvae.evaluation.benchmarks.common import Settings
from cvae.serving import generate

GENERATION_LATENCY_BATCHES = (1, 64)
GENERATION_THROUGHPUT_BATCH = 1000

# Generation by the SavedModel (issue "Fidelity": the resnet decoder, guided, costs about 20
# times version 7's dense one, whose targets were 10 ms at batch 64 and 10,000 images/s).
TARGET_BATCH1_P50_MS = 20.0
TARGET_BATCH1000_IMAGES_PER_SECOND = 2_000.0
# The model whose decoder takes the label from y: at least as fast as version 10 (the baseline
# export, `Settings.baseline_model`), timed in the same run (issue "The label steers the
# decoder"; it aims for 2x).
TARGET_GENERATION_VS_BASELINE = 1.0


def generation_latency(model_dir: str, settings: Settings) -> dict:
    """The exported model's `serving_default` (label, seed) -> images, through
    `tf.saved_model.load`: latency p50/p99 (ms, to the images as numpy) at batch 1 and 64, and
    images/s at batch 1000, each after untimed warm-up calls."""
    served = generate.load(model_dir)
    signature = served.signatures["serving_default"]
    rng = np.random.default_rng(0)

    def timed_calls(batch: int, calls: int, warmup: int) -> np.ndarray:
        requests = [(tf.constant(rng.integers(0, 10, batch), tf.int32),
                     tf.constant(rng.integers(0, 2**31 - 1, batch), tf.int32))
                    for _ in range(warmup + calls)]
        seconds = []
        for label, seed in requests:
            start = time.perf_counter()
            signature(label=label, seed=seed)["images"].numpy()
            seconds.append(time.perf_counter() - start)
        return np.array(seconds[warmup:])

    result = {"model": str(served.path)}
    for batch in GENERATION_LATENCY_BATCHES:
        ms = 1000 * timed_calls(batch, settings.latency_calls, warmup=10)
        result[f"batch_{batch}"] = {"p50_ms": float(np.percentile(ms, 50)),
                                    "p99_ms": float(np.percentile(ms, 99)), "calls": len(ms)}
    seconds = timed_calls(GENERATION_THROUGHPUT_BATCH, settings.throughput_calls, warmup=2)
    result[f"batch_{GENERATION_THROUGHPUT_BATCH}"] = {
        "images_per_second": GENERATION_THROUGHPUT_BATCH * len(seconds) / float(seconds.sum()),
        "p50_ms": float(1000 * np.percentile(seconds, 50)), "calls": len(seconds)}
    return result

