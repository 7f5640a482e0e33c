"""Denoising: a noisy garment cleaned by inference under a noise model, not by the encoder alone.

`reconstruct` encodes a noisy image as if it were clean, and its reconstruction is worse than a
3x3 median filter's (docs/applications.md). `denoise` instead
1. encodes the median-filtered image and draws K codes from that posterior q(z|x_median, y);
2. weights each code by the likelihood of the *noisy* pixels under a noise model: the observed
   value is the clean pixel plus Gaussian noise of standard deviation sigma, clipped to [0, 1]
   (a clipped 0 or 1 scores the Gaussian's tail beyond it), or with probability `OUTLIER` any
   value (salt and pepper); the clean pixel is approximated by a Gaussian of the decoder's
   median and variance for this step, and sigma is picked per image from `SIGMAS` by the
   marginal likelihood of the noisy image;
3. moves the best-weighted code up log p(noisy image | z, y) + log p(z) by a few steps of
   gradient ascent (Adam), at the noise level chosen (`log_noisy_image`): the codes of step 1
   come from a blurred image, and a code fitted to the noisy pixels themselves keeps the
   garment's detail;
4. returns, under that code, each pixel's posterior mean given its noisy value:
   exact over `GRID` bins of gray levels for the discretised logistic (the decoder's bin
   probabilities times the noise likelihood), by Gaussian fusion for the other likelihoods.
Where the decoder is sure (black background) its value stands; where it is unsure (a print, a
texture) the observed value carries. The measurements that chose each step: docs/applications.md.
"""

from __future__ import annotations

import math

import tensorflow as tf

from cvae.model import likelihoods
from cvae.applications import importance

SEED = (15, 0)  # the draws of eps (the same for every image)
SIGMAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)  # noise levels tried, pixels in [0, 1]
OUTLIER = 0.05  # prior probability that a pixel's noisy value says nothing about it
GRID = 64  # gray-level bins (4 levels each) of the exact per-pixel posterior


def median_filter_3x3(images: tf.Tensor) -> tf.Tensor:
    """The median of each pixel's 3x3 neighbourhood (edges mirrored), float32 [N, 28, 28, 1]."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    shifted = [padded[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)]
    return tf.math.top_k(tf.stack(shifted, -1), k=5).values[..., 4]


def pixel_moments(model, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the image shown, the variance of each pixel) under the decoder's distribution, each
    float32 [B, 28, 28, 1] in pixel units: the logistic's (pi s)^2 / 3 for the discretised
    logistic, the distribution's own variance otherwise."""
    config = model.config
    pixel = likelihoods.distribution(params, config.likelihood, config.min_scale).distribution
    if isinstance(pixel, likelihoods.DiscretizedLogistic):
        variance = tf.square(math.pi * pixel.scale) / 3.0
    else:
        variance = pixel.variance()
    return importance.params_image(model, params), variance


def _log_clipped_gaussian(observed, clean, variance) -> tf.Tensor:
    """log-density of observed = clip(clean + noise, 0, 1), noise ~ N(0, variance): a value at
    0 or 1 scores the tail of the Gaussian beyond it (a censored Gaussian)."""
    inside = (-0.5 * tf.square(observed - clean) / variance
              - 0.5 * tf.math.log(2.0 * math.pi * variance))
    scale = tf.sqrt(2.0 * variance)
    below = tf.math.log(tf.maximum(0.5 * tf.math.erfc(clean / scale), 1e-30))
    above = tf.math.log(tf.maximum(0.5 * tf.math.erfc((1.0 - clean) / scale), 1e-30))
    return tf.where(observed <= 0.0, below, tf.where(observed >= 1.0, above, inside))


def log_noisy_pixel(observed, clean, variance, outlier: float = OUTLIER) -> tf.Tensor:
    """log p(observed value | clean value) per pixel (broadcasting): with weight 1 - outlier,
    `_log_clipped_gaussian`; with weight `outlier` (0 < outlier < 1), uniform on [0, 1]."""
    gaussian = _log_clipped_gaussian(observed, clean, variance) + math.log(1.0 - outlier)
    return tf.reduce_logsumexp(tf.stack([gaussian, tf.fill(tf.shape(gaussian),
                                                           math.log(outlier))]), 0)


def grid_posterior_mean(params: tf.Tensor, min_scale: float, observed: tf.Tensor,
                        sigma: tf.Tensor, outlier: float = OUTLIER) -> tf.Tensor:
    """E[clean pixel | observed value] per pixel, float32 [N, 28, 28, 1], for the discretised
    logistic's parameters [N, 28, 28, 2]: over GRID bins of gray levels, each bin's probability
    under the decoder (the tails folded into the end bins, as the likelihood folds them) times
    `log_noisy_pixel` of the observed value from the bin's centre; sigma [N]."""
    pixel = likelihoods.distribution(params, "discretized_logistic", min_scale).distribution
    loc, scale = pixel.loc, pixel.scale
    edges = tf.linspace(0.0, 1.0, GRID + 1)[1:-1]
    cdf = tf.sigmoid((edges - loc) / scale)  # [N, 28, 28, GRID - 1]
    bins = (tf.concat([cdf, tf.ones_like(loc)], -1) - tf.concat([tf.zeros_like(loc), cdf], -1))
    centres = (tf.range(GRID, dtype=tf.float32) + 0.5) / GRID
    centres = tf.concat([[0.0], centres[1:-1], [1.0]], 0)  # the end bins hold black and white
    log_post = (tf.math.log(tf.maximum(bins, 1e-30))
                + log_noisy_pixel(observed, centres, tf.square(sigma)[:, None, None, None],
                                  outlier))
    return tf.reduce_sum(tf.nn.softmax(log_post, -1) * centres, -1, keepdims=True)


