"""How the one-hot label enters a network: tiled over feature maps as extra channels."""

from __future__ import annotations

import tensorflow as tf


def with_label_planes(h: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """Concatenates the one-hot label, tiled over the height and width of `h` [B, H, W, C]."""
    shape = tf.shape(h)
    planes = tf.tile(y_onehot[:, tf.newaxis, tf.newaxis, :], [1, shape[1], shape[2], 1])
    return tf.concat([h, planes], axis=-1)
