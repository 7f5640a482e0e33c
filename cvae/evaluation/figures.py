"""The pictures of `pipelines.evaluate`, as PNG bytes (written atomically by the caller).

Image figures come from the exported model's signatures; plots use matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from cvae.labels import NUM_CLASSES
from cvae.plots import image_table, plt, png
from cvae.serving.generate import ServedModel, class_grid, generate  # noqa: F401 (class_grid: the report's)


def one_per_class(labels: np.ndarray, nth: int = 0) -> np.ndarray:
    """Indices of the nth image of each class 0..9, in class order."""
    return np.array([np.flatnonzero(labels == c)[nth] for c in range(NUM_CLASSES)])


def most_detailed_per_class(images: np.ndarray, labels: np.ndarray, among: int = 500
                            ) -> np.ndarray:
    """Indices [10]: per class, the test image (of its first `among`) with the most detail,
    measured as the mean squared difference between neighbouring pixels (prints, checks,
    straps and lettering score high; plain garments low)."""
    x = images[..., 0].astype(np.float64)
    detail = (np.diff(x, axis=1) ** 2).mean((1, 2)) + (np.diff(x, axis=2) ** 2).mean((1, 2))
    return np.array([np.flatnonzero(labels == c)[:among][
        np.argmax(detail[np.flatnonzero(labels == c)[:among]])] for c in range(NUM_CLASSES)])


def reconstructions(model: ServedModel, images: np.ndarray, labels: np.ndarray) -> bytes:
    """For each class its first test image and its most detailed one (print, texture, straps:
    `most_detailed_per_class`), each above its reconstruction (the `reconstruct` signature's:
    the refined code, or the posterior mean, decoded)."""
    rows = []
    for pick in (one_per_class(labels, 0), most_detailed_per_class(images, labels)):
        out = model.signatures["reconstruct"](images=tf.constant(images[pick]),
                                              label=tf.constant(labels[pick]))["images"].numpy()
        rows += [images[pick], out]
    return image_table(np.concatenate(rows), 4, NUM_CLASSES,
                       row_names=["test", "reconstructed", "detailed test", "reconstructed"],
                       column_names=model.class_names,
                       title="reconstructions of unseen test images")


def interpolations(model: ServedModel, images: np.ndarray, labels: np.ndarray,
                   classes=(0, 1, 3, 5, 7, 9), steps: int = 8) -> bytes:
    """For each class: two of its test images (ends), and the decoded straight line between
    their posterior means."""
    rows = []
    for c in classes:
        a, b = np.flatnonzero(labels == c)[:2]
        pair = images[[a, b]]
        label = np.full([2], c, np.int32)
        mean = model.signatures["encode"](images=tf.constant(pair),
                                          label=tf.constant(label))["mean"].numpy()
        t = np.linspace(0, 1, steps)[:, None]
        z = ((1 - t) * mean[0] + t * mean[1]).astype(np.float32)
        decoded = model.signatures["decode"](z=tf.constant(z), label=tf.constant(
            np.full([steps], c, np.int32)))["images"].numpy()
        rows.append(np.concatenate([pair[:1], decoded, pair[1:]]))
    return image_table(np.concatenate(rows), len(classes), steps + 2,
                       row_names=[model.class_names[c] for c in classes],
                       column_names=["test A"] + [""] * steps + ["test B"],
                       title="interpolation between two test images of one class")


def restyle(model: ServedModel, images: np.ndarray, labels: np.ndarray) -> bytes:
    """Columns: one test garment of each class (top row); rows: each redrawn as every class,
    its latent code (posterior mean under its own label) held fixed."""
    pick = one_per_class(labels, 2)
    sources, source_labels = images[pick], labels[pick]
    n = len(pick)
    rows = [sources]
    for target in range(NUM_CLASSES):
        rows.append(model.signatures["restyle"](
            images=tf.constant(sources), label=tf.constant(source_labels),
            target_label=tf.constant(np.full([n], target, np.int32)))["images"].numpy())
    return image_table(np.concatenate(rows), NUM_CLASSES + 1, n,
                       row_names=["test image"] + [f"as {c}" for c in model.class_names],
                       title="restyle: each column's latent code drawn as every class")


def manifold(model: ServedModel, classes=(0, 7, 8), size: int = 12) -> bytes:
    """A 2-D latent space decoded over a grid of z at the normal quantiles 0.05..0.95, one
    panel per class (an unconditional model ignores the class)."""
    from statistics import NormalDist

    if model.config["model"]["latent_dim"] != 2:
        raise ValueError(f"{model.path}: the manifold needs latent_dim 2, not "
                         f"{model.config['model']['latent_dim']}")
    q = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, size)], np.float32)
    # Row r (top first) has z2 = q[size - 1 - r]; column c has z1 = q[c].
    z = np.array([(q[c], q[size - 1 - r]) for r in range(size) for c in range(size)], np.float32)
    conditional = model.config["model"].get("conditional", True)
    classes = classes if conditional else (0,)
    fig, axes = plt.subplots(1, len(classes), figsize=(4 * len(classes), 4.3), squeeze=False)
    for ax, c in zip(axes[0], classes):
        out = model.signatures["decode"](z=tf.constant(z), label=tf.constant(
            np.full([len(z)], c, np.int32)))["images"].numpy()
        tiles = out.reshape(size, size, 28, 28).transpose(0, 2, 1, 3).reshape(size * 28,
                                                                             size * 28)
        ax.imshow(tiles, cmap="gray", vmin=0, vmax=1,
                  extent=[q[0], q[-1], q[0], q[-1]])
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        ax.set_title(model.class_names[c] if conditional else "unconditional", fontsize=9)
    fig.suptitle(f"2-D latent manifold of {model.path}", fontsize=9)
    return png(fig)


def latent_scatter(model: ServedModel, images: np.ndarray, labels: np.ndarray) -> bytes:
    """The test set's posterior means (2-D latent model), coloured by class."""
    from cvae.evaluation.evaluate import encode

    means = encode(model, images, labels)["mean"]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10")
    for c in range(NUM_CLASSES):
        pts = means[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color=cmap(c),
                   label=model.class_names[c])
    ax.legend(markerscale=5, fontsize=7, loc="upper right")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(f"test images' posterior means, {model.path}", fontsize=9)
    return png(fig)


