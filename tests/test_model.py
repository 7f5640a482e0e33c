"""The CVAE's layers, label checks, gradients, and the shared train/test loss."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cvae.model import likelihoods, losses
from cvae.config import Config
from cvae.model.vae import build_model, one_hot_labels


@pytest.fixture(scope="module")
def model():
    m = build_model(Config.small().model, kl_warmup_steps=0)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    return m


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.integers(0, 256, (n, 28, 28, 1)) / 255.0, tf.float32)
    return x, tf.constant(np.arange(n) % 10, tf.int32)


@pytest.mark.parametrize("bad", [-1, 10])
def test_labels_out_of_range_are_refused(bad):
    with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
        one_hot_labels(tf.constant([0, bad]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
        tf.function(one_hot_labels)(tf.constant([bad, 1]))


def test_float_labels_are_refused():
    with pytest.raises(TypeError, match="labels must be integers, got float32"):
        one_hot_labels(tf.constant([1.0]))


def test_shapes(model):
    x, y = _batch()
    out = model((x, y))
    latent = model.config.latent_dim
    assert out["mean"].shape == out["stddev"].shape == out["z"].shape == (8, latent)
    assert np.all(out["stddev"].numpy() > 0)
    assert out["params"].shape == (8, 28, 28, likelihoods.output_channels(model.config.likelihood))
    posterior = model.posterior(x, y)
    assert posterior.batch_shape == [8] and posterior.event_shape == [latent]
    assert model.prior().batch_shape == [] and model.prior().event_shape == [latent]
    np.testing.assert_allclose(tfp.distributions.kl_divergence(posterior, model.prior()),
                               losses.kl_to_standard_normal(out["mean"], out["stddev"]), rtol=1e-5)
    assert model.likelihood(out["z"], y).event_shape == [28, 28, 1]
    images = model.decode(out["z"], y).numpy()
    assert images.shape == (8, 28, 28, 1) and images.min() >= 0 and images.max() <= 1


def test_the_label_conditions_the_decoder(model):
    z = tf.zeros([2, model.config.latent_dim])
    a, b = model.decode(z, tf.constant([3, 7])).numpy()
    assert np.abs(a - b).max() > 1e-4


def _gradients(model):
    x, y = _batch()
    with tf.GradientTape() as tape:
        loss = model.loss_terms(x, y, beta=1.0, training=True)["loss"]
    return tape.gradient(loss, model.trainable_variables)


def test_gradients_reach_encoder_and_decoder():
    """Every variable gets a gradient from the loss. A residual block's second convolution
    starts at zero (each block starts as the identity), so its first convolution gets one only
    once the second has moved: a step of plain gradient descent first."""
    model = build_model(Config.small().model)
    variables = model.trainable_variables
    zero_at_start = [v.path for v, g in zip(variables, _gradients(model))
                     if g is None or not np.any(g.numpy())]
    assert all("block" in name for name in zero_at_start), zero_at_start
    for v, g in zip(variables, _gradients(model)):
        v.assign_sub(1e-3 * g)
    names = [v.path for v, g in zip(variables, _gradients(model))
             if g is None or not np.any(g.numpy())]
    assert not names, f"no gradient for {names}"
    assert any("encoder" in v.path for v in variables) and any("decoder" in v.path for v in variables)


def test_evaluate_reports_the_shared_loss_function(model):
    """`evaluate` (test_step) gives the same numbers as calling the pure loss by hand."""
    x, y = _batch(16, seed=3)
    state = model.seed_generator.state.numpy()
    result = model.evaluate(tf.data.Dataset.from_tensors((x, y)), return_dict=True, verbose=0)
    model.seed_generator.state.assign(state)  # the same reparameterisation noise again
    out = model((x, y))
    kind = model.config.likelihood
    log_px = likelihoods.distribution(out["params"], kind, model.config.min_scale).log_prob(
        likelihoods.target(x, kind))
    by_hand = losses.negative_elbo(log_px, out["mean"], out["stddev"], model.beta)
    assert set(result) == {"loss", "neg_elbo", "recon", "kl"}
    for name in ("loss", "neg_elbo", "recon", "kl"):
        assert result[name] == pytest.approx(float(by_hand[name]), rel=1e-5), name
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"], rel=1e-5)


def test_kl_warmup_schedule():
    m = build_model(Config.small().model, beta=2.0, kl_warmup_steps=100)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    m.optimizer.build(m.trainable_variables)
    for step, expected in ((0, 0.0), (25, 0.5), (100, 2.0), (500, 2.0)):
        m.optimizer.iterations.assign(step)
        assert float(m.kl_weight()) == pytest.approx(expected)


def test_unconditional_model_ignores_the_label_and_conditional_one_does_not():
    from cvae.config import Config

    for conditional in (True, False):
        config = (Config() if conditional else Config().unconditional()).model
        z = tf.random.stateless_normal([4, config.latent_dim], [0, 1])
        model = build_model(config, seed=3)
        a = model.decode(z, tf.constant([0, 1, 2, 3])).numpy()
        b = model.decode(z, tf.constant([9, 8, 7, 6])).numpy()
        assert np.array_equal(a, b) == (not conditional)


def test_tutorial_networks_are_tensorflow_tutorials():
    """Conv 32 and 64 (valid padding: 28 -> 13 -> 6), a dense head; dense 7x7x32, transposed
    convolutions 64, 32 and 1: the tutorial's parameter count plus the zero label inputs."""
    from cvae.config import Config

    config = Config().tutorial().model
    model = build_model(config)
    out = model((tf.zeros([2, 28, 28, 1]), tf.constant([0, 1])))
    assert out["params"].shape == (2, 28, 28, 1) and out["z"].shape == (2, 2)
    label_weights = 3 * 3 * 10 * 32 + 10 * 7 * 7 * 32  # label planes into conv1, y into dense
    tutorial = (9 * 32 + 32) + (9 * 32 * 64 + 64) + (6 * 6 * 64 * 4 + 4) \
        + (2 * 1568 + 1568) + (9 * 32 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 + 1)
    assert model.count_params() == tutorial + label_weights


