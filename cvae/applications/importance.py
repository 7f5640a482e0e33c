"""Importance-weighted codes: K draws of z from the encoder's posterior, weighted by how well
each explains what is known of an image. Shared by classification, in-painting and denoising."""

from __future__ import annotations

import math

import tensorflow as tf

from cvae.model import likelihoods, sampling

LOG_2PI = math.log(2.0 * math.pi)


def params_log_prob(model, params: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """log p(x_ij | z, y) of every pixel, float32 [B, 28, 28, 1], from the decoder's
    parameters for (z, y) (`model.decoder_params`)."""
    config = model.config
    pixel = likelihoods.distribution(params, config.likelihood, config.min_scale).distribution
    return pixel.log_prob(likelihoods.target(images, config.likelihood))


# The mass (log) a uniform distribution gives one value of a pixel: 1/256 of a gray level, 1/2
# of a binary pixel, density 1 on [0, 1] for the continuous likelihoods.
_UNIFORM_LOG_MASS = {"discretized_logistic": -math.log(256.0), "bernoulli": -math.log(2.0)}


def robust_log_prob(model, log_pixel: tf.Tensor, outlier: float) -> tf.Tensor:
    """Each pixel's log-likelihood [B, 28, 28, 1] from `params_log_prob` mixed with a uniform
    one: log((1 - outlier) p(x_ij | z, y) + outlier u), u the uniform's mass of a value
    (`_UNIFORM_LOG_MASS`); outlier 0 returns `log_pixel`."""
    if outlier == 0:
        return log_pixel
    uniform = math.log(outlier) + _UNIFORM_LOG_MASS.get(model.config.likelihood, 0.0)
    return tf.reduce_logsumexp(tf.stack([log_pixel + math.log(1.0 - outlier),
                                         tf.fill(tf.shape(log_pixel), uniform)]), 0)


def params_image(model, params: tf.Tensor) -> tf.Tensor:
    """The image the model shows for the decoder's parameters (`cvae.model.likelihoods.image`)."""
    return likelihoods.image(params, model.config.likelihood, model.config.min_scale)


def proposals(model, images: tf.Tensor, labels: tf.Tensor, eps: tf.Tensor) -> dict:
    """K codes per image from q(z|x,y), z = mean + stddev * eps, and their log-density:
    {"z": [N, K, d], "log_q": [N, K]}. `eps` is [K, d] (the same draws for every image) or
    [N, K, d]."""
    posterior = model.encode(images, labels)
    mean, stddev = posterior["mean"][:, None, :], posterior["stddev"][:, None, :]
    eps = tf.broadcast_to(eps, tf.concat([tf.shape(mean)[:1], tf.shape(eps)[-2:]], 0))
    z = mean + stddev * eps
    log_q = tf.reduce_sum(-0.5 * tf.square(eps) - 0.5 * LOG_2PI - tf.math.log(stddev), -1)
    return {"z": z, "log_q": log_q}


def flat(z: tf.Tensor) -> tf.Tensor:
    """[N, K, d] -> [N * K, d]."""
    return tf.reshape(z, [-1, tf.shape(z)[-1]])


def repeat(x: tf.Tensor, k) -> tf.Tensor:
    """Each row of x repeated k times in a row ([N, ...] -> [N * k, ...]), matching `flat`."""
    return tf.repeat(x, k, axis=0)


def log_mean_exp(log_w: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """log(mean(exp(log_w))) along `axis`, without overflow."""
    n = tf.cast(tf.shape(log_w)[axis], log_w.dtype)
    return tf.reduce_logsumexp(log_w, axis) - tf.math.log(n)


def stateless_normal_rows(seeds: tf.Tensor, shape, salt) -> tf.Tensor:
    """Standard normal draws [N, *shape] where row n depends only on seeds[n] and `salt` (an
    int32 scalar; stateless Philox, seed [seeds[n], salt]), so a request's rows come out the
    same in any batch."""
    return tf.map_fn(lambda s: tf.random.stateless_normal(shape, seed=tf.stack([s, salt])),
                     seeds, fn_output_signature=tf.float32)


def stateless_uniform_rows(seeds: tf.Tensor, shape, salt) -> tf.Tensor:
    """Uniform [0, 1) draws [N, *shape], row n from seeds[n] and `salt` alone."""
    return tf.map_fn(lambda s: tf.random.stateless_uniform(shape, seed=tf.stack([s, salt])),
                     seeds, fn_output_signature=tf.float32)


def mixture_log_prob(loc: tf.Tensor, scale_tril: tf.Tensor, weights: tf.Tensor,
                     labels: tf.Tensor, z: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
    """log p(z|y) in nats, float32 [B], under class y's mixture of Gaussians from
    `cvae.model.sampling` (loc [10, M, d], scale_tril [10, M, d, d], weights [10, M]) with every
    component's scale multiplied by `temperature`: the density `serving_default` draws from
    at that temperature (`cvae.model.sampling.class_log_densities` at temperature 1). labels int [B],
    z [B, d]."""
    every_class = sampling.class_log_densities(z, loc, scale_tril * temperature, weights)
    return tf.gather(every_class, labels, batch_dims=1)


ADAM_BETAS, ADAM_EPSILON = (0.9, 0.999), 1e-8


def ascend(objective, z: tf.Tensor, steps: int, rate: float) -> tf.Tensor:
    """`z` [N, d] after `steps` of Adam (step size `rate`) ascending `objective(z)` [N], as
    one loop in the graph. Each row is its own objective and Adam's moments are per
    coordinate, so a row's result does not depend on its batch."""
    b1, b2 = ADAM_BETAS

    def step(t, z, m, v):
        with tf.GradientTape(watch_accessed_variables=False) as tape:  # z's gradient alone
            tape.watch(z)
            total = tf.reduce_sum(objective(z))  # rows are independent: the sum's gradient
        g = -tape.gradient(total, z)            # row by row is each row's own
        m, v = b1 * m + (1.0 - b1) * g, b2 * v + (1.0 - b2) * tf.square(g)
        n = tf.cast(t + 1, tf.float32)
        step_size = rate * tf.sqrt(1.0 - b2 ** n) / (1.0 - b1 ** n)
        return t + 1, z - step_size * m / (tf.sqrt(v) + ADAM_EPSILON), m, v

    zeros = tf.zeros_like(z)
    _, z, _, _ = tf.while_loop(lambda t, z, m, v: t < steps, step,
                               (tf.constant(0), z, zeros, zeros))
    return z
