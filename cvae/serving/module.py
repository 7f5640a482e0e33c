"""The exported module: every serving signature as a tf.function over the trained model, with
its run-time checks of what a request holds (`cvae.serving.contract` says what each takes)."""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cvae.applications import classify as classify_app
from cvae.applications import importance
from cvae.applications import denoise as denoise_app
from cvae.applications import inpaint as inpaint_app
from cvae.applications import upscale as upscale_app
from cvae.config import ApplicationsConfig
from cvae.data import binarize_static
from cvae.labels import NUM_CLASSES
from cvae.model import likelihoods, sampling
from cvae.model.vae import CVAE, checked_labels, one_hot_labels
from cvae.serving.contract import LOW_RES_SIDES, SIGNATURES, input_specs

tfd = tfp.distributions


def _serving_function(fn, signature: str, latent_dim: int):
    """`fn` as a tf.function with the input signature of SIGNATURES[signature]. Specs bind by
    position, so `fn`'s parameters must be the contract's inputs, in order: otherwise two inputs
    of one type (label, target_label) could be swapped without any shape error."""
    params, inputs = list(inspect.signature(fn).parameters), list(SIGNATURES[signature]["inputs"])
    if params != inputs:
        raise RuntimeError(f"{fn.__name__} takes {params}, but SIGNATURES[{signature!r}] lists "
                           f"the inputs {inputs}")
    return tf.function(fn, input_signature=input_specs(signature, latent_dim))


def _checked_images(images: tf.Tensor) -> tf.Tensor:
    """`images` with run-time checks that they are [N, 28, 28, 1] and every pixel is a number
    in [0, 1]. (A SignatureDef's shape is not enforced when a request is served.)"""
    shape = tf.debugging.assert_equal(
        tf.shape(images)[1:], tf.constant([28, 28, 1]),
        message="images must have shape [N, 28, 28, 1] (28x28 grayscale)")
    return _pixels_in_0_1(images, shape)


def _pixels_in_0_1(images: tf.Tensor, shape_check) -> tf.Tensor:
    """`images` with a run-time check, after `shape_check`, that every pixel is in [0, 1]."""
    with tf.control_dependencies([shape_check]):
        in_range = tf.reduce_all((images >= 0.0) & (images <= 1.0))  # False for NaN too
    check = tf.debugging.Assert(
        in_range, ["images must be float32 pixels in [0, 1] (scale 8-bit images by 1/255)"])
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _checked_mask(mask: tf.Tensor) -> tf.Tensor:
    """`mask` with run-time checks that it is [N, 28, 28, 1] and every value is 0 or 1."""
    shape = tf.debugging.assert_equal(
        tf.shape(mask)[1:], tf.constant([28, 28, 1]),
        message="mask must have shape [N, 28, 28, 1], like the images")
    with tf.control_dependencies([shape]):
        binary = tf.reduce_all((mask == 0.0) | (mask == 1.0))  # False for NaN too
    check = tf.debugging.Assert(
        binary, ["mask must be 1 (pixel known) or 0 (pixel missing) at every pixel"])
    with tf.control_dependencies([check]):
        return tf.identity(mask)


def _checked_low_res(images: tf.Tensor) -> tf.Tensor:
    """`images` with run-time checks that they are [N, 14, 14, 1] or [N, 7, 7, 1] (a garment at
    half or a quarter of 28x28: sizes whose factor divides 28) and every pixel a number in
    [0, 1]."""
    side = tf.shape(images)[1]
    sizes = " or ".join(f"[N, {s}, {s}, 1]" for s in LOW_RES_SIDES)
    shape = tf.debugging.Assert(
        tf.reduce_any(tf.equal(side, LOW_RES_SIDES)) & tf.equal(tf.shape(images)[2], side),
        [f"images must have shape {sizes} (a 28x28 garment at half or a quarter of its size, "
         f"factors 2 and 4; other sizes do not divide 28 into blocks), got shape",
         tf.shape(images)])
    return _pixels_in_0_1(images, shape)


