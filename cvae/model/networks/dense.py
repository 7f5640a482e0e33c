"""The dense decoder (`architecture="mlp"`, the fast recipe): a sixth of the convolutional
decoder's multiply-adds, near the CPU's peak."""

from __future__ import annotations

import keras
import tensorflow as tf

from cvae.model import likelihoods
from cvae.config import ModelConfig


class MLPDecoder(keras.layers.Layer):
    """p(x|z,y): [z, one-hot y] -> dense layers (`decoder_hidden`, y joined again before each)
    -> the likelihood's parameters for every pixel, [B, H, W, parameters] (784 pixels for
    Fashion-MNIST)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self.hidden = [keras.layers.Dense(h, activation="relu", dtype=policy)
                       for h in config.decoder_hidden]
        self.side, _, image_channels = config.image_shape
        self.channels = likelihoods.output_channels(config.likelihood, image_channels)
        self.out = keras.layers.Dense(self.side * self.side * self.channels, dtype="float32")

    def call(self, z, y_onehot):
        h = z
        for layer in self.hidden:
            h = layer(tf.concat([h, tf.cast(y_onehot, h.dtype)], axis=-1))
        return tf.reshape(self.out(h), [-1, self.side, self.side, self.channels])
