"""The residual convolutional encoder and decoder (`architecture="resnet"`, the shipped model).

Every convolution runs at 14x14 or 7x7: the decoder's last one predicts the likelihood's
parameters of each 2x2 block of pixels from the 14x14 feature map (sub-pixel convolution,
`tf.nn.depth_to_space`), so no convolution runs at full resolution, where small convolutions
run far from the CPU's peak. The label enters the input, the dense layers and every
resolution's feature maps (`with_label_planes`). Why this design: docs/experiments.md.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cvae.model import likelihoods
from cvae.config import ModelConfig
from cvae.model.networks.conditioning import with_label_planes


class ResidualBlock(keras.layers.Layer):
    """h + conv3x3(relu(conv3x3(relu([h, label planes])))), at h's resolution and width; the
    second convolution starts at zero, so each block starts as the identity."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self.conv1 = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                         dtype=policy)
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same", dtype=policy,
                                         kernel_initializer="zeros")

    def call(self, h, y_onehot):
        r = self.conv1(with_label_planes(tf.nn.relu(h), tf.cast(y_onehot, h.dtype)))
        return h + self.conv2(r)


class ResidualEncoder(keras.layers.Layer):
    """q(z|x,y): [x, label planes] -> conv stride 2 (14x14, `encoder_filters[0]`) -> residual
    blocks -> conv stride 2 (7x7, `encoder_filters[1]`) -> residual blocks -> dense
    `hidden_dim` with y -> the Gaussian's mean and stddev, each [B, latent_dim]."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f14, f7 = config.encoder_filters
        policy = self.dtype_policy
        self.down1 = keras.layers.Conv2D(f14, 3, strides=2, padding="same", dtype=policy)
        self.blocks14 = [ResidualBlock(f14, dtype=policy, name=f"block14_{i}")
                         for i in range(config.residual_blocks)]
        self.down2 = keras.layers.Conv2D(f7, 3, strides=2, padding="same", dtype=policy)
        self.blocks7 = [ResidualBlock(f7, dtype=policy, name=f"block7_{i}")
                        for i in range(config.residual_blocks)]
        self.flatten = keras.layers.Flatten(dtype=policy)
        self.hidden = keras.layers.Dense(config.hidden_dim, activation="relu", dtype=policy)
        # float32 whatever the policy: the KL and the reparameterised sample are computed from it.
        self.head = keras.layers.Dense(2 * config.latent_dim, dtype="float32")

    def call(self, x, y_onehot):
        h = self.down1(with_label_planes(x, y_onehot))
        for block in self.blocks14:
            h = block(h, y_onehot)
        h = self.down2(tf.nn.relu(h))
        for block in self.blocks7:
            h = block(h, y_onehot)
        h = tf.nn.relu(self.flatten(h))
        h = self.hidden(tf.concat([h, tf.cast(y_onehot, h.dtype)], axis=-1))
        mean, raw_scale = tf.split(self.head(h), 2, axis=-1)
        return mean, tf.nn.softplus(raw_scale) + 1e-4


class ResidualDecoder(keras.layers.Layer):
    """p(x|z,y): [z, y] -> dense `hidden_dim` -> dense to 7x7 x `decoder_filters[0]` ->
    residual blocks -> transposed conv to 14x14 x `decoder_filters[1]` -> residual blocks ->
    conv3x3 to 4 x channels -> depth_to_space -> [B, 28, 28, channels] (for 28x28 images;
    the side's quarter and half for others)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        f7, f14 = config.decoder_filters
        policy = self.dtype_policy
        self.f7 = f7
        self.base = config.image_shape[0] // 4  # 7 for 28x28
        self.hidden = keras.layers.Dense(config.hidden_dim, activation="relu", dtype=policy)
        self.project = keras.layers.Dense(self.base * self.base * f7, dtype=policy)
        self.blocks7 = [ResidualBlock(f7, dtype=policy, name=f"block7_{i}")
                        for i in range(config.residual_blocks)]
        self.up = keras.layers.Conv2DTranspose(f14, 4, strides=2, padding="same", dtype=policy)
        self.blocks14 = [ResidualBlock(f14, dtype=policy, name=f"block14_{i}")
                         for i in range(config.residual_blocks)]
        self.channels = likelihoods.output_channels(config.likelihood, config.image_shape[2])
        # The likelihood's parameters in float32: 784 log-probabilities summed in bfloat16 would
        # lose the ELBO's digits.
        self.out = keras.layers.Conv2D(4 * self.channels, 3, padding="same", dtype="float32")

    def call(self, z, y_onehot):
        h = self.hidden(tf.concat([z, y_onehot], axis=-1))
        h = tf.reshape(self.project(tf.concat([h, tf.cast(y_onehot, h.dtype)], axis=-1)),
                       [-1, self.base, self.base, self.f7])
        for block in self.blocks7:
            h = block(h, y_onehot)
        h = self.up(tf.nn.relu(with_label_planes(h, tf.cast(y_onehot, h.dtype))))
        for block in self.blocks14:
            h = block(h, y_onehot)
        return tf.nn.depth_to_space(self.out(tf.nn.relu(h)), 2)
