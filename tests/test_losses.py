"""The negative ELBO's parts against closed forms, tfd.kl_divergence, and Monte Carlo."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cvae.model import losses

tfd = tfp.distributions


def _posterior(batch=5, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    mean = tf.constant(rng.normal(size=(batch, dim)), tf.float32)
    stddev = tf.constant(rng.uniform(0.2, 2.0, size=(batch, dim)), tf.float32)
    return mean, stddev


def test_kl_matches_tfp():
    mean, stddev = _posterior()
    q = tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)
    p = tfd.MultivariateNormalDiag(loc=tf.zeros(8))
    expected = tfd.kl_divergence(q, p).numpy()
    got = losses.kl_to_standard_normal(mean, stddev).numpy()
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kl_matches_monte_carlo():
    mean, stddev = _posterior(batch=2, dim=4, seed=1)
    q = tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)
    p = tfd.MultivariateNormalDiag(loc=tf.zeros(4))
    z = q.sample(200_000, seed=[7, 8])
    log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()
    estimate, stderr = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(len(log_ratio))
    analytic = losses.kl_to_standard_normal(mean, stddev).numpy()
    assert np.all(np.abs(estimate - analytic) < 4 * stderr)


def test_kl_is_zero_only_at_the_prior():
    assert losses.kl_to_standard_normal(tf.zeros([1, 3]), tf.ones([1, 3])).numpy()[0] == 0.0
    assert losses.kl_to_standard_normal(tf.fill([1, 3], 0.1), tf.ones([1, 3])).numpy()[0] > 0


def test_negative_elbo_parts():
    mean, stddev = _posterior()
    log_likelihood = tf.constant([-100.0, -200.0, -300.0, -400.0, -500.0])
    kl = losses.kl_to_standard_normal(mean, stddev).numpy().mean()
    for beta in (0.0, 0.5, 1.0):
        terms = {k: v.numpy() for k, v in losses.negative_elbo(log_likelihood, mean, stddev,
                                                               beta).items()}
        assert terms["recon"] == pytest.approx(300.0)
        assert terms["kl"] == pytest.approx(kl, rel=1e-6)
        assert terms["neg_elbo"] == pytest.approx(300.0 + kl, rel=1e-6)  # beta never changes it
        assert terms["loss"] == pytest.approx(300.0 + beta * kl, rel=1e-6)
