"""The training objective as pure functions: the negative ELBO in nats per image."""

from __future__ import annotations

import math

import tensorflow as tf


def kl_to_standard_normal(mean: tf.Tensor, stddev: tf.Tensor) -> tf.Tensor:
    """KL(N(mean, diag(stddev^2)) || N(0, I)) in nats, summed over the last axis: shape [B]."""
    return 0.5 * tf.reduce_sum(tf.square(mean) + tf.square(stddev) - 1.0
                               - 2.0 * tf.math.log(stddev), axis=-1)


def negative_elbo(log_likelihood: tf.Tensor, mean: tf.Tensor, stddev: tf.Tensor,
                  beta: float | tf.Tensor = 1.0) -> dict[str, tf.Tensor]:
    """Batch means, in nats per image, of:

    - `recon`: -log p(x|z,y) at one reparameterised z ~ q(z|x,y) (`log_likelihood`, shape [B]);
    - `kl`: KL(q(z|x,y) || N(0, I)), analytic;
    - `neg_elbo`: recon + kl, the quantity reported everywhere;
    - `loss`: recon + beta * kl, the quantity minimised (beta follows the KL warm-up).
    """
    recon = -tf.reduce_mean(log_likelihood)
    kl = tf.reduce_mean(kl_to_standard_normal(mean, stddev))
    beta = tf.cast(beta, kl.dtype)
    return {"loss": recon + beta * kl, "neg_elbo": recon + kl, "recon": recon, "kl": kl}


def bits_per_dim(nats_per_image: float, dims: int = 28 * 28) -> float:
    """Nats per image -> bits per pixel (the unit of the 8-bit likelihood's figures)."""
    return float(nats_per_image / (dims * math.log(2.0)))
