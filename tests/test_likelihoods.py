"""The pixel likelihoods: shapes, normalisation, and the discretised logistic against its formula."""

import numpy as np
import pytest
import tensorflow as tf

from cvae.model import likelihoods

KINDS = ["discretized_logistic", "bernoulli", "continuous_bernoulli"]


def _params(kind, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    channels = likelihoods.output_channels(kind)
    return tf.constant(rng.normal(size=(batch, 28, 28, channels)), tf.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_event_and_batch_shapes(kind):
    dist = likelihoods.distribution(_params(kind), kind, 1e-3)
    assert dist.batch_shape == [3] and dist.event_shape == [28, 28, 1]
    x = tf.random.stateless_uniform([3, 28, 28, 1], seed=[1, 2])
    if kind == "bernoulli":
        x = tf.round(x)
    log_prob = dist.log_prob(likelihoods.target(x, kind))
    assert log_prob.shape == [3] and np.isfinite(log_prob.numpy()).all()
    mean = likelihoods.mean(_params(kind), kind, 1e-3).numpy()
    assert mean.shape == (3, 28, 28, 1) and mean.min() >= 0 and mean.max() <= 1


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_discretized_logistic_matches_formula_and_sums_to_one():
    loc, raw_scale = 0.3, -3.0
    params = tf.constant([[[[loc, raw_scale]]]], tf.float32)
    params = tf.tile(params, [1, 28, 28, 1])
    scale = np.log1p(np.exp(raw_scale)) + 1e-3
    pixel = likelihoods.distribution(params, "discretized_logistic", 1e-3).distribution
    levels = np.arange(256, dtype=np.float32)
    probs = np.exp(pixel[0, 0, 0, 0].log_prob(levels).numpy().astype(np.float64))
    # By hand: level k covers [k - 0.5, k + 0.5] gray levels; the end levels absorb the tails.
    upper = _sigmoid((levels + 0.5 - 255 * loc) / (255 * scale))
    lower = _sigmoid((levels - 0.5 - 255 * loc) / (255 * scale))
    expected = np.where(levels == 255, 1.0, upper) - np.where(levels == 0, 0.0, lower)
    np.testing.assert_allclose(probs, expected, rtol=2e-4, atol=1e-7)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert levels[np.argmax(probs)] == round(255 * loc)


@pytest.mark.parametrize("loc,raw_scale", [(0.5, -4.0), (0.0, -2.0), (-0.3, -1.0), (0.95, -6.0),
                                           (1.4, 0.5), (0.2, -9.0)])
def test_closed_form_mean_is_within_half_a_level_of_the_exact_mean(loc, raw_scale):
    params = tf.tile(tf.constant([[[[loc, raw_scale]]]], tf.float32), [1, 28, 28, 1])
    pixel = likelihoods.distribution(params, "discretized_logistic", 1e-3).distribution
    levels = np.arange(256, dtype=np.float32)
    probs = np.exp(pixel[0, 0, 0, 0].log_prob(levels).numpy().astype(np.float64))
    exact = (probs * levels).sum() / probs.sum() / 255
    closed = likelihoods.mean(params, "discretized_logistic", 1e-3).numpy()[0, 0, 0, 0]
    assert abs(closed - exact) <= 0.5 / 255


def test_bernoulli_mean_and_log_prob():
    params = tf.fill([1, 28, 28, 1], 0.0)
    dist = likelihoods.distribution(params, "bernoulli", 1e-3)
    assert dist.log_prob(tf.ones([1, 28, 28, 1])).numpy()[0] == pytest.approx(784 * np.log(0.5))
    np.testing.assert_allclose(likelihoods.mean(params, "bernoulli", 1e-3).numpy(), 0.5)


def test_log_prob_gradients_are_finite_at_extremes():
    params = tf.Variable(tf.concat([tf.fill([2, 28, 28, 1], 8.0), tf.fill([2, 28, 28, 1], -30.0)],
                                   axis=-1))
    x = tf.concat([tf.zeros([1, 28, 28, 1]), tf.ones([1, 28, 28, 1])], axis=0)
    with tf.GradientTape() as tape:
        lp = likelihoods.distribution(params, "discretized_logistic", 1e-3).log_prob(
            likelihoods.target(x, "discretized_logistic"))
    grad = tape.gradient(lp, params)
    assert np.isfinite(lp.numpy()).all() and np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("loc", [-0.2, 0.0, 0.13, 0.5, 0.87, 1.0, 1.3])
@pytest.mark.parametrize("raw_scale", [-6.0, -2.0, 0.5])
def test_discretized_logistic_image_is_the_median_gray_level(loc, raw_scale):
    """At least half the probability is at or below the image's level, and at least half at or
    above it (to within one level: the image is continuous, the levels are whole)."""
    params = tf.constant([loc, raw_scale], tf.float32)[None, None, None, None, :] \
        * tf.ones([1, 28, 28, 1, 2])
    params = tf.reshape(params, [1, 28, 28, 2])
    level = likelihoods.image(params, "discretized_logistic", 1e-3).numpy()[0, 0, 0, 0] * 255
    pixel = likelihoods.distribution(params, "discretized_logistic", 1e-3).distribution
    levels = tf.range(256, dtype=tf.float32)[:, None, None, None, None]
    p = tf.exp(pixel.log_prob(levels)).numpy()[:, 0, 0, 0, 0]
    below = p[: int(np.floor(level)) + 2].sum()
    above = p[max(int(np.ceil(level)) - 1, 0):].sum()
    assert below >= 0.5 - 1e-4 and above >= 0.5 - 1e-4, (level, below, above)


def test_discretized_logistic_is_tfp_s_quantized_logistic_on_every_level():
    """DiscretizedLogistic's log_prob is that of TFP's QuantizedDistribution of the shifted
    logistic (what it replaced), on all 256 levels for a spread of locations and scales, and
    each pixel's probabilities sum to 1; it is nearer a float64 computation than the float32
    QuantizedDistribution."""
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(16, 28, 28, 2)) * [[0.8, 3.0]] + [[0.4, -3.0]]
    loc, scale = likelihoods._loc_scale(tf.constant(raw, tf.float32), 1e-3)
    mine = likelihoods.DiscretizedLogistic(loc, scale)
    levels = tf.range(256, dtype=tf.float32)[:, None, None, None, None]
    got = mine.log_prob(levels).numpy().astype(np.float64)

    def quantized(loc, scale, dtype):
        return tfd.QuantizedDistribution(tfd.Logistic(255 * loc - 0.5, 255 * scale),
                                         low=tf.constant(0.0, dtype), high=tf.constant(255.0, dtype))

    theirs = quantized(loc, scale, tf.float32).log_prob(levels).numpy().astype(np.float64)
    np.testing.assert_allclose(got, theirs, rtol=2e-4, atol=2e-5)
    loc64, scale64 = likelihoods._loc_scale(tf.constant(raw, tf.float64), 1e-3)
    exact = quantized(loc64, scale64, tf.float64).log_prob(tf.cast(levels, tf.float64)).numpy()
    assert np.abs(got - exact).mean() < np.abs(theirs - exact).mean()
    np.testing.assert_allclose(np.exp(got).sum(0), 1.0, atol=1e-5)
    # Slicing a batch member, and samples on whole levels whose mean is near the location.
    assert mine[0, 0, 0, 0].batch_shape == []
    one = likelihoods.DiscretizedLogistic(tf.fill([20_000], 0.3), tf.fill([20_000], 0.02))
    x = one.sample(seed=[4, 2]).numpy()
    assert set(np.unique(x % 1)) == {0.0} and abs(x.mean() - 0.3 * 255) < 0.2
    # validate_args refuses values that are not levels.
    checked = likelihoods.DiscretizedLogistic(0.3, 0.02, validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="whole gray levels in 0..255"):
        checked.log_prob(3.5)
