"""Sample-quality and likelihood metrics on plain arrays (no model, no TensorFlow), so each can
be checked on small hand-made inputs with known answers (tests/test_metrics.py)."""

from __future__ import annotations

import numpy as np


def log_mean_exp(log_w: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(mean(exp(log_w))) along `axis`, without overflow."""
    log_w = np.asarray(log_w, dtype=np.float64)
    peak = np.max(log_w, axis=axis, keepdims=True)
    return np.squeeze(peak, axis) + np.log(np.mean(np.exp(log_w - peak), axis=axis))


def mean_and_standard_error(values: np.ndarray) -> tuple[float, float]:
    """The mean of per-image values and its standard error, std / sqrt(n)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets [n, d]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) (as FID, on any features)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [n, d] with the same d, got {a.shape} and "
                         f"{b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def mean_pairwise_distance(features: np.ndarray) -> float:
    """The mean Euclidean distance between all pairs of distinct rows of [n, d] (n >= 2): how
    spread out a set is."""
    x = np.asarray(features, np.float64)
    if len(x) < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 rows")
    sq = (x ** 2).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0, None)
    n = len(x)
    return float(np.sqrt(d2)[~np.eye(n, dtype=bool)].sum() / (n * (n - 1)))


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """int64 [classes, classes]: row = the label asked for (or true), column = the prediction."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (np.asarray(true), np.asarray(predicted)), 1)
    return m


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """The diagonal over the row sums: the fraction of each class predicted as itself."""
    return np.diag(confusion) / np.maximum(confusion.sum(1), 1)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = 15) -> float:
    """The expected calibration error (Guo et al. 2017): predictions binned by their confidence
    (the top probability) into `bins` equal-width bins, and the gap between each bin's accuracy
    and its mean confidence, weighted by the bin's share of the predictions."""
    p = np.asarray(probabilities, np.float64)
    confidence, correct = p.max(1), p.argmax(1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Per confidence bin (as `expected_calibration_error` bins): "confidence" (mean), "accuracy"
    and "count", float arrays [bins] (NaN for an empty bin): the reliability diagram's points."""
    p = np.asarray(probabilities, np.float64)
    confidence, correct = p.max(1), p.argmax(1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = {"confidence": np.full(bins, np.nan), "accuracy": np.full(bins, np.nan),
           "count": np.zeros(bins)}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["confidence"][b] = confidence[inside].mean()
            out["accuracy"][b] = correct[inside].mean()
            out["count"][b] = inside.sum()
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The area under the ROC curve of a score that should be higher on `positive` than on
    `negative`: P(score of a positive > score of a negative), ties counting a half (the
    Mann-Whitney U statistic over the product of the two sizes)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    values, inverse, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True,
                                        return_counts=True)
    below = np.cumsum(counts) - counts  # how many values lie below each distinct value
    ranks = below + (counts + 1) / 2  # 1-based ranks, averaged over ties
    u = ranks[inverse[:len(pos)]].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))
