"""The training optimiser: Keras 3's Adam, with each variable's update done by TensorFlow's fused
Adam kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose per-variable update is TensorFlow's fused `ResourceApplyAdam`
    kernel (what Keras 2's Adam ran) instead of Keras 3's backend-neutral update, eight
    element-wise operations each reading and writing whole variables. The arithmetic is the
    same:

        m <- m + (1 - beta_1) (g - m);  v <- v + (1 - beta_2) (g^2 - v)
        variable <- variable - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

    except that the kernel takes beta_2 as a float32 tensor, so its 1 - beta_2 is 9.99987e-4
    where Keras' Python float gives 1e-3: v is 1.3e-5 smaller, updates 6e-6 larger
    (tests/test_optimizers.py checks both against Adam in float64, step by step). Its
    slots, step counter and checkpoints are Adam's, so either restores the other's state.
    amsgrad and sparse gradients keep Keras' own update. `fused_adam=False` (config) trains
    with `keras.optimizers.Adam` itself; `pipelines.benchmark --variants fused_adam=false`
    measures the difference."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        # `variable` is the tf.Variable (one replica's copy under a tf.distribute update), the
        # slots are Keras variables around tf.Variables: both give the kernel resource handles.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
