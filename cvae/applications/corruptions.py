"""What the applications are measured on: masks, noise, and images that are not garments.

Plain numpy (and TensorFlow's image resizing for the digits), every draw from a seed, so
`pipelines.evaluate` measures the same inputs every time. Images are float32 [N, 28, 28, 1]
in [0, 1]; masks are float32 of the same shape, 1 where a pixel is known and 0 where missing.
"""

from __future__ import annotations

import os

import numpy as np

from cvae import options

# The masks `--mask` and the demo name (`cvae.options.MASK_NAMES`), and the one the evaluation
# adds; the name says what is missing.
MASKS = (*options.MASK_NAMES, "random")
RANDOM_MISSING = (0.5, 0.7)  # a "random" mask loses a fraction of pixels drawn from this range
CENTRE = slice(7, 21)  # the centre square: the middle 14 x 14 pixels


def mask(kind: str, n: int = 1, seed: int = 0) -> np.ndarray:
    """n masks of a kind in MASKS (1 = known, 0 = missing): half of the image (which half is
    in the name), the centre 14 x 14 square, or ("random") each pixel missing independently
    with a probability drawn for each image from RANDOM_MISSING."""
    out = np.ones([n, 28, 28, 1], np.float32)
    if kind == "bottom-half":
        out[:, 14:] = 0
    elif kind == "top-half":
        out[:, :14] = 0
    elif kind == "right-half":
        out[:, :, 14:] = 0
    elif kind == "left-half":
        out[:, :, :14] = 0
    elif kind == "centre":
        out[:, CENTRE, CENTRE] = 0
    elif kind == "random":
        rng = np.random.default_rng(seed)
        missing = rng.uniform(*RANDOM_MISSING, size=[n, 1, 1, 1])
        out = (rng.random([n, 28, 28, 1]) >= missing).astype(np.float32)
    else:
        raise ValueError(f"unknown mask {kind!r}: choose one of {', '.join(MASKS)}")
    return out


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """images + N(0, sigma^2) per pixel, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    noisy = images + sigma * rng.standard_normal(images.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def salt_and_pepper(images: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A `fraction` of the pixels, chosen at random, set to 0 or 1 (half each)."""
    rng = np.random.default_rng(seed)
    hit = rng.random(images.shape) < fraction
    value = (rng.random(images.shape) < 0.5).astype(np.float32)
    return np.where(hit, value, images).astype(np.float32)


NOISES = {"gaussian 0.1": lambda x, s: gaussian_noise(x, 0.1, s),
          "gaussian 0.2": lambda x, s: gaussian_noise(x, 0.2, s),
          "gaussian 0.3": lambda x, s: gaussian_noise(x, 0.3, s),
          "salt and pepper 0.1": lambda x, s: salt_and_pepper(x, 0.1, s)}


# ------------------------------------------------------------------ out-of-distribution images


def uniform_noise(n: int, seed: int = 0) -> np.ndarray:
    """Every pixel an independent uniform gray level 0..255."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, [n, 28, 28, 1]) / 255.0).astype(np.float32)


def constant(n: int, seed: int = 0) -> np.ndarray:
    """Images of one gray level each, uniform in 0..255 (black, blank images included)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, [n, 1, 1, 1]) / 255.0
    return np.broadcast_to(levels, [n, 28, 28, 1]).astype(np.float32)


def blank(n: int) -> np.ndarray:
    """All-black images: the background of every garment, with no garment."""
    return np.zeros([n, 28, 28, 1], np.float32)


def upside_down(images: np.ndarray) -> np.ndarray:
    """Garments turned upside down (rows reversed)."""
    return np.ascontiguousarray(images[:, ::-1])


DIGIT_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
               "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
               "DejaVuSansMono-Bold.ttf", "cmr10.ttf", "cmss10.ttf", "STIXGeneral.ttf")


def digits(n: int, seed: int = 0) -> np.ndarray:
    """n digits 0..9 drawn in MNIST's manner (white on black, scaled to fit 20 x 20 pixels,
    centred by the centre of mass in 28 x 28) from the fonts that matplotlib ships (DejaVu,
    Computer Modern, STIX), in random fonts, sizes, rotations up to 15 degrees and offsets of
    up to 2 pixels: digits that are not garments, without downloading a data set."""
    import matplotlib
    import tensorflow as tf
    from matplotlib.ft2font import FT2Font

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    fonts = [FT2Font(os.path.join(folder, name)) for name in DIGIT_FONTS]
    rng = np.random.default_rng(seed)
    out = np.zeros([n, 28, 28, 1], np.float32)
    for i in range(n):
        font = fonts[rng.integers(len(fonts))]
        font.set_size(48, 72)
        font.set_text(str(i % 10), float(rng.uniform(-15, 15)))
        font.draw_glyphs_to_bitmap()
        glyph = np.asarray(font.get_image(), np.float32) / 255.0
        rows, cols = np.flatnonzero(glyph.max(1) > 0), np.flatnonzero(glyph.max(0) > 0)
        glyph = glyph[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        box = int(rng.integers(16, 21))  # the digit's longer side, pixels
        scale = box / max(glyph.shape)
        size = [max(1, round(glyph.shape[0] * scale)), max(1, round(glyph.shape[1] * scale))]
        small = tf.image.resize(glyph[..., None], size, antialias=True).numpy()[..., 0]
        small = np.clip(small / max(small.max(), 1e-6), 0, 1)
        ys, xs = np.indices(small.shape)
        mass = small.sum()
        cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
        top = int(np.clip(round(14 - cy + rng.integers(-2, 3)), 0, 28 - size[0]))
        left = int(np.clip(round(14 - cx + rng.integers(-2, 3)), 0, 28 - size[1]))
        out[i, top:top + size[0], left:left + size[1], 0] = small
    return out


def out_of_distribution(test_images: np.ndarray, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The evaluation's images that are not garments, n of each kind (`test_images`, garments,
    for the upside-down ones)."""
    return {"uniform noise": uniform_noise(n, seed), "constant": constant(n, seed + 1),
            "blank": blank(n), "upside down": upside_down(test_images[:n]),
            "digits": digits(n, seed + 2)}