def log_noisy_image(model, noisy: tf.Tensor, params: tf.Tensor, sigma: tf.Tensor,
                    outlier: float = OUTLIER) -> tf.Tensor:
    """log p(noisy image | z, y) under the noise model, float32 [B], for the decoder's
    parameters of (z, y): each clean pixel a Gaussian of the decoder's median and variance,
    the noise of standard deviation sigma [B] (`log_noisy_pixel`), summed over the pixels."""
    shown, var_model = pixel_moments(model, params)
    variance = var_model + tf.square(sigma)[:, None, None, None]
    return tf.reduce_sum(log_noisy_pixel(noisy, shown, variance, outlier), [1, 2, 3])


def denoise(model, images: tf.Tensor, labels: tf.Tensor, eps: tf.Tensor,
            sigmas=SIGMAS, outlier: float = OUTLIER, refine_steps: int = 0,
            refine_rate: float = 0.2) -> dict:
    """{"images": float32 [N, 28, 28, 1] in [0, 1], "sigma": the noise level chosen [N], "z":
    the best-weighted code, refined if `refine_steps` [N, d]} for noisy `images` of classes
    `labels`; eps float32 [K, d] are the draws behind the K codes.
    `refine_steps` of Adam at `refine_rate` then move the best-weighted code up
    log p(noisy image | z, y) + log p(z) (`log_noisy_image`, at the noise level chosen)."""
    config = model.config
    k = tf.shape(eps)[0]
    drawn = importance.proposals(model, median_filter_3x3(images), labels, eps)
    codes = importance.flat(drawn["z"])
    rep_labels = importance.repeat(labels, k)
    params = model.decoder_params(codes, rep_labels)
    shown, var_model = pixel_moments(model, params)
    observed = importance.repeat(images, k)
    sigma2 = tf.constant(sigmas, tf.float32)[:, None, None, None, None] ** 2  # [S, 1, 1, 1, 1]
    log_pixel = log_noisy_pixel(observed[None], shown[None], var_model[None] + sigma2, outlier)
    log_px = tf.reshape(tf.reduce_sum(log_pixel, [2, 3, 4]), [len(sigmas), -1, k])  # [S, N, K]
    log_w = log_px + tf.reshape(model.prior().log_prob(codes), [-1, k]) - drawn["log_q"]
    best = tf.argmax(importance.log_mean_exp(log_w), axis=0, output_type=tf.int32)  # [N]
    log_w = tf.gather(tf.transpose(log_w, [1, 0, 2]), best, batch_dims=1)  # [N, K]
    sigma = tf.gather(tf.constant(sigmas, tf.float32), best)
    z = tf.gather(drawn["z"], tf.argmax(log_w, -1, output_type=tf.int32), batch_dims=1)
    if refine_steps:
        z = importance.ascend(
            lambda z: (log_noisy_image(model, images, model.decoder_params(z, labels), sigma,
                                       outlier) + model.prior().log_prob(z)),
            z, refine_steps, refine_rate)
        # One code, the refined one, in place of the K weighted ones.
        params, k, log_w = model.decoder_params(z, labels), 1, tf.zeros_like(sigma)[:, None]
        shown, var_model = pixel_moments(model, params)
        observed = images
    if config.likelihood == "discretized_logistic":
        # The weights are peaked (one code carries nearly all of them): its pixels only.
        pick = tf.argmax(log_w, -1, output_type=tf.int32)
        chosen = tf.gather(tf.reshape(params, tf.concat([[-1, k], tf.shape(params)[1:]], 0)),
                           pick, batch_dims=1)
        mean = grid_posterior_mean(chosen, config.min_scale, images, sigma, outlier)
    else:  # Gaussian fusion of the decoder's mean and variance with the observed value
        s2 = importance.repeat(tf.square(sigma), k)[:, None, None, None]
        fused = (shown * s2 + observed * var_model) / (var_model + s2)
        keep = tf.sigmoid(_log_clipped_gaussian(observed, shown, var_model + s2)
                          + math.log(1.0 - outlier) - math.log(outlier))  # not an outlier
        estimate = shown + keep * (fused - shown)
        weights = tf.nn.softmax(log_w, -1)[:, :, None, None, None]
        mean = tf.reduce_sum(weights * tf.reshape(estimate, [-1, k, 28, 28, 1]), 1)
    return {"images": tf.clip_by_value(mean, 0.0, 1.0), "sigma": sigma, "z": z}
