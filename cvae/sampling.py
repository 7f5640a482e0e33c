"""Where generated images take their latent codes from: the prior, or each class's own region.

The model is trained with the standard normal prior p(z) = N(0, I), and its ELBO and IWAE bound
are always of that prior. Generation may instead draw z from a Gaussian fitted, after
training, to each class's aggregate posterior q(z|y) = E_{x|y}[q(z|x, y)] over the training
images ("ex-post density estimation": Ghosh et al., 2020, "From Variational to Deterministic
Autoencoders"; related to the second stage of Dai & Wipf, 2019, "Diagnosing and Enhancing VAE
Models", which fits a second VAE to the codes). The KL term never
makes q(z|y) exactly N(0, I), and the decoder has only learnt to draw class y well where the
training images of class y put their codes: prior samples that land elsewhere come out as a
blend of garments. Sampling from the fitted Gaussians avoids those regions. A temperature T < 1
scales the spread about each class's centre (z = loc_y + T * L_y eps), trading diversity for
typical garments. An unconditional model gets one Gaussian of all the training codes for
every label: the label says nothing to it, and per-class regions would bring the label back in
through z.

The fit matches the moments of the mixture of the training images' posteriors: loc_y = mean of
the posterior means; cov_y = covariance of the posterior means (the sample estimate, over
n - 1) + mean of the posterior variances; L_y its Cholesky factor. The encoder sees the images
as training showed them (binarised for the Bernoulli likelihood, with fixed draws). It is
deterministic (posterior means, no noise), so refitting a run gives the same numbers; the
training images only, never validation or test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from cvae.data import binarize_static
from cvae.generate import batched
from cvae.labels import NUM_CLASSES

MIN_IMAGES_PER_CLASS = 2  # a covariance needs two codes


def check_fittable(labels: np.ndarray) -> None:
    """Raises ValueError naming the first class with too few training images for its Gaussian:
    checked before training, so a small `--limit` fails at once rather than at export."""
    counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES)
    for c, count in enumerate(counts[:NUM_CLASSES]):
        if count < MIN_IMAGES_PER_CLASS:
            raise ValueError(f"sampling='class_posterior' fits a Gaussian to each class's "
                             f"training codes, but class {c} has {count} training image(s) (at "
                             f"least {MIN_IMAGES_PER_CLASS} needed): use more images (--limit) "
                             f"or --sampling prior")


@dataclasses.dataclass(frozen=True)
class LatentSampler:
    """z = loc[y] + temperature * scale_tril[y] @ eps for eps ~ N(0, I): float32 loc [10, d] and
    scale_tril [10, d, d] (lower triangular)."""

    loc: np.ndarray
    scale_tril: np.ndarray
    temperature: float

    def __post_init__(self):
        # float32 like the model's codes (float64 variables would not meet float32 eps).
        object.__setattr__(self, "loc", np.asarray(self.loc, np.float32))
        object.__setattr__(self, "scale_tril", np.asarray(self.scale_tril, np.float32))
        d = self.loc.shape[-1]
        if self.loc.shape != (NUM_CLASSES, d) or self.scale_tril.shape != (NUM_CLASSES, d, d):
            raise ValueError(f"sampler: loc {self.loc.shape} and scale_tril "
                             f"{self.scale_tril.shape} must be [10, d] and [10, d, d]")
        if not (np.isfinite(self.loc).all() and np.isfinite(self.scale_tril).all()):
            raise ValueError("sampler: loc and scale_tril must be finite")
        if not self.temperature > 0:
            raise ValueError(f"sampler: temperature must be > 0, got {self.temperature}")

    @property
    def latent_dim(self) -> int:
        return self.loc.shape[-1]

    def latents(self, labels: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        """float32 [B, d] latent codes for int labels [B] from standard normal eps [B, d]."""
        return latents(tf.constant(self.loc), tf.constant(self.scale_tril), self.temperature,
                       labels, eps)


def latents(loc: tf.Tensor, scale_tril: tf.Tensor, temperature: float, labels: tf.Tensor,
            eps: tf.Tensor) -> tf.Tensor:
    """`LatentSampler.latents` on tensors (what the exported `serving_default` runs)."""
    spread = tf.linalg.matvec(tf.gather(scale_tril, labels), eps)
    return tf.gather(loc, labels) + temperature * spread


def standard_normal(latent_dim: int, temperature: float = 1.0) -> LatentSampler:
    """The prior (scaled by `temperature`) for every class."""
    return LatentSampler(np.zeros([NUM_CLASSES, latent_dim], np.float32),
                         np.tile(np.eye(latent_dim, dtype=np.float32), [NUM_CLASSES, 1, 1]),
                         temperature)


def fit_class_gaussians(encode, images: np.ndarray, labels: np.ndarray, temperature: float,
                        batch: int = 2500, pooled: bool = False) -> LatentSampler:
    """The moment-matched Gaussian of each class's aggregate posterior. `encode(x=, labels=)`
    returns {"mean", "stddev"} (the model's `encode`); images float32 [N, 28, 28, 1] in [0, 1],
    labels int [N] with at least two images of every class. `pooled`: one Gaussian of all the
    codes for every class (for an unconditional model, to which the label says nothing).
    (With fewer images of a class than dimensions the covariance of the means is singular; the
    mean posterior variance added to it keeps it positive definite.)"""
    if not pooled:
        check_fittable(labels)
    posterior = batched(encode, {"x": np.asarray(images, np.float32),
                                 "labels": np.asarray(labels, np.int32)}, batch)
    means = posterior["mean"].astype(np.float64)
    variances = posterior["stddev"].astype(np.float64) ** 2
    locs, trils = [], []
    for c in range(NUM_CLASSES):
        mine = np.ones(len(labels), bool) if pooled else labels == c
        cov = np.cov(means[mine], rowvar=False) + np.diag(variances[mine].mean(0))
        locs.append(means[mine].mean(0))
        trils.append(np.linalg.cholesky(cov))
    return LatentSampler(np.stack(locs).astype(np.float32), np.stack(trils).astype(np.float32),
                         temperature)


def for_model(model, config, images: np.ndarray | None, labels: np.ndarray | None
              ) -> LatentSampler:
    """The sampler a ModelConfig asks for (`sampling`, `temperature`), fitted with `model`'s
    encoder to the given training images (uint8 [N, 28, 28] or float [N, 28, 28, 1] in [0, 1])
    if it needs them."""
    if config.sampling == "prior":
        return standard_normal(config.latent_dim, config.temperature)
    if images is None:
        raise ValueError("sampler: sampling='class_posterior' needs the training images")
    x = images.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None] / 255.0
    if config.likelihood == "bernoulli":  # the encoder was trained on binary pixels
        x = (binarize_static(x).numpy() if config.binarization == "static" else
             (np.random.default_rng(0).random(x.shape, np.float32) < x).astype(np.float32))
    return fit_class_gaussians(model.encode, x, np.asarray(labels), config.temperature,
                               pooled=not config.conditional)
