"""Generates garments by label from an exported SavedModel (needs no training code).

    python -m pipelines.generate --model saved_models/cvae --label Sneaker --num 16 --seed 0 \
        --out sneakers.png [--npy sneakers.npy] [--version N]
    python -m pipelines.generate --model saved_models/cvae --restyle shirt.png --from Shirt \
        --to Dress --out dress.png

This file is intentionally short: the logic is in `cvae.generate`.
"""

import argparse
import math
import sys

from cvae import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int, help="version to load (default: the highest)")
    parser.add_argument("--label", help="class name (case-insensitive) or id 0..9")
    parser.add_argument("--num", type=int, default=16, help="how many images")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same images")
    parser.add_argument("--columns", type=int, help="grid columns (default: about sqrt(num))")
    parser.add_argument("--restyle", metavar="IMAGE.png",
                        help="a 28x28 8-bit grayscale PNG (white garment on black) to redraw")
    parser.add_argument("--from", dest="from_label", help="class of the --restyle image")
    parser.add_argument("--to", dest="to_label", help="class to draw the --restyle image as")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--npy", help="also save the float32 images [N, 28, 28, 1] here")
    args = parser.parse_args(argv)
    if args.restyle:
        if args.from_label is None or args.to_label is None:
            parser.error("--restyle needs --from and --to")
    elif args.label is None:
        parser.error("give --label (or --restyle with --from and --to)")
    cli.check_grid_arguments(parser, args)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np

    from cvae import generate, images
    from cvae.files import write_files

    model = generate.load(args.model, args.version)
    if args.restyle:
        source = images.read_png_28x28(args.restyle)
        ids = model.label_id(args.from_label), model.label_id(args.to_label)
        out = generate.restyle(model, source[np.newaxis], [ids[0]], [ids[1]])
        tiles, columns = np.concatenate([source[np.newaxis], out]), 2  # input | restyled
        what = f"{args.restyle} ({model.class_names[ids[0]]}) as {model.class_names[ids[1]]}"
    else:
        label = model.label_id(args.label)
        out = generate.generate(model, [label] * args.num, generate.seeds_for(args.seed, args.num))
        out = out["images"]
        tiles, columns = out, args.columns or math.ceil(math.sqrt(args.num))
        what = f"{args.num} x {model.class_names[label]} (seed {args.seed})"
    files = {args.out: images.png_bytes(images.grid(tiles, columns))}
    if args.npy:
        import io

        buffer = io.BytesIO()
        np.save(buffer, out)
        files[args.npy] = buffer.getvalue()
    write_files(files)  # both or neither
    print(f"wrote {args.out}: {what}, model {model.path}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
