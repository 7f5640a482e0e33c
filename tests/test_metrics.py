"""The metric functions of `cvae.evaluation.metrics` on small hand-made inputs with known answers."""

import math

import numpy as np
import pytest

from cvae.evaluation import metrics as m
from cvae.model.losses import bits_per_dim


def test_log_mean_exp_matches_the_direct_formula_and_does_not_overflow():
    x = np.array([[0.0, math.log(3.0)], [1.0, 1.0]])
    np.testing.assert_allclose(m.log_mean_exp(x, axis=1), [math.log(2.0), 1.0])
    big = np.array([1000.0, 1000.0 + math.log(3.0)])
    assert m.log_mean_exp(big) == pytest.approx(1000.0 + math.log(2.0))


def test_mean_and_standard_error():
    mean, se = m.mean_and_standard_error(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def test_bits_per_dim_of_one_bit_per_pixel():
    assert bits_per_dim(784 * math.log(2)) == pytest.approx(1.0)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(m.frechet_distance(x, x)) < 1e-8


def test_frechet_distance_of_a_shift_is_the_squared_shift():
    x = np.random.default_rng(1).normal(size=(400, 3))
    shift = np.array([1.0, -2.0, 0.5])
    assert m.frechet_distance(x, x + shift) == pytest.approx(1 + 4 + 0.25, rel=1e-9)


def test_frechet_distance_of_a_scaled_set():
    # Covariances S and 4S: tr(S + 4S - 2 * 2S) = tr(S); centred, so the means agree.
    x = np.random.default_rng(2).normal(size=(300, 4))
    x -= x.mean(0)
    expected = np.trace(np.cov(x, rowvar=False))
    assert m.frechet_distance(x, 2 * x) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_grows_with_added_noise():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 6))
    noise = rng.normal(size=x.shape)
    distances = [m.frechet_distance(x, x + s * noise) for s in (0.0, 0.3, 1.0, 3.0)]
    assert distances[0] < 1e-8
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_frechet_distance_refuses_mismatched_features():
    with pytest.raises(ValueError, match="same d"):
        m.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_mean_pairwise_distance_of_known_points():
    assert m.mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    assert m.mean_pairwise_distance(square) == pytest.approx((4 + 2 * math.sqrt(2)) / 6)
    with pytest.raises(ValueError, match="at least 2"):
        m.mean_pairwise_distance(np.zeros((1, 2)))


def test_confusion_matrix_and_per_class_accuracy():
    true = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    c = m.confusion_matrix(true, predicted, 3)
    np.testing.assert_array_equal(c, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    np.testing.assert_allclose(m.per_class_accuracy(c), [0.5, 2 / 3, 1.0])


def test_expected_calibration_error_and_reliability_on_a_hand_made_case():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 1, 1])  # right at 0.9, wrong at 0.6, right at 0.8
    assert m.expected_calibration_error(p, labels, bins=10) == pytest.approx(
        (0.1 + 0.6 + 0.2) / 3)
    r = m.reliability(p, labels, bins=10)
    assert list(r["count"][[5, 7, 8]]) == [1, 1, 1] and r["count"].sum() == 3
    assert r["accuracy"][5] == 0 and r["accuracy"][8] == 1 and np.isnan(r["accuracy"][0])
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert m.expected_calibration_error(perfect, np.array([0, 1])) == 0


def test_auroc_is_the_probability_of_ranking_a_positive_above_a_negative():
    assert m.auroc([3, 4], [1, 2]) == 1 and m.auroc([1, 2], [3, 4]) == 0
    assert m.auroc([1, 1], [1, 1]) == 0.5  # ties count a half
    assert m.auroc([2, 0], [1]) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    pairs = (pos[:, None] > neg[None, :]).mean()
    assert m.auroc(pos, neg) == pytest.approx(pairs)
