"""In-painting: the missing pixels of an image filled in by the model, the known ones kept.

The method (`inpaint`) is importance-weighted resampling of the code given the known pixels,
repeated for a fixed number of rounds. The first completion decodes the centre of the class's
codes (the mean of the mixture `serving_default` draws from). Each round then draws K codes,
half from the encoder's posterior q(z|x_filled, y) of the current completion and half from
p(z|y), that mixture at its sampling temperature (a defensive mixture proposal: the encoder's
proposals refine the completion, the mixture's let it leave a wrong one), weights them by
p(x_known|z, y) p(z|y) over the proposal's density, picks one in proportion to its weight (the
Gumbel-max trick, from the request's seed), and fills the missing pixels with its decoded image
(the median image, without guidance) for the next round. With nothing known the completion is
a sample of the class.

Then `refine_steps` steps of gradient ascent (Adam, step size `refine_rate`) move that code up
log p(x_known | z, y) + log p(z|y), p(z|y) the class's mixture at temperature 1 (the model's
prior): resampling among a few codes in 64 dimensions finds the right garment but fits the
known pixels loosely, and the decoder then extends a loose fit into the missing ones. Each row
is its own objective, and Adam's moments are per coordinate, so a row's completion does not
depend on its batch. The measurements that chose it (against pseudo-Gibbs, a random first
completion, guidance, other priors, rounds, K and wider proposals): docs/applications.md.
"""

from __future__ import annotations

import math

import tensorflow as tf

from cvae.applications import importance


PRIOR_SHARE = 0.5  # of each round's codes drawn from p(z|y) rather than the encoder


def inpaint(model, log_prior_z, draw_prior_z, start_z, images: tf.Tensor, mask: tf.Tensor,
            labels: tf.Tensor, seeds: tf.Tensor, iterations: int, samples: int,
            refine_steps: int = 0, refine_rate: float = 0.2, log_model_prior_z=None) -> dict:
    """{"images": float32 [N, 28, 28, 1] in [0, 1], "z": the last completion's code [N, d]}:
    `images` with the pixels where `mask` is 0 filled in (`mask`: 1 = known, 0 = missing,
    nothing else, as the caller checks), the known pixels copied exactly.
    `log_prior_z(z, labels)` is log p(z|y) [B], `draw_prior_z(labels, eps, u)` draws from it
    (eps [B, d] standard normal, u [B] uniform: `cvae.model.sampling.latents`) and `start_z(labels)`
    is the first completion's code [N, d]; `iterations` rounds of `samples` codes (at least 2:
    one from each proposal); every draw comes from the row's seed alone, so a row's output
    does not depend on the batch it came in. `refine_steps` of Adam at `refine_rate` then
    climb log p(x_known | z, y) + `log_model_prior_z(z, labels)` (required if steps > 0)."""
    d = model.config.latent_dim
    known = mask * images
    z = start_z(labels)
    filled = known + (1.0 - mask) * model.decode(z, labels, guided=False)
    from_prior = min(samples - 1, max(1, round(PRIOR_SHARE * samples)))
    from_encoder = samples - from_prior
    share = from_prior / samples
    rep_labels = importance.repeat(labels, samples)
    rep_images, rep_mask = importance.repeat(images, samples), importance.repeat(mask, samples)
    def one_round(t, z, filled):
        # Each row's draws of round t from seeds [seed, 2t], [seed, 2t + 1] (the pick's
        # Gumbel noise) and [seed, 100 + t] (the mixture components of the prior's codes).
        eps = importance.stateless_normal_rows(seeds, [samples, d], 2 * t)
        u = importance.stateless_uniform_rows(seeds, [samples], 2 * t + 1)
        posterior = model.encode(filled, labels)
        mean, stddev = posterior["mean"][:, None, :], posterior["stddev"][:, None, :]
        encoded = mean + stddev * eps[:, :from_encoder]
        prior_labels = importance.repeat(labels, from_prior)
        component = importance.stateless_uniform_rows(seeds, [from_prior], 100 + t)
        drawn = tf.reshape(draw_prior_z(prior_labels, tf.reshape(eps[:, from_encoder:], [-1, d]),
                                        tf.reshape(component, [-1])), [-1, from_prior, d])
        z_all = tf.concat([encoded, drawn], 1)  # [N, K, d]
        codes = importance.flat(z_all)
        log_p = tf.reshape(log_prior_z(codes, rep_labels), [-1, samples])
        log_q = tf.reduce_sum(-0.5 * tf.square((z_all - mean) / stddev) - 0.5 * importance.LOG_2PI
                              - tf.math.log(stddev), -1)
        log_proposal = tf.reduce_logsumexp(
            tf.stack([log_q + math.log(1.0 - share), log_p + math.log(share)]), 0)
        params = model.decoder_params(codes, rep_labels)
        log_known = tf.reduce_sum(
            rep_mask * importance.params_log_prob(model, params, rep_images), [1, 2, 3])
        log_w = tf.reshape(log_known, [-1, samples]) + log_p - log_proposal
        gumbel = -tf.math.log(-tf.math.log(tf.clip_by_value(u, 1e-12, 1.0 - 1e-7)))
        pick = tf.argmax(log_w + gumbel, axis=-1, output_type=tf.int32)
        chosen = tf.gather(tf.reshape(params, tf.concat([[-1, samples], tf.shape(params)[1:]], 0)),
                           pick, batch_dims=1)
        filled = known + (1.0 - mask) * importance.params_image(model, chosen)
        return t + 1, tf.gather(z_all, pick, batch_dims=1), filled

    # A fixed number of rounds, as one loop in the graph.
    _, z, filled = tf.while_loop(lambda t, z, filled: t < iterations, one_round,
                                 (tf.constant(0), z, filled))
    if refine_steps:
        z = refine(model, log_model_prior_z, z, known, mask, labels, refine_steps, refine_rate)
        params = model.decoder_params(z, labels)
        filled = known + (1.0 - mask) * importance.params_image(model, params)
    return {"images": filled, "z": z}


def refine(model, log_prior_z, z: tf.Tensor, known: tf.Tensor, mask: tf.Tensor,
           labels: tf.Tensor, steps: int, rate: float, outlier: float = 0.0) -> tf.Tensor:
    """`z` [N, d] after `steps` of Adam (step size `rate`) ascending
    log p(known pixels | z, y) + log_prior_z(z, y), as one loop in the graph; `outlier` > 0
    mixes each pixel's likelihood with a uniform one in that share
    (`importance.robust_log_prob`)."""

    def objective(z):
        params = model.decoder_params(z, labels)
        log_pixel = importance.robust_log_prob(
            model, importance.params_log_prob(model, params, known), outlier)
        return tf.reduce_sum(mask * log_pixel, [1, 2, 3]) + log_prior_z(z, labels)

    return importance.ascend(objective, z, steps, rate)


def fitted_code(model, images: tf.Tensor, labels: tf.Tensor, steps: int, rate: float,
                outlier: float = 0.0) -> tf.Tensor:
    """The code that best explains whole images, [N, d]: the encoder's mean moved `steps` of
    Adam (step size `rate`) up log p(x | z, y) + log N(z; 0, I), every pixel known (`refine`,
    each pixel's likelihood robust in the share `outlier`); 0 steps: the encoder's mean."""
    z = model.encode(images, labels)["mean"]
    if not steps:
        return z
    return refine(model, lambda z, y: model.prior().log_prob(z), z, images,
                  tf.ones_like(images), labels, steps, rate, outlier)
