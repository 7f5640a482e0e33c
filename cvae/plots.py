"""Matplotlib (Agg backend) figures as PNG bytes: a labelled table of images."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def image_table(images: np.ndarray, rows: int, columns: int, row_names=None, column_names=None,
                title: str | None = None, scale: float = 0.6) -> bytes:
    """Images [rows * columns, 28, 28, 1] in [0, 1], row by row, as a labelled table."""
    fig, axes = plt.subplots(rows, columns, figsize=(columns * scale + 1.2, rows * scale + 0.4),
                             squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.04})
    for i in range(rows):
        for j in range(columns):
            ax = axes[i][j]
            ax.imshow(images[i * columns + j, ..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 and row_names is not None:
                ax.set_ylabel(row_names[i], rotation=0, ha="right", va="center", fontsize=8)
            if i == 0 and column_names is not None:
                ax.set_title(column_names[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return png(fig)
