"""The convolutional encoder every recipe but the tutorial's uses, and the convolutional
decoder (`architecture="conv"`)."""

from __future__ import annotations

import keras
import tensorflow as tf

from cvae.model import likelihoods
from cvae.config import ModelConfig
from cvae.model.networks.conditioning import with_label_planes


class Encoder(keras.layers.Layer):
    """q(z|x,y): the one-hot label is tiled as 10 extra input channels and concatenated again
    before the Gaussian head. Returns the posterior's mean and stddev, each [B, latent_dim]."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f1, f2 = config.encoder_filters
        policy = self.dtype_policy  # a mixed policy computes in 16 bits, keeps float32 weights
        self.conv1 = keras.layers.Conv2D(f1, 3, strides=2, padding="same", activation="relu",
                                         dtype=policy)
        self.conv2 = keras.layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu",
                                         dtype=policy)
        self.flatten = keras.layers.Flatten(dtype=policy)
        self.hidden = keras.layers.Dense(config.hidden_dim, activation="relu", dtype=policy)
        # The posterior's parameters stay float32 whatever the policy: the KL and the
        # reparameterised sample are computed from them.
        self.head = keras.layers.Dense(2 * config.latent_dim, dtype="float32")

    def call(self, x, y_onehot):
        h = self.conv2(self.conv1(with_label_planes(x, y_onehot)))
        h = self.hidden(tf.concat([self.flatten(h), tf.cast(y_onehot, h.dtype)], axis=-1))
        mean, raw_scale = tf.split(self.head(h), 2, axis=-1)
        return mean, tf.nn.softplus(raw_scale) + 1e-4


class Decoder(keras.layers.Layer):
    """p(x|z,y): [z, one-hot y] -> dense -> 7x7 -> transposed convolutions to 28x28 (a
    quarter of the image's side, doubled twice) -> the likelihood's parameters per pixel,
    [B, 28, 28, parameters]. With `decoder_label_planes` the
    label is also tiled onto the 7x7 and 14x14 feature maps, so every layer sees the class."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f1, f2 = config.decoder_filters
        policy = self.dtype_policy
        self.hidden = keras.layers.Dense(config.hidden_dim, activation="relu", dtype=policy)
        base = config.image_shape[0] // 4  # 7 for 28x28
        self.project = keras.layers.Dense(base * base * f1, activation="relu", dtype=policy)
        self.reshape = keras.layers.Reshape((base, base, f1), dtype=policy)
        self.up1 = keras.layers.Conv2DTranspose(f1, 3, strides=2, padding="same",
                                                activation="relu", dtype=policy)
        self.up2 = keras.layers.Conv2DTranspose(f2, 3, strides=2, padding="same",
                                                activation="relu", dtype=policy)
        # The likelihood's parameters in float32: log-probabilities of 784 pixels summed in
        # bfloat16 would lose the ELBO's digits.
        self.out = keras.layers.Conv2D(likelihoods.output_channels(config.likelihood,
                                                                   config.image_shape[2]), 3,
                                       padding="same", dtype="float32")
        self.label_planes = config.decoder_label_planes

    def call(self, z, y_onehot):
        def condition(h):
            return with_label_planes(h, tf.cast(y_onehot, h.dtype)) if self.label_planes else h

        h = self.hidden(tf.concat([z, y_onehot], axis=-1))
        h = self.up1(condition(self.reshape(self.project(h))))
        return self.out(self.up2(condition(h)))
