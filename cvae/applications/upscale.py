"""Super-resolution: a garment seen at 14x14 or 7x7 drawn at 28x28 by inference under the
observation model of a low-resolution image, each observed pixel the mean of a block of the full
image (`block_means`), as `inpaint` fits its code to a mask and `denoise` to Gaussian noise.

`upscale`
1. starts from the encoder's posterior of the input upsampled by repeating each pixel over its
   block, one draw from it per row's seed (so several seeds give several completions where the
   input leaves the garment open);
2. moves that code `refine_steps` of Adam up log p(observed block means | z, y) + log p(z|y)
   (`log_block_means`: each block mean of the decoder's image a Gaussian of the decoder's own
   pixel variances averaged over the block, plus the 8-bit input's rounding), the steps of
   `cvae.applications.importance.ascend` that in-painting and denoising use;
3. decodes the code and adds to each block what its mean lacks (`project`), distributed over the
   block's pixels in proportion to the room each has before 0 or 1, so every output's block
   means are the input's, exactly up to float rounding, and every pixel stays in [0, 1].
A label of -1 (`UNKNOWN_LABEL`) is the generative classifier's choice: Bayes' rule on the same
observation model's importance-weighted bound on log p(observed | y) (`class_log_likelihoods`).
The measurements that chose each step: docs/experiments.md#super-resolution.
"""

from __future__ import annotations

import math

import tensorflow as tf

from cvae.applications import importance
from cvae.applications.denoise import pixel_moments
from cvae.labels import NUM_CLASSES

FACTORS = (2, 4)  # 28 / 14 and 28 / 7: the input sizes the signature takes
SIDE = 28
UNKNOWN_LABEL = -1  # the label input's "not given": classify the low-resolution image first
ROUNDING_VARIANCE = (1.0 / 255.0) ** 2 / 12.0  # an 8-bit gray level's rounding, as a variance
SEED_SALT = 200  # the start's draws come from Philox seed [seed, SEED_SALT]
CLASSIFY_SEED = (16, 0)  # the label-less case's draws (the same for every image and class)


def block_means(images: tf.Tensor, factor: int) -> tf.Tensor:
    """The mean of each factor x factor block, float32 [N, 28 / factor, 28 / factor, 1]: the
    low-resolution image the observation model sees."""
    return tf.nn.avg_pool2d(images, factor, factor, "VALID")


def nearest(low: tf.Tensor, factor: int) -> tf.Tensor:
    """Each low-resolution pixel repeated over its factor x factor block, [N, 28, 28, 1]."""
    return tf.repeat(tf.repeat(low, factor, axis=1), factor, axis=2)


def project(images: tf.Tensor, low: tf.Tensor, factor: int) -> tf.Tensor:
    """`images` [N, 28, 28, 1] in [0, 1] changed as little as keeps them in [0, 1] so that their
    block means are `low`'s: a block whose mean is short by r gains r * factor^2 spread over its
    pixels in proportion to each one's room (1 - x to rise, x to fall). The room of a block is at
    least what it needs whenever `low` is in [0, 1], so no pixel leaves [0, 1]; one step, no
    clipping, no iteration."""
    residual = nearest(low - block_means(images, factor), factor)
    room = tf.where(residual > 0, 1.0 - images, images)
    block_room = nearest(block_means(room, factor), factor)  # the mean room of the pixel's block
    moved = tf.math.divide_no_nan(residual * room, block_room)
    return tf.clip_by_value(images + moved, 0.0, 1.0)  # the clip only trims float rounding


def log_block_means(model, params: tf.Tensor, low: tf.Tensor, factor: int) -> tf.Tensor:
    """log p(observed block means | z, y) in nats, float32 [B], for the decoder's parameters of
    (z, y) [B, 28, 28, C] and the low-resolution images `low` [B, 28 / f, 28 / f, 1]: each block
    mean a Gaussian of the block mean of the decoder's image, of variance the block's mean pixel
    variance over f^2 (independent pixels) plus the 8-bit rounding of the observation."""
    shown, variance = pixel_moments(model, params)
    mean = block_means(shown, factor)
    var = block_means(variance, factor) / float(factor * factor) + ROUNDING_VARIANCE
    return tf.reduce_sum(-0.5 * tf.square(low - mean) / var - 0.5 * tf.math.log(2.0 * math.pi * var),
                         [1, 2, 3])


def class_log_likelihoods(model, low: tf.Tensor, factor: int, eps: tf.Tensor,
                          log_prior_z) -> tf.Tensor:
    """The K-sample importance-weighted bound on log p(observed block means | y) for every
    class, float32 [N, 10] in nats: K = len(eps) codes from q(z | upsampled input, y), weighted
    by p(low | z, y) p(z|y) / q (`log_block_means`; `cvae.applications.classify`'s bound under
    this observation model). eps float32 [K, d]; log_prior_z(z, labels) [B]."""
    k = tf.shape(eps)[0]
    upsampled = nearest(low, factor)

    def one_class(c):
        labels = tf.fill(tf.shape(low)[:1], c)
        drawn = importance.proposals(model, upsampled, labels, eps)
        z = importance.flat(drawn["z"])
        rep = importance.repeat(labels, k)
        log_obs = log_block_means(model, model.decoder_params(z, rep),
                                  importance.repeat(low, k), factor)
        log_w = tf.reshape(log_obs + log_prior_z(z, rep), [-1, k]) - drawn["log_q"]
        return importance.log_mean_exp(log_w)

    return tf.transpose(tf.map_fn(one_class, tf.range(NUM_CLASSES),
                                  fn_output_signature=tf.float32))


def upscale(model, low: tf.Tensor, factor: int, labels: tf.Tensor, seeds: tf.Tensor,
            log_prior_z, refine_steps: int, refine_rate: float) -> dict:
    """{"images": float32 [N, 28, 28, 1] in [0, 1] whose factor x factor block means are `low`'s
    [N, 28 / factor, 28 / factor, 1] (pixels in [0, 1]), "z": the fitted code [N, d]} for
    garments of classes `labels` (0..9, as the caller checks). The start is one draw from the
    encoder's posterior of the nearest-neighbour upsampling, from each row's seed (Philox
    [seed, SEED_SALT]); `refine_steps` of Adam at `refine_rate` then climb
    log p(low | z, y) + log_prior_z(z, y). A row's output depends on its own inputs alone."""
    d = model.config.latent_dim
    posterior = model.encode(nearest(low, factor), labels)
    eps = importance.stateless_normal_rows(seeds, [d], SEED_SALT)
    z = posterior["mean"] + posterior["stddev"] * eps
    if refine_steps:
        z = importance.ascend(
            lambda z: (log_block_means(model, model.decoder_params(z, labels), low, factor)
                       + log_prior_z(z, labels)),
            z, refine_steps, refine_rate)
    decoded = importance.params_image(model, model.decoder_params(z, labels))
    return {"images": project(decoded, low, factor), "z": z}
