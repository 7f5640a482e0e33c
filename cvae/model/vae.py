"""The conditional VAE: encoder q(z|x,y), decoder p(x|z,y), and its Keras train/test steps."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cvae.model import likelihoods, losses
from cvae.config import ModelConfig
from cvae.data.fields import Field, encode_tensor
from cvae.labels import NUM_CLASSES
from cvae.model.networks import NETWORKS

tfd = tfp.distributions

METRICS = ("loss", "neg_elbo", "recon", "kl")
# Reported during training only, when the label terms are on (`CVAE.label_terms`).
LABEL_METRICS = ("adversary_ce", "swap_ce", "judge_ce")


def _mlp_adversary(num_classes: int, policy: str) -> keras.Sequential:
    """The code adversary: posterior mean [B, latent_dim] -> label logits [B, num_classes]."""
    return keras.Sequential([keras.layers.Dense(256, activation="relu", dtype=policy),
                             keras.layers.Dense(256, activation="relu", dtype=policy),
                             keras.layers.Dense(num_classes, dtype="float32")],
                            name="code_adversary")


def _judge(num_classes: int, policy: str) -> keras.Sequential:
    """The swap loss's classifier: images [B, 28, 28, 1] in [0, 1] -> label logits."""
    return keras.Sequential([
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", dtype=policy),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", dtype=policy),
        keras.layers.Flatten(dtype=policy),
        keras.layers.Dense(128, activation="relu", dtype=policy),
        keras.layers.Dense(num_classes, dtype="float32")], name="label_judge")


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))


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
    computed by the one function `cvae.model.losses.negative_elbo`.
    """

    def __init__(self, config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                 seed: int = 0, dtype_policy: str = "float32", xla_loss: bool = False,
                 code_adversary_weight: float = 0.0, code_adversary_ramp_steps: int = 0,
                 swap_weight: float = 0.0, swap_prior_share: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        # A model of metadata fields takes their values float32 [B, len(fields)] (NaN unknown)
        # where a Fashion-MNIST model takes an integer label [B].
        self.fields = tuple(Field.from_json(f) for f in config.fields)
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
        # The label terms' networks exist only when their weight is on, so a model trained
        # without them has the same variables (and checkpoints) as before.
        self.code_adversary_weight = float(code_adversary_weight)
        self.code_adversary_ramp_steps = int(code_adversary_ramp_steps)
        self.swap_weight = float(swap_weight)
        self.swap_prior_share = float(swap_prior_share)
        self.code_adversary = (_mlp_adversary(NUM_CLASSES, dtype_policy)
                               if self.code_adversary_weight > 0 else None)
        self.label_judge = _judge(NUM_CLASSES, dtype_policy) if self.swap_weight > 0 else None
        names = METRICS + (("adversary_ce",) if self.code_adversary is not None else ()) + (
            ("swap_ce", "judge_ce") if self.label_judge is not None else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def label_terms_on(self) -> bool:
        return self.code_adversary is not None or self.label_judge is not None

    def auxiliary_variables(self) -> list:
        """The label terms' own networks' variables (trained on their own losses only)."""
        return [v for net in (self.code_adversary, self.label_judge) if net is not None
                for v in net.trainable_variables]

    def vae_weights(self) -> list:
        """The weights without the label terms' networks, in `weights` order: what a model of
        the same config built without label terms takes in `set_weights`."""
        own = {id(v) for net in (self.code_adversary, self.label_judge) if net is not None
               for v in net.weights}
        return [v.numpy() for v in self.weights if id(v) not in own]

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
        for an unconditional model (labels are still checked to be in range); for a model of
        metadata fields, their values encoded (`cvae.data.fields.encode_tensor`)."""
        if self.fields:
            return encode_tensor(self.fields, labels)
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
        """The image the decoder shows (`cvae.model.likelihoods.image`: the median gray level per
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
        if training and self.fields and self.config.label_dropout > 0 and getattr(
                self, "optimizer", None):
            # Each field of each image hidden on its own (its value unknown), so the model
            # learns every field's absence, as an empty CSV cell shows it.
            step = tf.cast(self.optimizer.iterations, tf.int64)
            u = tf.random.stateless_uniform(tf.shape(labels),
                                            tf.stack([tf.constant(self.seed, tf.int64), step]))
            labels = tf.where(u < self.config.label_dropout, np.nan, labels)
            y = self.condition(labels)
        else:
            y = self.condition(labels)
        if training and not self.fields and self.config.label_dropout > 0 and getattr(
                self, "optimizer", None):
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
        """`cvae.model.losses.negative_elbo`'s terms for a batch, with one reparameterised z per image;
        with `xla`, the loss from the decoder's parameters on is one XLA-compiled function."""
        out = self((x, labels) if eps is None else (x, labels, eps), training=training)
        terms = _xla_negative_elbo if xla else _negative_elbo
        return terms(out["params"], x, out["mean"], out["stddev"], tf.cast(beta, tf.float32),
                     self.config.likelihood, self.config.min_scale)

    def adversary_weight(self):
        """The code adversary's weight at the optimiser's step: rises linearly from 0 over
        `code_adversary_ramp_steps` (Fader Networks' schedule)."""
        if self.code_adversary_ramp_steps == 0:
            return tf.constant(self.code_adversary_weight)
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return self.code_adversary_weight * tf.minimum(
            1.0, step / float(self.code_adversary_ramp_steps))

    def label_terms(self, x, labels, out):
        """The terms that keep the label out of the code, from a training batch and the
        model's outputs on it (`call`): {"generator": added to the VAE's loss, "auxiliary":
        the adversary's and the judge's own losses, and the metrics of LABEL_METRICS}.

        - The adversary predicts the label from the posterior mean; the VAE minimises the
          cross-entropy of that prediction with the uniform distribution, so the code holds
          nothing that tells the label, and the decoder must take the type from y.
        - The judge learns the labels of the real images; the VAE minimises its cross-entropy
          on decode(z, y') for random labels y' (z the image's code, or a draw from N(0, I)
          for a share of the batch), so the decoder draws y' from any code.
        """
        generator, auxiliary, shown = tf.constant(0.0), tf.constant(0.0), {}
        step = tf.cast(self.optimizer.iterations, tf.int64)
        if self.code_adversary is not None:
            mean = out["mean"]
            fooled = self.code_adversary(mean)
            uniform_ce = -tf.reduce_mean(tf.nn.log_softmax(tf.cast(fooled, tf.float32)))
            generator += self.adversary_weight() * uniform_ce
            shown["adversary_ce"] = _cross_entropy(
                labels, self.code_adversary(tf.stop_gradient(mean)))
            auxiliary += shown["adversary_ce"]
        if self.label_judge is not None:
            batch = tf.shape(x)[0]
            seed = tf.stack([tf.constant(self.seed + 1, tf.int64), step])
            targets = tf.random.stateless_uniform([batch], seed, 0, NUM_CLASSES, tf.int32)
            prior = tf.random.stateless_normal(tf.shape(out["z"]), seed + [0, 7])
            use_prior = tf.random.stateless_uniform([batch], seed + [0, 13]) < self.swap_prior_share
            z = tf.where(use_prior[:, None], prior, out["z"])
            params = self.decoder(z, one_hot_labels(targets))
            # The logistic's location, clipped: the image the model shows, differentiably.
            channels = self.config.image_shape[2]
            drawn = tf.clip_by_value(tf.cast(params[..., :channels], tf.float32), 0.0, 1.0)
            shown["swap_ce"] = _cross_entropy(targets, self.label_judge(drawn))
            generator += self.swap_weight * shown["swap_ce"]
            shown["judge_ce"] = _cross_entropy(labels, self.label_judge(x))
            auxiliary += shown["judge_ce"]
        return {"generator": generator, "auxiliary": auxiliary, **shown}

    def train_step(self, data):
        x, labels, *eps = data
        label_terms = self.label_terms_on
        with tf.GradientTape(persistent=label_terms) as tape:
            if label_terms:
                out = self((x, labels, *eps), training=True)
                elbo = _xla_negative_elbo if self.xla_loss else _negative_elbo
                terms = elbo(out["params"], x, out["mean"], out["stddev"],
                             tf.cast(self.kl_weight(), tf.float32), self.config.likelihood,
                             self.config.min_scale)
                extra = self.label_terms(x, labels, out)
                terms = {**terms, **{k: extra[k] for k in LABEL_METRICS if k in extra}}
                objective = terms["loss"] + extra["generator"]
            else:
                terms = self.loss_terms(x, labels, self.kl_weight(), *eps, training=True,
                                        xla=self.xla_loss)
                objective = terms["loss"]
            # Under tf.distribute each replica sees its share of the global batch and the
            # optimiser sums the replicas' gradients: dividing by their number makes that the
            # gradient of the global batch's mean. A loss-scale optimiser (mixed_float16)
            # scales it up here and its gradients back down in `apply`.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(objective / replicas)
            if label_terms:
                auxiliary_loss = self.optimizer.scale_loss(extra["auxiliary"] / replicas)
        if label_terms:
            # The VAE's variables follow the VAE's objective, the adversary's and the judge's
            # their own losses: one optimiser, two gradients.
            own = {id(v) for v in self.auxiliary_variables()}
            main = [v for v in self.trainable_variables if id(v) not in own]
            grads = tape.gradient(loss, main) + tape.gradient(auxiliary_loss,
                                                              self.auxiliary_variables())
            # Both gradients complete before any variable moves: the two passes share the
            # decoder and the judge, and without this order the update could race the second
            # pass on a multi-threaded CPU (runs stopped repeating exactly).
            with tf.control_dependencies(grads):
                grads = [tf.identity(g) for g in grads]
            self.optimizer.apply(grads, main + self.auxiliary_variables())
            del tape
        else:
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
        return self._update(terms)

    def test_step(self, data):
        x, labels, *eps = data
        return self._update(self.loss_terms(x, labels, self.beta, *eps, xla=self.xla_loss))

    def _update(self, terms):
        for name, tracker in self.trackers.items():
            if name in terms:  # test_step reports the ELBO's terms only
                tracker.update_state(terms[name])
        results = {name: tracker.result() for name, tracker in self.trackers.items()
                   if name in terms}
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # Keras reduces step results across workers with reduce("MEAN", axis=0), which
            # rejects scalars: give it vectors of one (it returns their scalar mean).
            results = {name: tf.reshape(v, [1]) for name, v in results.items()}
        return results


def build_model(config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                seed: int = 0, dtype_policy: str = "float32", xla_loss: bool = False,
                **label_terms) -> CVAE:
    """A CVAE with all its variables created (so it can be checkpointed or exported at once).
    `dtype_policy` "mixed_bfloat16" or "mixed_float16" computes in 16 bits; the variables, the
    posterior's and the likelihood's parameters, and the loss stay float32. `xla_loss`: see
    `TrainConfig.xla_loss`; `label_terms`: `TrainConfig`'s code_adversary_weight,
    code_adversary_ramp_steps, swap_weight and swap_prior_share."""
    model = CVAE(config, beta=beta, kl_warmup_steps=kl_warmup_steps, seed=seed,
                 dtype_policy=dtype_policy, xla_loss=xla_loss, **label_terms)
    labels = (tf.zeros([1, len(config.fields)]) if config.fields else tf.zeros([1], tf.int32))
    model((tf.zeros([1, *config.image_shape]), labels))
    if model.code_adversary is not None:
        model.code_adversary(tf.zeros([1, config.latent_dim]))
    if model.label_judge is not None:
        model.label_judge(tf.zeros([1, *config.image_shape]))
    return model
