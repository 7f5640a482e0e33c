"""Generative classification by Bayes' rule, and how typical an image is, from the CVAE's own
likelihood bounds: log p(x|y) for every class y, p(y|x) = p(x|y) p(y) / sum_y' p(x|y') p(y')."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cvae.applications import importance
from cvae.labels import NUM_CLASSES

# The classify signature's draws of eps (the same for every image and class: common random
# numbers, so the classes' bounds differ by the image, not by the noise).
SEED = (14, 0)


def class_log_likelihoods(model, images: tf.Tensor, eps: tf.Tensor, log_prior_z,
                          outliers=(0.0,)) -> tf.Tensor:
    """The K-sample importance-weighted bound on log p(x|y) for every class y, float32
    [len(outliers), N, 10] in nats: K = len(eps) codes from q(z|x,y), weighted by
    p(x|z,y) p(z|y) / q(z|x,y). `eps` float32 [K, d] are the standard normal draws behind the
    codes; `log_prior_z(z, labels)` is log p(z|y) [B] (the export passes the prior generation
    draws from at temperature 1: the class's fitted mixture, or N(0, I)). One bound for each
    share in `outliers`: each pixel's likelihood is the decoder's mixed with a uniform one in
    that share (`importance.robust_log_prob`; 0 is the model's own), from the same codes and
    decoder passes."""
    k = tf.shape(eps)[0]

    def one_class(c):
        labels = tf.fill(tf.shape(images)[:1], c)
        drawn = importance.proposals(model, images, labels, eps)
        z = importance.flat(drawn["z"])
        rep = importance.repeat(labels, k)
        log_pixel = importance.params_log_prob(model, model.decoder_params(z, rep),
                                               importance.repeat(images, k))
        log_p = log_prior_z(z, rep)
        bounds = []
        for share in outliers:
            log_px = tf.reduce_sum(importance.robust_log_prob(model, log_pixel, share),
                                   [1, 2, 3])
            bounds.append(importance.log_mean_exp(tf.reshape(log_px + log_p, [-1, k])
                                                  - drawn["log_q"]))
        return tf.stack(bounds)  # [S, N]

    # One class at a time (a loop in the graph): N * K decoder passes in memory, not 10 times
    # as many.
    per_class = tf.map_fn(one_class, tf.range(NUM_CLASSES), fn_output_signature=tf.float32)
    return tf.transpose(per_class, [1, 2, 0])


def bayes_posterior(log_px_given_y: tf.Tensor, log_prior: tf.Tensor,
                    temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
    """p(y|x) float32 [N, C] from per-class log-likelihoods [N, C] and log p(y) [C]:
    softmax((log p(x|y) + log p(y)) / temperature). temperature 1 is Bayes' rule itself; a
    larger one is the calibration of `fit_temperature`."""
    return tf.nn.softmax((log_px_given_y + log_prior) / temperature, axis=-1)


def log_evidence(log_px_given_y: tf.Tensor, log_prior: tf.Tensor) -> tf.Tensor:
    """log p(x) = log sum_y p(x|y) p(y), float32 [N] in nats."""
    return tf.reduce_logsumexp(log_px_given_y + log_prior, axis=-1)


def png_bits(images: tf.Tensor) -> tf.Tensor:
    """The input complexity of Serrà et al. (2020): the length in bits of each image as an
    8-bit grayscale PNG (tf.io.encode_png, zlib inside), float32 [N]."""
    levels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    lengths = tf.map_fn(lambda image: tf.strings.length(tf.io.encode_png(image)), levels,
                        fn_output_signature=tf.int32)
    return 8.0 * tf.cast(lengths, tf.float32)


def typicality(log_px: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """log p(x) corrected by the image's complexity, float32 [N] in nats: log p(x) plus the
    PNG length in nats (the negative of Serrà et al.'s score S(x) = -log p(x) - L(x)), a
    log-likelihood ratio against a general-purpose compressor. Low = unlike the training
    garments."""
    return log_px + math.log(2.0) * png_bits(images)


def class_log_prior(labels: np.ndarray) -> np.ndarray:
    """log p(y), float32 [10], from training labels' frequencies."""
    counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"class prior: class {int(np.argmin(counts))} has no training images")
    return np.log(counts / counts.sum()).astype(np.float32)


def fit_temperature(log_px_given_y: np.ndarray, log_prior: np.ndarray,
                    labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of `labels` under
    softmax((log p(x|y) + log p(y)) / T) (Guo et al. 2017's temperature scaling, on the
    classes' log-likelihoods): a golden-section search over log T in [log 1e-2, log 1e4]."""
    logits = np.asarray(log_px_given_y, np.float64) + np.asarray(log_prior, np.float64)
    labels = np.asarray(labels)

    def nll(log_t):
        scaled = logits / math.exp(log_t)
        scaled = scaled - scaled.max(1, keepdims=True)
        log_p = scaled - np.log(np.exp(scaled).sum(1, keepdims=True))
        return -log_p[np.arange(len(labels)), labels].mean()

    low, high = math.log(1e-2), math.log(1e4)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(math.exp((low + high) / 2))


def fit_calibration(class_bounds, log_prior: np.ndarray, images: np.ndarray,
                    labels: np.ndarray, batch: int = 250) -> float:
    """`fit_temperature` on the per-class bounds `class_bounds(images=...)` returns ([N, 10],
    e.g. the export's `class_log_likelihoods` function) of held-out images float32
    [N, 28, 28, 1] in [0, 1] (the validation split's, never the test images) and their labels."""
    bounds = np.concatenate([class_bounds(images=tf.constant(images[i:i + batch])).numpy()
                             for i in range(0, len(images), batch)])
    return fit_temperature(bounds, log_prior, labels)
