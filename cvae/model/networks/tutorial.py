"""The encoder and decoder of TensorFlow's convolutional-VAE tutorial (`architecture="tutorial"`),
for the comparison of `pipelines.evaluate --compare`."""

from __future__ import annotations

import keras
import tensorflow as tf

from cvae.model import likelihoods
from cvae.config import ModelConfig
from cvae.model.networks.conditioning import with_label_planes


class TutorialEncoder(keras.layers.Layer):
    """The encoder of TensorFlow's convolutional-VAE tutorial (conv 32 and 64, stride 2, valid
    padding, then a dense head of mean and log-variance), with the label tiled onto the input
    like `Encoder`'s (zeros when the model is unconditional, as the tutorial's is)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f1, f2 = config.encoder_filters
        policy = self.dtype_policy
        self.conv1 = keras.layers.Conv2D(f1, 3, strides=2, activation="relu", dtype=policy)
        self.conv2 = keras.layers.Conv2D(f2, 3, strides=2, activation="relu", dtype=policy)
        self.flatten = keras.layers.Flatten(dtype=policy)
        self.head = keras.layers.Dense(2 * config.latent_dim, dtype="float32")

    def call(self, x, y_onehot):
        h = self.flatten(self.conv2(self.conv1(with_label_planes(x, y_onehot))))
        mean, log_variance = tf.split(self.head(h), 2, axis=-1)
        return mean, tf.exp(0.5 * log_variance)


class TutorialDecoder(keras.layers.Layer):
    """The tutorial's decoder: [z, y] -> dense 7x7x32 -> transposed convolutions 64 and 32
    (stride 2) -> one of stride 1 giving the likelihood's parameters."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f1, f2 = config.decoder_filters
        policy = self.dtype_policy
        self.project = keras.layers.Dense(7 * 7 * 32, activation="relu", dtype=policy)
        self.reshape = keras.layers.Reshape((7, 7, 32), dtype=policy)
        self.up1 = keras.layers.Conv2DTranspose(f1, 3, strides=2, padding="same",
                                                activation="relu", dtype=policy)
        self.up2 = keras.layers.Conv2DTranspose(f2, 3, strides=2, padding="same",
                                                activation="relu", dtype=policy)
        self.out = keras.layers.Conv2DTranspose(likelihoods.output_channels(config.likelihood),
                                                3, padding="same", dtype="float32")

    def call(self, z, y_onehot):
        h = self.reshape(self.project(tf.concat([z, y_onehot], axis=-1)))
        return self.out(self.up2(self.up1(h)))
