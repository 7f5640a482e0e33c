"""The applications' pictures for `pipelines.evaluate`, as PNG bytes."""

from __future__ import annotations

import numpy as np

from cvae.evaluation.applications import FIGURE_SEEDS
from cvae.plots import image_table, plt, png


def inpainting(figure: dict) -> bytes:
    """One row per mask kind: the masked input (missing pixels gray), completions from three
    seeds, the original."""
    rows = [np.concatenate([m[np.newaxis], c, o[np.newaxis]])
            for m, c, o in zip(figure["masked"], figure["completions"], figure["original"])]
    return image_table(np.concatenate(rows), len(rows), FIGURE_SEEDS + 2,
                       row_names=figure["kinds"],
                       column_names=["masked"] + [f"seed {s}" for s in range(FIGURE_SEEDS)]
                       + ["original"], title="in-painting: the missing (gray) pixels filled in")


def denoising(figure: dict) -> bytes:
    """One row per noise kind: clean, noisy, 3x3 median, reconstruct, denoise."""
    return image_table(np.concatenate(figure["rows"]), len(figure["rows"]), 5,
                       row_names=figure["kinds"],
                       column_names=["clean", "noisy", "3x3 median", "reconstruct", "denoise"],
                       title="denoising a test garment")


def upscaling(figure: dict) -> bytes:
    """Rows of test garments at 14x14 and at 7x7: the low-resolution input (each pixel over its
    block), bicubic upsampling, `upscale`, the true 28x28 image."""
    return image_table(np.concatenate(figure["rows"]), len(figure["rows"]), 4,
                       row_names=figure["names"],
                       column_names=["input", "bicubic", "upscale", "truth"],
                       title="super-resolution: block means kept, detail drawn by the model")


def reliability(arrays: dict) -> bytes:
    """The reliability diagram of `classify` and of the project's classifier: accuracy against
    confidence per bin, the diagonal being perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="calibrated")
    for key, name in (("reliability", "classify (CVAE, Bayes' rule)"),
                      ("classifier_reliability", "the project's classifier")):
        r = arrays[key]
        shown = r["count"] > 0
        ax.plot(r["confidence"][shown], r["accuracy"][shown], "o-", ms=3, label=name)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("reliability on the test images", fontsize=9)
    return png(fig)


def score_histograms(values: dict) -> bytes:
    """Histograms of log p(x) and of the typicality score, test garments against each kind of
    image that is not a garment."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, score, title in ((axes[0], "log_likelihood", "log p(x), nats"),
                             (axes[1], "typicality", "typicality (log p(x) + PNG length), nats")):
        everything = np.concatenate([v[score] for v in values.values()])
        low, high = np.percentile(everything, [0.5, 99.5])
        bins = np.linspace(low, high, 60)
        for name, v in values.items():
            ax.hist(np.clip(v[score], low, high), bins=bins, histtype="step", label=name,
                    density=True, linewidth=1.5 if name == "test garments" else 1)
        ax.set_title(title, fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    return png(fig)
