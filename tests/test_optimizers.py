"""FusedAdam: TensorFlow's fused Adam kernel gives Keras 3's Adam updates, step for step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cvae.training.optimizers import FusedAdam


def _variables(seed):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=shape).astype("float32"))
            for shape in ([7, 5], [5], [3, 3, 2, 4])]


def _gradients(steps):
    rng = np.random.default_rng(1)
    # Gradients of very different sizes, as a network's layers have.
    return [[rng.normal(scale=s, size=v.shape).astype("float32")
             for v, s in zip(_variables(0), (1e-3, 1.0, 30.0))] for _ in range(steps)]


def _run(optimizer, steps=6):
    """The variables and the slots after `steps` updates with the seeded gradients."""
    variables = _variables(0)
    optimizer.build(variables)

    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    for grads in _gradients(steps):
        apply([tf.constant(g) for g in grads])
    assert int(optimizer.iterations) == steps
    return ([np.asarray(v) for v in variables],
            [np.asarray(s) for s in optimizer._momentums + optimizer._velocities])


def _adam_in_float64(rates, steps=6, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam's definition (Kingma & Ba, with Keras' epsilon placement), in float64."""
    variables = [np.asarray(v, np.float64) for v in _variables(0)]
    m = [np.zeros_like(v) for v in variables]
    v = [np.zeros_like(x) for x in variables]
    for t, grads in enumerate(_gradients(steps), start=1):
        alpha = rates[t - 1] * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for i, g in enumerate(grads):
            m[i] += (1 - beta_1) * (g - m[i])
            v[i] += (1 - beta_2) * (g.astype(np.float64) ** 2 - v[i])
            variables[i] -= alpha * m[i] / (np.sqrt(v[i]) + epsilon)
    return variables, m + v


@pytest.mark.parametrize("learning_rate", [
    2e-3, keras.optimizers.schedules.CosineDecay(5e-2, decay_steps=6)])
def test_fused_adam_updates_as_keras_adam(learning_rate):
    rates = [float(learning_rate(t)) if callable(learning_rate) else learning_rate
             for t in range(6)]
    exact_vars, exact_slots = _adam_in_float64(rates)
    keras_vars, keras_slots = _run(keras.optimizers.Adam(learning_rate))
    fused_vars, fused_slots = _run(FusedAdam(learning_rate))
    start = [np.asarray(v) for v in _variables(0)]
    for fused, plain, exact, before in zip(fused_vars, keras_vars, exact_vars, start,
                                           strict=True):
        moved = np.abs(exact - before).max()
        assert moved > 1e-3  # the updates are not negligible
        # Both are float32 roundings of the same arithmetic: each within a few float32 steps
        # of the exact result, and no further from it than each other's distance allows.
        for result in (fused, plain):
            np.testing.assert_allclose(result, exact, rtol=0, atol=4e-6 * max(1, moved))
        np.testing.assert_allclose(fused, plain, rtol=0, atol=4e-6 * max(1, moved))
    # The kernel takes beta_2 as a float32 tensor: its 1 - beta_2 is 9.99987e-4 where Keras'
    # Python float gives 1e-3, so v comes out 1.3e-5 smaller (and updates 6e-6 larger).
    for fused, plain, exact in zip(fused_slots, keras_slots, exact_slots, strict=True):
        scale = np.abs(exact).max()  # float32 cancellation: absolute errors of this order
        np.testing.assert_allclose(fused, exact, rtol=2e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(plain, exact, rtol=1e-6, atol=1e-6 * scale)


def test_fused_adam_and_keras_adam_restore_each_others_checkpoints(tmp_path):
    variables = _variables(0)
    keras_adam = keras.optimizers.Adam(1e-2)
    keras_adam.build(variables)
    keras_adam.apply([tf.ones_like(v) for v in variables], variables)
    path = tf.train.Checkpoint(optimizer=keras_adam).write(str(tmp_path / "ckpt"))
    fused = FusedAdam(1e-2)
    fused.build(_variables(0))
    tf.train.Checkpoint(optimizer=fused).read(path).assert_existing_objects_matched()
    assert int(fused.iterations) == 1
    for a, b in zip(fused._momentums + fused._velocities,
                    keras_adam._momentums + keras_adam._velocities, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_amsgrad_keeps_keras_update():
    keras_vars, _ = _run(keras.optimizers.Adam(1e-2, amsgrad=True), steps=3)
    fused_vars, _ = _run(FusedAdam(1e-2, amsgrad=True), steps=3)
    for fused, plain in zip(fused_vars, keras_vars, strict=True):
        np.testing.assert_array_equal(fused, plain)
