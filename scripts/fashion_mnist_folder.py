"""Writes Fashion-MNIST training images as a folder of PNG files, the layout one's own images
come in (`cvae.data.folder`): with a metadata CSV (`file`, `label`, and with --colours a
`colour` column: each garment tinted one of six colours; with --derived the fields computed
from the image itself, `tone` and `fill`, `cvae.data.derived`), or in class sub-folders.

    python scripts/fashion_mnist_folder.py --out /tmp/fmnist --limit 50000 [--layout folders]
        [--colours | --derived]

A --derived folder trains with `python -m pipelines.train --images DIR --metadata
DIR/metadata.csv --continuous fill=0:1 --name NAME`, and `scripts/field_control.py` measures
the export's control of each field.

Then `python scripts/fashion_mnist_folder.py --out DIR --measure` times reading the folder
back through `cvae.data.folder.image_dataset` (images/s, the CPU printed), the figure to set
beside training's images/s (`python -m pipelines.benchmark`).
"""

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import limits  # noqa: E402

# Six tints a grey garment is multiplied by (its white becomes the colour).
COLOURS = {"red": (230, 40, 40), "orange": (240, 150, 30), "yellow": (230, 220, 40),
           "green": (40, 190, 60), "blue": (40, 80, 230), "purple": (150, 50, 200)}


def write(out: Path, limit: int, layout: str, colours: bool, seed: int,
          derived: bool = False) -> int:
    from PIL import Image

    from cvae.config import DataConfig
    from cvae.data import derived as derived_fields
    from cvae.data import load_splits
    from cvae.labels import CLASS_NAMES

    images, labels = load_splits(DataConfig(validation_size=1)).train
    # The tone's terciles from every training image, whatever --limit keeps.
    edges = derived_fields.tone_edges(images, labels)
    images, labels = images[:limit], labels[:limit]
    tones = derived_fields.tone(images, labels, edges)
    fills = derived_fields.fill(images)
    tints = np.random.default_rng(seed).integers(0, len(COLOURS), len(images))
    names = list(COLOURS)
    out.mkdir(parents=True)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = out / CLASS_NAMES[label].replace("/", "-") if layout == "folders" else out
        folder.mkdir(exist_ok=True)
        name = f"{i:05d}.png"
        if colours:
            rgb = (image[..., None].astype(np.float32) / 255
                   * np.array(COLOURS[names[tints[i]]], np.float32))
            Image.fromarray(rgb.round().astype(np.uint8), "RGB").save(folder / name)
        else:
            Image.fromarray(image, "L").save(folder / name)
        rows.append([name, CLASS_NAMES[label]] + ([names[tints[i]]] if colours else [])
                    + ([derived_fields.TONES[tones[i]], f"{fills[i]:.4f}"] if derived else []))
    if layout == "csv":
        with open(out / "metadata.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label"] + (["colour"] if colours else [])
                            + (["tone", "fill"] if derived else []))
            writer.writerows(rows)
    return len(rows)


def measure(out: Path, batch_size: int) -> None:
    from cvae.data.folder import image_dataset, read_catalogue

    csv_file = out / "metadata.csv"
    start = time.perf_counter()
    catalogue = read_catalogue(out, csv_file if csv_file.is_file() else None)
    checked = time.perf_counter() - start
    rows = np.arange(len(catalogue))
    for _ in image_dataset(catalogue, rows[:batch_size * 4], batch_size):
        pass  # warm-up: the pipeline's threads and the first files' pages
    start = time.perf_counter()
    count = sum(int(b[0].shape[0]) for b in image_dataset(catalogue, rows, batch_size))
    seconds = time.perf_counter() - start
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores")
    print(f"catalogue: {len(catalogue)} images {catalogue.shape} checked in {checked:.1f} s "
          f"({len(catalogue) / checked:.0f} images/s, every file decoded once)")
    print(f"read through tf.data: {count} images in {seconds:.1f} s = {count / seconds:.0f} "
          f"images/s at batch {batch_size}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the folder to write (must not exist)")
    parser.add_argument("--limit", type=int, default=limits.TRAIN_IMAGES - 1,
                        help=f"images to write, 1 to {limits.TRAIN_IMAGES - 1}")
    parser.add_argument("--layout", choices=("csv", "folders"), default="csv")
    parser.add_argument("--colours", action="store_true", help="tint each garment one of six "
                                                               "colours (a colour column)")
    parser.add_argument("--derived", action="store_true",
                        help="add the fields computed from the image (tone, fill; "
                             "cvae.data.derived)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tints")
    parser.add_argument("--measure", action="store_true",
                        help="time reading an existing folder back instead of writing one")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.measure:
        if not out.is_dir():
            parser.error(f"--out {out}: no such folder to measure")
        if not 1 <= args.batch_size <= 4096:
            parser.error(f"--batch-size must be 1 to 4096, got {args.batch_size}")
        measure(out, args.batch_size)
        return
    if not 1 <= args.limit <= limits.TRAIN_IMAGES - 1:
        parser.error(f"--limit must be 1 to {limits.TRAIN_IMAGES - 1}, got {args.limit}")
    if out.exists():
        parser.error(f"--out {out} already exists; give a new folder (nothing was written)")
    if args.derived and args.layout != "csv":
        parser.error("--derived needs --layout csv (the fields go in the CSV)")
    count = write(out, args.limit, args.layout, args.colours, args.seed, args.derived)
    print(f"wrote {count} PNG files to {out}"
          + (" with metadata.csv" if args.layout == "csv" else " in class sub-folders"))


if __name__ == "__main__":
    main()
