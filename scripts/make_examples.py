"""Writes the example inputs the docs' commands read, docs/examples/*.png, from the Fashion-MNIST
test set: 8-bit grayscale PNGs (28x28 unless named otherwise), a white garment on black.

    python scripts/make_examples.py [--data-dir DIR] [--out docs/examples]

ankle-boot.png and pullover.png are test images 0 and 1; shirt.png and dress.png the first test
Shirt and Dress; noisy-dress.png that dress with Gaussian noise of standard deviation 0.2 (seed
0, as the evaluation's denoising measures); sides-mask.png a mask (white: known, black: missing)
whose 7 columns on either side are missing; dress-14x14.png and dress-7x7.png that dress at half
and a quarter of its size, each pixel the mean of a 2x2 or 4x4 block rounded to a gray level
(the inputs of `upscale`). Each run writes the same pixels.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cvae import cli  # noqa: E402 (the project, from the checkout)

cli.quiet_libraries()  # TensorFlow's start-up lines off stderr, as the commands keep them

NOISE_SIGMA = 0.2
SIDE_COLUMNS = 7


def examples(images, labels) -> dict[str, "np.ndarray"]:
    """The example images by file name, uint8 [28, 28, 1], from the test split's uint8 images
    [N, 28, 28] and labels [N]."""
    import numpy as np

    from cvae.applications import corruptions
    from cvae.labels import CLASS_NAMES

    def first(name: str) -> np.ndarray:
        return images[np.flatnonzero(labels == CLASS_NAMES.index(name))[0]]

    dress = first("Dress")[..., np.newaxis]
    noisy = corruptions.gaussian_noise(dress[np.newaxis] / 255.0, NOISE_SIGMA, seed=0)[0]
    mask = np.full([28, 28, 1], 255, np.uint8)
    mask[:, :SIDE_COLUMNS] = mask[:, 28 - SIDE_COLUMNS:] = 0
    return {"ankle-boot.png": images[0][..., np.newaxis],  # test image 0 is an ankle boot
            "pullover.png": images[1][..., np.newaxis],  # and 1 a pullover
            "shirt.png": first("Shirt")[..., np.newaxis],
            "dress.png": dress,
            "noisy-dress.png": np.round(noisy * 255).astype(np.uint8),
            "sides-mask.png": mask,
            **{f"dress-{28 // f}x{28 // f}.png": _block_means(dress, f) for f in (2, 4)}}


def _block_means(image, factor: int):
    """uint8 [28, 28, 1] as uint8 [28 / f, 28 / f, 1]: each f x f block's mean, rounded."""
    import numpy as np

    side = 28 // factor
    means = image.reshape(side, factor, side, factor, 1).mean((1, 3))
    return np.round(means).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder of the IDX files (default: searched)")
    parser.add_argument("--out", default="docs/examples", help="folder to write")
    args = parser.parse_args(argv)
    from cvae import images as pngs
    from cvae.data import read_idx_split, resolve_source
    from cvae.files import write_files

    source = resolve_source(args.data_dir, "idx")
    images, labels = read_idx_split(source.path, "test")
    files = {os.path.join(args.out, name): pngs.png_bytes(image)
             for name, image in examples(images, labels).items()}
    write_files(files)
    print(f"wrote {', '.join(sorted(files))} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
