"""The conditional VAE: encoder q(z|x,y), decoder p(x|z,y), and its Keras train/test steps."""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from cvae import likelihoods, losses
from cvae.config import ModelConfig
from cvae.labels import NUM_CLASSES
from cvae.networks import NETWORKS

tfd = tfp.distributions

METRICS = ("loss", "neg_elbo", "recon", "kl")


def checked_labels(labels: tf.Tensor, num_classes: int = NUM_CLASSES) -> tf.Tensor:
    """`labels` (int [B]), computed only after checking they are in 0..num_classes-1: anything
    that reads the result fails with InvalidArgumentError "label out of range" first."""
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise TypeError(f"labels must be integers, got {labels.dtype.name}")
    checks = [
        tf.debugging.assert_greater_equal(
            labels, tf.cast(0, labels.dtype),
            message=f"label out of range: labels must be in 0..{num_classes - 1}"),
        tf.debugging.assert_less(
            labels, tf.cast(num_classes, labels.dtype),
            message=f"label out of range: labels must be in 0..{num_classes - 1}"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def one_hot_labels(labels: tf.Tensor, num_classes: int = NUM_CLASSES) -> tf.Tensor:
    """One-hot float32 [B, num_classes] of int labels [B]; a label outside 0..num_classes-1
    raises InvalidArgumentError (tf.one_hot alone would give an all-zero condition)."""
    return tf.one_hot(checked_labels(labels, num_classes), num_classes, dtype=tf.float32)


def _negative_elbo(params, x, mean, stddev, beta, kind, min_scale):
    """The loss terms from the decoder's parameters and the posterior's (`CVAE.loss_terms`)."""
    log_px = likelihoods.distribution(params, kind, min_scale).log_prob(
        likelihoods.target(x, kind))
    return losses.negative_elbo(log_px, mean, stddev, beta)


# The same function compiled by XLA (its gradient too): the likelihood's element-wise work,
# dozens of small kernels over [B, 28, 28, 2] in a plain graph, becomes a few fused loops.
# `kind` and `min_scale` are Python values, so each likelihood gets its own compilation.
_xla_negative_elbo = tf.function(_negative_elbo, jit_compile=True)


class CVAE(keras.Model):
    """Conditional VAE trained by maximising the ELBO with a standard normal prior.

    `fit` minimises recon + beta_t * KL where beta_t rises linearly from 0 to `beta` over
    `kl_warmup_steps`; `fit` and `evaluate` report the same metrics (`METRICS`, nats per image),
    computed by the one function `cvae.losses.negative_elbo`.
    """

    def __init__(self, config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                 seed: int = 0, dtype_policy: str = "float32", xla_loss: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.beta = float(beta)
        # With it, `fit` and `evaluate` compute the loss from the decoder's parameters with XLA
        # (`TrainConfig.xla_loss`); `loss_terms` itself only when asked (xla=True).
        self.xla_loss = bool(xla_loss)
        self.kl_warmup_steps = int(kl_warmup_steps)
        encoder, decoder = NETWORKS[config.architecture]
        self.encoder = encoder(config, name="encoder", dtype=dtype_policy)
        self.decoder = decoder(config, name="decoder", dtype=dtype_policy)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed, name="reparameterisation")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRICS}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model symbolically from a sample batch when fit/evaluate start under a
        # tf.distribute strategy. `build_model` has already created every variable and nothing
        # else (no compiled loss or metrics) needs building, while the sample batch's reduction
        # fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def condition(self, labels):
        """What the networks see of the labels: one-hot float32 [B, 10], or zeros of that shape
        for an unconditional model (labels are still checked to be in range)."""
        y = one_hot_labels(labels)
        return y if self.config.conditional else tf.zeros_like(y)

    def encode(self, x, labels):
        """Posterior parameters {"mean", "stddev"}, each float32 [B, latent_dim]."""
        mean, stddev = self.encoder(x, self.condition(labels))
        return {"mean": mean, "stddev": stddev}

    def posterior(self, x, labels) -> tfd.Distribution:
        """q(z|x,y): a diagonal Gaussian, batch shape [B], event shape [latent_dim]."""
        p = self.encode(x, labels)
        return tfd.MultivariateNormalDiag(loc=p["mean"], scale_diag=p["stddev"])

    def prior(self) -> tfd.Distribution:
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.config.latent_dim]))

    def decoder_params(self, z, labels):
        return self.decoder(z, self.condition(labels))

    def likelihood(self, z, labels) -> tfd.Distribution:
        """p(x|z,y), batch shape [B], event shape [28, 28, 1]."""
        return likelihoods.distribution(self.decoder_params(z, labels), self.config.likelihood,
                                        self.config.min_scale)

    def guided_params(self, z, labels, guided=True, guidance=None):
        """The decoder's parameters with guidance w (`guidance`, else the config's):
        params(z, none) + w * (params(z, y) - params(z, none)), from one decoder call on
        [z; z]; w = 1 (or guided=False) is `decoder_params`."""
        w = self.config.guidance if guidance is None else guidance
        if w == 1 or not guided:
            return self.decoder_params(z, labels)
        y = self.condition(labels)
        both = self.decoder(tf.concat([z, z], 0), tf.concat([y, tf.zeros_like(y)], 0))
        labelled, free = tf.split(both, 2, axis=0)
        return free + w * (labelled - free)

    def decode(self, z, labels, guided=True, guidance=None):
        """The image the decoder shows (`cvae.likelihoods.image`: the median gray level per
        pixel for the discretised logistic, the mean otherwise), with guidance (`guidance`,
        else the config's) unless guided=False, float32 [B, 28, 28, 1] in [0, 1]."""
        return likelihoods.image(self.guided_params(z, labels, guided, guidance),
                                 self.config.likelihood, self.config.min_scale)

    def call(self, inputs, training=False):
        """(x, labels[, eps]) -> {"mean", "stddev", "z", "params"} with z reparameterised.

        eps, standard normal noise [B, latent_dim], comes with the batch from the training
        pipeline (a stateless function of the step, so runs resume and shard exactly); without
        it, it is drawn from the model's seeded generator."""
        x, labels, *noise = inputs
        y = self.condition(labels)
        if training and self.config.label_dropout > 0 and getattr(self, "optimizer", None):
            # Which images go without their label: a stateless function of (seed, step), so
            # runs resume exactly.
            step = tf.cast(self.optimizer.iterations, tf.int64)
            u = tf.random.stateless_uniform(tf.shape(y)[:1],
                                            tf.stack([tf.constant(self.seed, tf.int64), step]))
            y = y * tf.cast(u >= self.config.label_dropout, y.dtype)[:, None]
        mean, stddev = self.encoder(x, y)
        eps = noise[0] if noise else keras.random.normal(tf.shape(mean), seed=self.seed_generator)
        z = mean + stddev * eps  # the reparameterisation trick: gradients flow to mean, stddev
        return {"mean": mean, "stddev": stddev, "z": z, "params": self.decoder(z, y)}

    def kl_weight(self):
        """beta_t = beta * min(1, step / kl_warmup_steps) at the optimiser's current step."""
        if self.kl_warmup_steps == 0:
            return tf.constant(self.beta)
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return self.beta * tf.minimum(1.0, step / float(self.kl_warmup_steps))

    def loss_terms(self, x, labels, beta, eps=None, training=False, xla=False):
        """`cvae.losses.negative_elbo`'s terms for a batch, with one reparameterised z per image;
        with `xla`, the loss from the decoder's parameters on is one XLA-compiled function."""
        out = self((x, labels) if eps is None else (x, labels, eps), training=training)
        terms = _xla_negative_elbo if xla else _negative_elbo
        return terms(out["params"], x, out["mean"], out["stddev"], tf.cast(beta, tf.float32),
                     self.config.likelihood, self.config.min_scale)

    def train_step(self, data):
        x, labels, *eps = data
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, labels, self.kl_weight(), *eps, training=True,
                                    xla=self.xla_loss)
            # Under tf.distribute each replica sees its share of the global batch and the
            # optimiser sums the replicas' gradients: dividing by their number makes that the
            # gradient of the global batch's mean. A loss-scale optimiser (mixed_float16)
            # scales it up here and its gradients back down in `apply`.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(terms["loss"] / replicas)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update(terms)

    def test_step(self, data):
        x, labels, *eps = data
        return self._update(self.loss_terms(x, labels, self.beta, *eps, xla=self.xla_loss))

    def _update(self, terms):
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # Keras reduces step results across workers with reduce("MEAN", axis=0), which
            # rejects scalars: give it vectors of one (it returns their scalar mean).
            results = {name: tf.reshape(v, [1]) for name, v in results.items()}
        return results


def build_model(config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                seed: int = 0, dtype_policy: str = "float32", xla_loss: bool = False) -> CVAE:
    """A CVAE with all its variables created (so it can be checkpointed or exported at once).
    `dtype_policy` "mixed_bfloat16" or "mixed_float16" computes in 16 bits; the variables, the
    posterior's and the likelihood's parameters, and the loss stay float32. `xla_loss`: see
    `TrainConfig.xla_loss`."""
    model = CVAE(config, beta=beta, kl_warmup_steps=kl_warmup_steps, seed=seed,
                 dtype_policy=dtype_policy, xla_loss=xla_loss)
    model((tf.zeros([1, 28, 28, 1]), tf.zeros([1], tf.int32)))
    return model