def test_guidance_extrapolates_from_the_label_free_parameters():
    from cvae.config import Config

    config = Config().replace(guidance=2.5, label_dropout=0.1).model
    model = build_model(config, seed=1)
    z = tf.random.stateless_normal([3, config.latent_dim], [4, 5])
    labels = tf.constant([1, 5, 8])
    labelled = model.decoder(z, one_hot_labels(labels))
    free = model.decoder(z, tf.zeros([3, 10]))
    np.testing.assert_allclose(model.guided_params(z, labels).numpy(),
                               (free + 2.5 * (labelled - free)).numpy(), rtol=1e-5, atol=1e-5)
    model.config = dataclasses.replace(config, guidance=1.0)
    np.testing.assert_allclose(model.guided_params(z, labels).numpy(), labelled.numpy())


def test_label_dropout_hides_that_fraction_of_labels_in_training_only():
    from cvae.config import Config
    from cvae.training.train import compiled_model

    config = Config().replace(label_dropout=0.25)
    model = compiled_model(config, steps_per_epoch=None)
    x = tf.zeros([4000, 28, 28, 1])
    labels = tf.zeros([4000], tf.int32)
    seen = []
    original = model.encoder.call

    def spy(x, y):
        seen.append(y)
        return original(x, y)

    model.encoder.call = spy
    model((x, labels), training=True)
    model((x, labels), training=True)  # the same step: the same labels hidden
    model((x, labels), training=False)
    hidden = [float(tf.reduce_mean(1.0 - tf.reduce_sum(y, 1))) for y in seen]
    assert 0.23 < hidden[0] < 0.27 and hidden[1] == hidden[0] and hidden[2] == 0.0
    assert np.array_equal(seen[0].numpy(), seen[1].numpy())
    model.optimizer.iterations.assign(1)
    model((x, labels), training=True)
    assert not np.array_equal(seen[3].numpy(), seen[0].numpy())  # another step, another mask


def test_xla_loss_gives_the_plain_loss_and_gradients():
    from cvae.config import Config
    from cvae.model.vae import build_model

    for likelihood in ("discretized_logistic", "bernoulli", "continuous_bernoulli"):
        config = Config.small().replace(likelihood=likelihood).model
        model = build_model(config, beta=3.0)
        x = tf.random.stateless_uniform([16, 28, 28, 1], seed=[3, 4])
        if likelihood == "bernoulli":
            x = tf.round(x)
        labels = tf.range(16) % 10
        eps = tf.random.stateless_normal([16, config.latent_dim], seed=[5, 6])
        results = []
        for xla in (False, True):
            with tf.GradientTape() as tape:
                terms = model.loss_terms(x, labels, 3.0, eps, training=True, xla=xla)
            grads = tape.gradient(terms["loss"], model.trainable_variables)
            results.append(({k: float(v) for k, v in terms.items()}, grads))
        (plain, plain_grads), (fused, fused_grads) = results
        assert plain["loss"] == pytest.approx(plain["recon"] + 3.0 * plain["kl"], rel=1e-6)
        # rel 1e-4: XLA fuses the sum over 16 x 784 pixels in another order, and on CPUs with
        # AVX-512 the continuous Bernoulli's normaliser came out 8e-5 apart (1e-5 held on AVX2).
        for name in plain:
            assert fused[name] == pytest.approx(plain[name], rel=1e-4), (likelihood, name)
        for a, b in zip(fused_grads, plain_grads, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-3,
                                       atol=1e-5 * float(tf.reduce_max(tf.abs(b))))