def confusion(matrix: np.ndarray, class_names: list[str], title: str) -> bytes:
    """Rows: the class asked for; columns: the classifier's verdict; cells: fractions."""
    fractions = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if matrix[i, j]:
                ax.text(j, i, f"{fractions[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("classifier's verdict")
    ax.set_ylabel("label asked for")
    ax.set_title(title, fontsize=9)
    return png(fig)


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the TensorBoard event files under `log_dir`."""
    scalars: dict[str, list] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.string_val:
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                scalars.setdefault(value.tag, []).append((int(event.step), number))
    return scalars


def training_curves(logs: Path) -> bytes:
    """Negative ELBO, reconstruction and KL per epoch, train and validation, read from the
    TensorBoard logs (<logs>/train, <logs>/validation)."""
    series = {split: read_scalars(logs / split) for split in ("train", "validation")}
    panels = [("epoch_neg_elbo", "negative ELBO (nats/image)"),
              ("epoch_recon", "reconstruction (nats/image)"), ("epoch_kl", "KL (nats/image)")]
    if not any(tag in s for s in series.values() for tag, _ in panels):
        raise ValueError(f"{logs}: no epoch_neg_elbo / epoch_recon / epoch_kl scalars in the "
                         f"TensorBoard logs")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (tag, title) in zip(axes, panels):
        for split, style in (("train", "-"), ("validation", "--")):
            points = sorted(dict(series[split].get(tag, [])).items())
            if points:
                ax.plot([p[0] + 1 for p in points], [p[1] for p in points], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    return png(fig)