def _checked_label_or_unknown(label: tf.Tensor) -> tf.Tensor:
    """`label` with a run-time check that it is -1 (not given) or a class 0..9."""
    check = tf.debugging.Assert(
        tf.reduce_all((label >= upscale_app.UNKNOWN_LABEL) & (label < NUM_CLASSES)),
        [f"label out of range: labels must be in 0..{NUM_CLASSES - 1}, or "
         f"{upscale_app.UNKNOWN_LABEL} (not given: the model chooses)"])
    with tf.control_dependencies([check]):
        return tf.identity(label)


def _checked_z(z: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """`z` with a run-time check that it is [N, latent_dim]."""
    check = tf.debugging.assert_equal(
        tf.shape(z)[1], latent_dim, message=f"z must have shape [N, {latent_dim}]")
    with tf.control_dependencies([check]):
        return tf.identity(z)


def _same_batch(**tensors) -> None:
    """Fails the request unless every input has the same batch size (dimension 0)."""
    names = list(tensors)
    first = tf.shape(tensors[names[0]])[0]
    for name in names[1:]:
        tf.debugging.assert_equal(
            tf.shape(tensors[name])[0], first,
            message=f"inputs {names[0]} and {name} must have the same batch size (dimension 0)")


class ServingModule(tf.Module):
    """The exported functions. Every input is batched along dimension 0."""

    def __init__(self, model: CVAE, sampler: sampling.LatentSampler | None = None,
                 applications: ApplicationsConfig = ApplicationsConfig(),
                 class_log_prior: np.ndarray | None = None):
        """`sampler`: where `serving_default` takes its codes (`cvae.model.sampling`); it may be left
        out only for a model configured with sampling="prior" (N(0, I) at its temperature).
        `applications`: the settings of inpaint, denoise and classify (a classify_temperature
        of None is taken as 1, Bayes' rule uncalibrated, until `export` assigns the fitted one
        to the variable `classify_temperature`);
        `class_log_prior`: log p(y) [10] for classify, the training labels' frequencies
        (`cvae.applications.classify.class_log_prior`; uniform if not given)."""
        super().__init__(name="cvae_serving")
        # Track the plain tf.Variables under the Keras variables, not the Keras model. Tracking
        # the model would also trace its own default signature; tracking Keras variables makes
        # SavedModel write a second copy of each that TF1-style loaders (TF Serving,
        # `saved_model_cli run`) restore instead of the one the functions read, which then fail
        # with "Could not find variable" (keras-team/keras#19274).
        # The label terms' networks (`CVAE.auxiliary_variables`) train the model and serve
        # nothing: they stay out of the export.
        auxiliary = {id(v) for v in model.auxiliary_variables()}
        self.model_variables = [v.value for v in model.variables if id(v) not in auxiliary]
        object.__setattr__(self, "model", model)  # untracked reference for the functions
        latent = model.config.latent_dim
        if sampler is None:
            if model.config.sampling != "prior":
                raise ValueError(f"sampling={model.config.sampling!r} needs the fitted sampler "
                                 f"(cvae.model.sampling.for_model)")
            sampler = sampling.standard_normal(latent, model.config.temperature)
        if sampler.latent_dim != latent:
            raise ValueError(f"sampler of {sampler.latent_dim} dimensions for a model of {latent}")
        self.sampling_loc = tf.Variable(sampler.loc, trainable=False, name="sampling_loc")
        self.sampling_scale_tril = tf.Variable(sampler.scale_tril, trainable=False,
                                               name="sampling_scale_tril")
        self.sampling_weights = tf.Variable(sampler.weights, trainable=False,
                                            name="sampling_weights")
        self.temperature = float(sampler.temperature)
        self.generate = _serving_function(self._generate, "serving_default", latent)
        self.decode = _serving_function(self._decode, "decode", latent)
        self.encode = _serving_function(self._encode, "encode", latent)
        self.reconstruct = _serving_function(self._reconstruct, "reconstruct", latent)
        self.restyle = _serving_function(self._restyle, "restyle", latent)
        self.applications = applications
        if class_log_prior is None:
            class_log_prior = np.full([NUM_CLASSES], -np.log(NUM_CLASSES), np.float32)
        self.class_log_prior = tf.Variable(np.asarray(class_log_prior, np.float32),
                                           trainable=False, name="class_log_prior")
        # The codes' noise of classify and denoise: fixed draws, the same for every image (so
        # an image's answer does not depend on the request or the batch it came in).
        self.classify_eps = tf.constant(tf.random.stateless_normal(
            [applications.classify_samples, latent], classify_app.SEED))
        self.denoise_eps = tf.constant(tf.random.stateless_normal(
            [applications.denoise_samples, latent], denoise_app.SEED))
        self.classify_temperature = tf.Variable(applications.classify_temperature or 1.0,
                                                trainable=False, name="classify_temperature")
        # The per-class bounds classify's Bayes' rule starts from: for the calibration at
        # export and for `pipelines.evaluate` (not a serving signature).
        self.class_log_likelihoods = tf.function(self._class_log_likelihoods, input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        self.inpaint = _serving_function(self._inpaint, "inpaint", latent)
        self.denoise = _serving_function(self._denoise, "denoise", latent)
        self.classify = _serving_function(self._classify, "classify", latent)
        self.upscale_eps = tf.constant(tf.random.stateless_normal(
            [applications.upscale_classify_samples, latent], upscale_app.CLASSIFY_SEED))
        self.upscale = _serving_function(self._upscale, "upscale", latent)
        # For `pipelines.evaluate`; not serving signatures (TF Serving does not see them).
        likelihood_inputs = [tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images"),
                             tf.TensorSpec([None], tf.int32, name="label"),
                             tf.TensorSpec([None, latent], tf.float32, name="z")]
        self.log_likelihood = tf.function(self._log_likelihood,
                                          input_signature=likelihood_inputs)
        self.binarized_log_likelihood = tf.function(self._binarized_log_likelihood,
                                                    input_signature=likelihood_inputs)
        self.log_prior = tf.function(self._log_prior, input_signature=likelihood_inputs[2:0:-1])

    def _decode_mean(self, z, label, guided=True):
        return self.model.decode(z, label, guided=guided)

    def _generate(self, label, seed):
        """eps ~ N(0, I) and u ~ U[0, 1) drawn from each row's own seed (stateless Philox: the
        same (label, seed) gives the same z in any process and any batch); u picks a component k
        of the label's mixture, z = loc[label, k] + temperature * scale_tril[label, k] @ eps
        (`cvae.model.sampling`), then the decoder's image."""
        _same_batch(label=label, seed=seed)
        label = checked_labels(label)  # a label out of range fails here, before the gathers
        eps, u = tf.map_fn(
            lambda s: (tf.random.stateless_normal([self.model.config.latent_dim],
                                                  seed=tf.stack([s, 0])),
                       tf.random.stateless_uniform([], seed=tf.stack([s, 1]))),
            seed, fn_output_signature=(tf.float32, tf.float32))
        z = sampling.latents(self.sampling_loc, self.sampling_scale_tril, self.sampling_weights,
                             self.temperature, label, eps, u)
        return {"images": self._decode_mean(z, label), "z": z}

    def _decode(self, z, label):
        _same_batch(z=z, label=label)
        return {"images": self._decode_mean(_checked_z(z, self.model.config.latent_dim), label)}

    def _encode(self, images, label):
        _same_batch(images=images, label=label)
        p = self.model.encode(_checked_images(images), label)
        return {"mean": p["mean"], "stddev": p["stddev"]}

    def _fitted_code(self, images, label):
        """The code that best explains each image under its label (`reconstruct`'s settings:
        `cvae.applications.inpaint.fitted_code`), [N, latent_dim]."""
        settings = self.applications
        return inpaint_app.fitted_code(self.model, images, label,
                                       settings.reconstruct_refine_steps,
                                       settings.reconstruct_refine_rate,
                                       settings.reconstruct_pixel_outlier)

    def _reconstruct(self, images, label):
        _same_batch(images=images, label=label)
        # The code that best explains the image, each pixel's likelihood robust to what the
        # model cannot explain.
        z = self._fitted_code(_checked_images(images), label)
        # Without guidance: it would move a reconstruction away from the image it reconstructs.
        return {"images": self._decode_mean(z, label, guided=False)}

    def _restyle(self, images, label, target_label):
        _same_batch(images=images, label=label, target_label=target_label)
        one_hot_labels(target_label)
        settings = self.applications
        images = _checked_images(images)
        # The code that best explains the garment (reconstruct's, where the config refines it),
        # drawn under the target label: the label gives the type, the code the rest.
        z = (self._fitted_code(images, label) if settings.restyle_refine
             else self.model.encode(images, label)["mean"])
        guidance = settings.restyle_guidance
        return {"images": self.model.decode(z, target_label, guidance=guidance)}

    def _class_prior_log_prob(self, z, labels, temperature):
        """log p(z|y) under the class's mixture with its scales times `temperature`: at the
        sampling temperature what `serving_default` draws from, at 1 the prior of the
        generative model that ships (N(0, I) for an export with sampling="prior")."""
        return importance.mixture_log_prob(self.sampling_loc, self.sampling_scale_tril,
                                           self.sampling_weights, labels, z, temperature)

    def _class_centre(self, labels):
        """The mean of each label's mixture, [N, d]: where in-painting starts."""
        centres = tf.reduce_sum(self.sampling_weights[..., None] * self.sampling_loc, 1)
        return tf.gather(centres, labels)

    def _inpaint(self, images, mask, label, seed):
        """The missing pixels (mask 0) filled by importance-weighted resampling of the code
        given the known ones, then gradient ascent on the code (`cvae.applications.inpaint`);
        the known pixels copied exactly."""
        _same_batch(images=images, mask=mask, label=label, seed=seed)
        images, mask, label = _checked_images(images), _checked_mask(mask), checked_labels(label)
        settings = self.applications
        out = inpaint_app.inpaint(self.model,
                                  lambda z, y: self._class_prior_log_prob(z, y, self.temperature),
                                  lambda y, eps, u: sampling.latents(
                                      self.sampling_loc, self.sampling_scale_tril,
                                      self.sampling_weights, self.temperature, y, eps, u),
                                  self._class_centre,
                                  images, mask, label, seed, settings.inpaint_iterations,
                                  settings.inpaint_samples, settings.inpaint_refine_steps,
                                  settings.inpaint_refine_rate,
                                  lambda z, y: self._class_prior_log_prob(z, y, 1.0))
        return {"images": out["images"]}

    def _denoise(self, images, label):
        """A noisy garment cleaned by inference under a noise model
        (`cvae.applications.denoise`)."""
        _same_batch(images=images, label=label)
        images, label = _checked_images(images), checked_labels(label)
        settings = self.applications
        return {"images": denoise_app.denoise(
            self.model, images, label, self.denoise_eps,
            refine_steps=settings.denoise_refine_steps,
            refine_rate=settings.denoise_refine_rate)["images"]}

    def _upscale(self, images, label, seed):
        """A garment at 14x14 or 7x7 drawn at 28x28 by fitting the code to its block means, then
        projecting the decoded image onto them (`cvae.applications.upscale`); a label of -1 is
        Bayes' rule's choice on the same observation model. Returns the images, the fitted
        codes and the labels used."""
        _same_batch(images=images, label=label, seed=seed)
        images, label = _checked_low_res(images), _checked_label_or_unknown(label)
        settings = self.applications

        def prior(z, y):
            return self._class_prior_log_prob(z, y, 1.0)

        def at(factor):
            def run():
                unknown = label < 0
                chosen = tf.cond(
                    tf.reduce_any(unknown),
                    lambda: tf.where(unknown, tf.argmax(
                        upscale_app.class_log_likelihoods(self.model, images, factor,
                                                          self.upscale_eps, prior)
                        + self.class_log_prior, -1, output_type=tf.int32), label),
                    lambda: label)
                out = upscale_app.upscale(self.model, images, factor, chosen, seed, prior,
                                          settings.upscale_refine_steps,
                                          settings.upscale_refine_rate)
                return out["images"], out["z"], chosen
            return run

        side = tf.shape(images)[1]
        out_images, z, chosen = tf.cond(tf.equal(side, 28 // upscale_app.FACTORS[0]),
                                        at(upscale_app.FACTORS[0]), at(upscale_app.FACTORS[1]))
        return {"images": out_images, "z": z, "label": chosen}

    def _classify(self, images):
        """p(y|x) by Bayes' rule from the per-class bounds on log p(x|y) and the training
        classes' frequencies (calibrated by classify_temperature), its argmax, log p(x) in
        nats, and the typicality score (log p(x) corrected by the image's complexity)."""
        images = _checked_images(images)
        # Bayes' rule on the robust observation model's bounds; log p(x) and typicality on
        # the generative model's own (the same codes and decoder passes).
        own, robust = tf.unstack(self._class_bounds(images))
        probabilities = classify_app.bayes_posterior(robust, self.class_log_prior,
                                                     self.classify_temperature)
        log_px = classify_app.log_evidence(own, self.class_log_prior)
        return {"probabilities": probabilities,
                "label": tf.argmax(probabilities, -1, output_type=tf.int32),
                "log_likelihood": log_px,
                "typicality": classify_app.typicality(log_px, images)}

    def _class_bounds(self, images):
        """[2, N, 10] in nats: the K-sample bound on log p(x|y) for every class, with the
        decoder's own pixel likelihood and with it mixed with a uniform one in the share
        `classify_pixel_outlier` (`cvae.applications.classify.class_log_likelihoods`, with
        classify's draws)."""
        return classify_app.class_log_likelihoods(
            self.model, _checked_images(images), self.classify_eps,
            lambda z, y: self._class_prior_log_prob(z, y, 1.0),
            (0.0, self.applications.classify_pixel_outlier))

    def _class_log_likelihoods(self, images):
        """The bounds classify's Bayes' rule starts from, float32 [N, 10] in nats (the robust
        ones of `_class_bounds`)."""
        return self._class_bounds(images)[1]

    def _log_likelihood(self, images, label, z):
        """log p(x | z, y) in nats, float32 [N], on the model's own data representation: the
        gray levels of `images`, or `images` themselves for the Bernoulli likelihood (which
        expects binary pixels)."""
        config = self.model.config
        params = self.model.decoder_params(z, label)
        own = likelihoods.distribution(params, config.likelihood, config.min_scale)
        return own.log_prob(likelihoods.target(images, config.likelihood))

    def _log_prior(self, z, label):
        """log p(z | y) in nats, float32 [N], of the prior generation draws from, at temperature
        1: each class's fitted mixture (`cvae.model.sampling.class_log_densities`), or N(0, I) for a
        model that samples the prior. With `log_likelihood` it bounds log p(x | y) of the
        generative model that ships (the fitted prior, then the decoder)."""
        label = checked_labels(label)  # a label out of range fails here, before the gather
        if self.model.config.sampling == "prior":
            return tfd.MultivariateNormalDiag(loc=tf.zeros_like(z)).log_prob(z)
        every_class = sampling.class_log_densities(z, self.sampling_loc, self.sampling_scale_tril,
                                                   self.sampling_weights)
        return tf.gather(every_class, label, batch_dims=1)

    def _binarized_log_likelihood(self, images, label, z):
        """log P(binarize_static(images) | z, y) in nats, float32 [N]: the model's probability
        of the images thresholded at 0.5 (`cvae.model.likelihoods.binarized_logits`), which compares
        models of gray levels with models of binary pixels."""
        config = self.model.config
        logits = likelihoods.binarized_logits(self.model.decoder_params(z, label),
                                              config.likelihood, config.min_scale)
        binary = tfd.Independent(tfd.Bernoulli(logits=logits), reinterpreted_batch_ndims=3)
        return binary.log_prob(binarize_static(images))

    def signatures(self) -> dict:
        return {"serving_default": self.generate, "decode": self.decode, "encode": self.encode,
                "reconstruct": self.reconstruct, "restyle": self.restyle,
                "inpaint": self.inpaint, "denoise": self.denoise, "classify": self.classify,
                "upscale": self.upscale}