def test_compiled_model_takes_the_fast_path_the_config_asks_for():
    import keras

    from cvae.config import Config
    from cvae.training.optimizers import FusedAdam
    from cvae.training.train import compiled_model

    fast = compiled_model(Config.small().replace(precision="float32"), steps_per_epoch=8)
    assert type(fast.optimizer) is FusedAdam and not fast.xla_loss
    assert compiled_model(Config.small().replace(precision="float32", xla_loss=True),
                          steps_per_epoch=8).xla_loss
    assert isinstance(fast.optimizer._learning_rate,  # noqa: SLF001 -- what apply() reads
                      keras.optimizers.schedules.CosineDecay)
    plain = compiled_model(Config.small().replace(precision="float32", fused_adam=False,
                                                  xla_loss=False, lr_schedule="constant"),
                           steps_per_epoch=8)
    assert type(plain.optimizer) is keras.optimizers.Adam and not plain.xla_loss
    assert float(plain.optimizer.learning_rate) == pytest.approx(2e-3)
    bf16 = compiled_model(Config.small().replace(precision="mixed_bfloat16"), steps_per_epoch=8)
    assert bf16.encoder.down1.compute_dtype == "bfloat16"
    assert type(bf16.optimizer) is FusedAdam  # no loss scaling for bfloat16


@pytest.mark.parametrize("architecture", ["resnet", "conv", "mlp"])
@pytest.mark.parametrize("likelihood", ["discretized_logistic", "bernoulli"])
def test_rgb_images_of_another_side_train_and_decode_per_channel(architecture, likelihood):
    """Own images (cvae.data.folder): 16x16 RGB through the same networks and likelihoods,
    each channel its own likelihood, gradients reaching every weight."""
    config = dataclasses.replace(Config.small().model, architecture=architecture,
                                 likelihood=likelihood, image_shape=(16, 16, 3))
    m = build_model(config, kl_warmup_steps=0)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (8, 16, 16, 3)) / 255.0, tf.float32)
    if likelihood == "bernoulli":
        x = tf.round(x)
    y = tf.constant(np.arange(8) % 10, tf.int32)
    out = m((x, y))
    channels = 6 if likelihood == "discretized_logistic" else 3
    assert out["params"].shape == (8, 16, 16, channels)
    p = m.likelihood(out["z"], y)
    assert p.event_shape == (16, 16, 3) and p.batch_shape == (8,)
    # Each channel scored by its own parameters: the log-probability is the sum over the three
    # one-channel likelihoods of the split parameters.
    target = likelihoods.target(x, likelihood)
    if likelihood == "discretized_logistic":
        parts = [tf.stack([out["params"][..., c], out["params"][..., 3 + c]], -1)
                 for c in range(3)]
    else:
        parts = [out["params"][..., c:c + 1] for c in range(3)]
    summed = sum(likelihoods.distribution(part, likelihood, config.min_scale).log_prob(
        target[..., c:c + 1]) for c, part in enumerate(parts))
    np.testing.assert_allclose(p.log_prob(target).numpy(), summed.numpy(), rtol=1e-5)
    assert m.decode(out["z"], y).shape == (8, 16, 16, 3)
    with tf.GradientTape() as tape:
        loss = m.loss_terms(x, y, 1.0)["loss"]
    grads = tape.gradient(loss, m.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize("shape", [(30, 30, 1), (16, 20, 3), (16, 16, 4), (4, 4, 1)])
def test_an_image_shape_the_networks_cannot_take_is_refused(shape):
    with pytest.raises(ValueError, match="image_shape"):
        dataclasses.replace(Config.small().model, image_shape=shape)
    with pytest.raises(ValueError, match="the tutorial's networks take 28x28x1 only"):
        dataclasses.replace(Config.small().model, architecture="tutorial",
                            image_shape=(16, 16, 3))
