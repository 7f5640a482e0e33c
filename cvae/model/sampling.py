"""Where generated images take their latent codes from: the prior, or each class's own regions.

The model is trained with the standard normal prior p(z) = N(0, I), and its ELBO and IWAE bound
are always of that prior. Generation may instead draw z from a mixture of Gaussians fitted, after
training, to each class's aggregate posterior q(z|y) = E_{x|y}[q(z|x, y)] over the training
images ("ex-post density estimation": Ghosh et al., 2020, "From Variational to Deterministic
Autoencoders"; related to the second stage of Dai & Wipf, 2019, "Diagnosing and Enhancing VAE
Models", which fits a second VAE to the codes). The KL term never makes q(z|y) exactly N(0, I),
and the decoder has only learnt to draw class y well where the training images of class y put
their codes: prior samples that land elsewhere come out as a blend of garments. Nor is q(z|y)
one Gaussian: a class's codes form clusters (kinds of T-shirt, of sandal), and one Gaussian
shrunk towards its centre draws from between them. A sample picks component k of its class with
the component's weight, then z = loc_yk + T * L_yk eps: a temperature T < 1 shrinks the spread
within each component (not the spread between components' centres), trading diversity for
typical garments. An unconditional model gets one mixture of all the training codes for every
label: the label says nothing to it, and per-class regions would bring the label back in
through z.

The fit (`fit_mixture`): EM for a full-covariance mixture of the posterior means (k-means++ and
k-means start from a fixed seed, a fixed number of iterations), then each component's
covariance gains the responsibility-weighted mean of the posterior variances of its codes, so
each component matches the moments of the posteriors it covers and the mixture as a whole those
of the class's posteriors: mean of the posterior means, covariance of the means (over n) plus
the mean posterior variance. With one component that is the whole fit. The encoder sees the
images as training showed them (binarised for the Bernoulli likelihood, with fixed draws). It
is deterministic (posterior means, no noise, seeded starts), so refitting a run gives the same
numbers; the training images only, never validation or test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from cvae.data import binarize_static, unit_images
from cvae.batches import batched
from cvae.labels import NUM_CLASSES

MIN_IMAGES_PER_CLASS = 2  # a covariance needs two codes
# The EM of `fit_mixture`: reg_covar is added to each component's covariance of the means (in
# the codes' units; the mean posterior variance added after it is thousands of times larger).
# A fixed number of EM iterations (no tolerance), so that a refit on codes equal to the last
# bits or so gives the same numbers (a stopping rule could stop one iteration apart).
EM_REG_COVAR = 1e-6
EM_ITERATIONS = 100


def check_fittable(labels: np.ndarray, components: int = 1, pooled: bool = False) -> None:
    """Raises ValueError naming the first class with too few training images for its mixture
    of `components` Gaussians (at least max(2, components)), or for `pooled` (one mixture of
    all the codes, an unconditional model's) too few images in all: checked before training,
    so a small `--limit` fails at once rather than at export."""
    need = max(MIN_IMAGES_PER_CLASS, components)
    if pooled:
        if len(labels) < need:
            raise ValueError(f"sampling='class_posterior' fits {components} Gaussian(s) to the "
                             f"training codes, but there are {len(labels)} training image(s) "
                             f"(at least {need} needed): use more images (--limit), fewer "
                             f"--sampling-components or --sampling prior")
        return
    counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES)
    for c, count in enumerate(counts[:NUM_CLASSES]):
        if count < need:
            raise ValueError(f"sampling='class_posterior' fits {components} Gaussian(s) to each "
                             f"class's training codes, but class {c} has {count} training "
                             f"image(s) (at least {need} needed): use more images (--limit), "
                             f"fewer --sampling-components or --sampling prior")


@dataclasses.dataclass(frozen=True)
class LatentSampler:
    """A mixture of K Gaussians for each class: component k of class y is drawn with
    probability weights[y, k], then z = loc[y, k] + temperature * scale_tril[y, k] @ eps for
    eps ~ N(0, I). float32 loc [10, K, d], scale_tril [10, K, d, d] (lower triangular), weights
    [10, K] (each row sums to 1; equal if not given). Given loc [10, d] and scale_tril
    [10, d, d] and no weights: one Gaussian per class (K = 1)."""

    loc: np.ndarray
    scale_tril: np.ndarray
    temperature: float
    weights: np.ndarray | None = None

    def __post_init__(self):
        # float32 like the model's codes (float64 variables would not meet float32 eps).
        loc, tril = np.asarray(self.loc, np.float32), np.asarray(self.scale_tril, np.float32)
        if self.weights is None and loc.ndim == 2 and tril.ndim == 3:
            loc, tril = loc[:, None], tril[:, None]
        weights = (np.full(loc.shape[:2], 1 / loc.shape[1], np.float32)
                   if self.weights is None and loc.ndim == 3
                   else np.asarray(self.weights, np.float32))
        for name, value in (("loc", loc), ("scale_tril", tril), ("weights", weights)):
            object.__setattr__(self, name, value)
        k, d = loc.shape[1:] if loc.ndim == 3 else (None, None)
        if (loc.shape != (NUM_CLASSES, k, d) or tril.shape != (NUM_CLASSES, k, d, d)
                or weights.shape != (NUM_CLASSES, k)):
            raise ValueError(f"sampler: loc {loc.shape}, scale_tril {tril.shape} and weights "
                             f"{weights.shape} must be [10, K, d], [10, K, d, d] and [10, K]")
        if not all(np.isfinite(a).all() for a in (loc, tril, weights)):
            raise ValueError("sampler: loc, scale_tril and weights must be finite")
        if (weights < 0).any() or not np.allclose(weights.sum(1), 1, atol=1e-5):
            raise ValueError("sampler: each class's weights must be >= 0 and sum to 1")
        if not self.temperature > 0:
            raise ValueError(f"sampler: temperature must be > 0, got {self.temperature}")

    @property
    def latent_dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def components(self) -> int:
        return self.loc.shape[1]

    def latents(self, labels: tf.Tensor, eps: tf.Tensor, u: tf.Tensor | None = None
                ) -> tf.Tensor:
        """float32 [B, d] latent codes for int labels [B] from standard normal eps [B, d] and
        uniform u [B] in [0, 1), which picks the component (needed when K > 1)."""
        if u is None:
            if self.components > 1:
                raise ValueError("sampler: a mixture needs u to pick each row's component")
            u = tf.zeros(tf.shape(labels), tf.float32)
        return latents(tf.constant(self.loc), tf.constant(self.scale_tril),
                       tf.constant(self.weights), self.temperature, labels, eps, u)


def latents(loc: tf.Tensor, scale_tril: tf.Tensor, weights: tf.Tensor, temperature: float,
            labels: tf.Tensor, eps: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """`LatentSampler.latents` on tensors (what the exported `serving_default` runs): row b
    takes component k of its class where cumsum(weights)[k - 1] <= u[b] < cumsum(weights)[k]
    (the weights' sum taken as exactly 1)."""
    cumulative = tf.math.cumsum(tf.gather(weights, labels), axis=-1)  # [B, K]
    # u is scaled by the row's total, so rounding in the float32 sum never lets u land past
    # the last boundary of weight: a component of weight 0 is never picked.
    scaled = u[:, None] * cumulative[:, -1:]
    component = tf.reduce_sum(tf.cast(cumulative[:, :-1] <= scaled, labels.dtype), axis=-1)
    index = tf.stack([labels, component], axis=-1)
    spread = tf.linalg.matvec(tf.gather_nd(scale_tril, index), eps)
    return tf.gather_nd(loc, index) + temperature * spread


def class_log_densities(z: tf.Tensor, loc: tf.Tensor, scale_tril: tf.Tensor,
                        weights: tf.Tensor) -> tf.Tensor:
    """log p(z | y = c) under every class c's mixture at temperature 1 (the density the mixture
    was fitted as, `fit_mixture`), float32 [B, 10] for z [B, d]: the prior of the generative
    model that ships (fitted prior, then the decoder), which `log_prior` exports for the
    likelihood bounds and classification. Every class at once: [B, 10, K, d] of work, a small
    fraction of one decoder call per row."""
    d = tf.cast(tf.shape(z)[-1], z.dtype)
    eye = tf.eye(tf.shape(scale_tril)[-1], batch_shape=tf.shape(scale_tril)[:2], dtype=z.dtype)
    inverse = tf.linalg.triangular_solve(scale_tril, eye, lower=True)  # [C, K, d, d]
    white = tf.einsum("ckij,bckj->bcki", inverse, z[:, None, None, :] - loc[None])
    log_normal = (-0.5 * tf.reduce_sum(tf.square(white), -1)
                  - tf.reduce_sum(tf.math.log(tf.linalg.diag_part(scale_tril)), -1)[None]
                  - 0.5 * d * tf.math.log(2.0 * np.pi))
    # A component of weight 0 contributes exp(-inf) = 0.
    return tf.reduce_logsumexp(log_normal + tf.math.log(weights)[None], axis=-1)


def standard_normal(latent_dim: int, temperature: float = 1.0) -> LatentSampler:
    """The prior (scaled by `temperature`) for every class."""
    return LatentSampler(np.zeros([NUM_CLASSES, latent_dim], np.float32),
                         np.tile(np.eye(latent_dim, dtype=np.float32), [NUM_CLASSES, 1, 1]),
                         temperature)


def _log_gaussians(points: np.ndarray, loc: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(points[n]; loc[k], cov[k]) as [N, K]."""
    out = np.empty([len(points), len(loc)])
    for k in range(len(loc)):
        chol = np.linalg.cholesky(cov[k])
        # [N, d] @ [d, d]: with the points as rows BLAS runs this at full speed, where a solve
        # against [d, N] ran many times slower for d = 64.
        white = (points - loc[k]) @ np.linalg.inv(chol).T
        out[:, k] = (-0.5 * (white ** 2).sum(1) - np.log(np.diag(chol)).sum()
                     - 0.5 * points.shape[1] * np.log(2 * np.pi))
    return out


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments [N] of k-means (Lloyd, 20 rounds) from k-means++ seeds."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = ((points[:, None] - np.stack(centres)[None]) ** 2).sum(-1).min(1)
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())] if d2.sum() > 0
                       else points[rng.integers(len(points))])
    centres = np.stack(centres)
    for _ in range(20):
        assign = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([points[assign == j].mean(0) if (assign == j).any() else centres[j]
                            for j in range(k)])
    return ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


def fit_mixture(means: np.ndarray, variances: np.ndarray, components: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loc [K, d], cov [K, d, d], weights [K]) of a mixture fitted to one class's codes: EM
    for a full-covariance Gaussian mixture of the posterior means [N, d] (started from k-means++
    and k-means, numpy.random.default_rng(seed)), then each component's covariance gains the
    mean posterior variance [N, d] of the codes it is responsible for. Each component thus
    matches the first two moments of the posteriors it covers (weighted by responsibility), and
    the mixture as a whole the mean and covariance of all N posteriors' mixture, whatever K
    (plus `EM_REG_COVAR`); K = 1 is that one Gaussian."""
    x = np.asarray(means, np.float64)
    n, d = x.shape
    resp = np.eye(components)[_kmeans_plus_plus(x, components, np.random.default_rng(seed))]

    def m_step(resp):
        counts = resp.sum(0) + 10 * np.finfo(np.float64).eps
        loc = resp.T @ x / counts[:, None]
        # w.T @ w of one array (BLAS's symmetric product), not (r * c).T @ c of two: the same
        # sum, many times faster for 64 dimensions.
        weighted = [(x - loc[k]) * np.sqrt(resp[:, k, None]) for k in range(components)]
        cov = np.stack([w.T @ w / counts[k] for k, w in enumerate(weighted)]) \
            + EM_REG_COVAR * np.eye(d)
        return loc, cov, counts / counts.sum(), counts

    loc, cov, weights, counts = m_step(resp)
    for _ in range(EM_ITERATIONS - 1):
        log_joint = _log_gaussians(x, loc, cov) + np.log(weights)  # E step
        top = log_joint.max(1, keepdims=True)
        log_total = top[:, 0] + np.log(np.exp(log_joint - top).sum(1))
        resp = np.exp(log_joint - log_total[:, None])
        loc, cov, weights, counts = m_step(resp)
    v = np.asarray(variances, np.float64)  # with the responsibilities that made loc and cov
    cov = cov + np.stack([np.diag(resp[:, k] @ v / counts[k]) for k in range(components)])
    return loc, cov, weights


def fit_class_mixtures(encode, images: np.ndarray, labels: np.ndarray, temperature: float,
                       components: int = 1, batch: int = 2500, pooled: bool = False
                       ) -> LatentSampler:
    """A mixture of `components` Gaussians fitted to each class's codes (`fit_mixture`).
    `encode(x=, labels=)` returns {"mean", "stddev"} (the model's `encode`); images float32
    [N, 28, 28, 1] in [0, 1], labels int [N] with at least max(2, components) images of every
    class. `pooled`: one mixture of all the codes for every class (for an unconditional model,
    to which the label says nothing). (With fewer images of a class than dimensions the
    covariance of the means is singular; the posterior variance added to it keeps it positive
    definite.)"""
    check_fittable(labels, components, pooled)
    posterior = batched(encode, {"x": np.asarray(images, np.float32),
                                 "labels": np.asarray(labels, np.int32)}, batch)
    means = posterior["mean"].astype(np.float64)
    variances = posterior["stddev"].astype(np.float64) ** 2
    fits = []
    for c in range(1 if pooled else NUM_CLASSES):
        mine = np.ones(len(labels), bool) if pooled else labels == c
        fits.append(fit_mixture(means[mine], variances[mine], components, seed=c))
    fits = fits * NUM_CLASSES if pooled else fits
    loc, cov, weights = (np.stack(parts) for parts in zip(*fits))
    return LatentSampler(loc, np.linalg.cholesky(cov), temperature, weights)


def for_model(model, config, images: np.ndarray | None, labels: np.ndarray | None
              ) -> LatentSampler:
    """The sampler a ModelConfig asks for (`sampling`, `temperature`), fitted with `model`'s
    encoder to the given training images (uint8 [N, 28, 28] or float [N, 28, 28, 1] in [0, 1])
    if it needs them."""
    if config.sampling == "prior":
        return standard_normal(config.latent_dim, config.temperature)
    if images is None:
        raise ValueError("sampler: sampling='class_posterior' needs the training images")
    x = unit_images(images) if images.ndim == 3 else images.astype(np.float32)
    if config.likelihood == "bernoulli":  # the encoder was trained on binary pixels
        x = (binarize_static(x).numpy() if config.binarization == "static" else
             (np.random.default_rng(0).random(x.shape, np.float32) < x).astype(np.float32))
    return fit_class_mixtures(model.encode, x, np.asarray(labels), config.temperature,
                              config.sampling_components, pooled=not config.conditional)
