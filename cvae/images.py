"""Image grids and PNG files (TensorFlow ops only, so the generation path needs nothing else)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from cvae.errors import op_error_text
from cvae.files import atomic_write_bytes


def grid(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tiles float images [N, h, w, C] in [0, 1] (28x28x1 for Fashion-MNIST) row by row into
    one uint8 image [H, W, C] with `pad` black pixels between tiles; missing tiles at the end
    stay black."""
    if columns < 1:
        raise ValueError(f"a grid needs at least 1 column, got {columns}")
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape[:3]
    channels = images.shape[3] if images.ndim == 4 else 1
    rows = -(-n // columns)
    out = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad, channels), np.uint8)
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8).reshape(
        n, h, w, channels)
    for i in range(n):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + c * (w + pad): pad + c * (w + pad) + w] = pixels[i]
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 [H, W, 1] image encoded as PNG."""
    return tf.io.encode_png(image).numpy()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a uint8 [H, W, 1] image as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image))


class ImageError(ValueError):
    """An input image is not a 28x28 grayscale PNG; the message says what it is instead."""


def read_png_28x28(path: str | os.PathLike) -> np.ndarray:
    """Reads a 28x28 8-bit grayscale PNG as float32 [28, 28, 1] in [0, 1] (white garment on
    black, like Fashion-MNIST); anything else raises ImageError naming the file and problem."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    return decode_png_28x28(data, str(path))


def read_low_res_png(path: str | os.PathLike) -> np.ndarray:
    """Reads a 14x14 or 7x7 8-bit grayscale PNG (a garment for `upscale`) as float32
    [S, S, 1] in [0, 1]; anything else raises ImageError naming the file and the problem."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    return decode_png_28x28(data, str(path), sides=LOW_RES_SIDES)


LOW_RES_SIDES = (14, 7)  # what `upscale` takes: 28 / 2 and 28 / 4


def decode_png_28x28(data: bytes, name: str, sides=(28,)) -> np.ndarray:
    """`read_png_28x28` for the bytes of a file called `name` (the name is only for messages);
    `sides`: the square sizes taken (`read_low_res_png`'s 14 and 7)."""
    # The IHDR chunk comes first: 8-byte signature, length, "IHDR", width, height, depth, colour.
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ImageError(f"{name}: not a PNG file")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    if colour != 0:
        kind = {2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}.get(colour, str(colour))
        raise ImageError(f"{name}: is a {kind} PNG; expected 8-bit grayscale")
    if depth != 8:
        raise ImageError(f"{name}: has {depth}-bit pixels; expected 8-bit grayscale")
    if width != height or width not in sides:
        wanted = " or ".join(f"{side}x{side}" for side in sides)
        raise ImageError(f"{name}: is {width}x{height}; expected {wanted}")
    try:
        image = tf.io.decode_png(data, channels=1)
    except tf.errors.InvalidArgumentError as e:
        raise ImageError(f"{name}: corrupt PNG ({op_error_text(e.message)})") from None
    return image.numpy().astype(np.float32) / 255.0
