"""Generates garments by label from an exported SavedModel (needs no training code).

    python -m pipelines.generate --model saved_models/cvae --label Sneaker --num 16 --seed 0 \
        --out sneakers.png [--npy sneakers.npy] [--version N]
    python -m pipelines.generate --label Sneaker --num 60000 --npy sneakers.npy   # streamed
    python -m pipelines.generate --model saved_models/cvae --restyle docs/examples/shirt.png \
        --from Shirt --to Dress --out dress.png
    python -m pipelines.generate --inpaint docs/examples/dress.png --mask bottom-half \
        --label Dress --num 3 --out completed.png   # --mask MASK.png or cvae.options.MASK_NAMES
    python -m pipelines.generate --denoise docs/examples/noisy-dress.png --label Dress \
        --out clean.png
    python -m pipelines.generate --upscale docs/examples/small-dress.png [--label Dress] \
        --num 3 --out upscaled.png   # a 14x14 or 7x7 PNG; without --label the model's choice

The example inputs under docs/examples/ are Fashion-MNIST test images
(`python scripts/make_examples.py` makes them again).

Without --version it loads the newest version under --model, as TF Serving serves; the version
the project ships is the one saved_models/cvae/SHIPPED names (`make train` exports newer ones).
This file is intentionally short: the logic is in `cvae.serving.generate`.
"""

import argparse
import sys

from cvae import cli, limits, options

DEFAULT_NUM = 16


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int,
                        help="version to load (default: the newest, which after `make train` is "
                             "newer than the shipped one that MODEL/SHIPPED names)")
    parser.add_argument("--label", help="class name (case-insensitive) or id 0..9")
    parser.add_argument("--num", type=int,
                        help=f"how many images (default: {DEFAULT_NUM}): at most "
                             f"{limits.MAX_IMAGES}, and at most {limits.MAX_GRID_IMAGES} with "
                             f"--out, {limits.MAX_REQUEST_IMAGES} with --inpaint or --upscale")
    parser.add_argument("--seed", type=int,
                        help=f"same seed, same images: 0..{options.MAX_SEED} (default: 0)")
    parser.add_argument("--columns", type=int, help="grid columns (default: about sqrt(num))")
    parser.add_argument("--restyle", metavar="IMAGE.png",
                        help="a 28x28 8-bit grayscale PNG (white garment on black) to redraw")
    parser.add_argument("--from", dest="from_label", help="class of the --restyle image")
    parser.add_argument("--to", dest="to_label", help="class to draw the --restyle image as")
    parser.add_argument("--inpaint", metavar="IMAGE.png",
                        help="a 28x28 8-bit grayscale PNG whose --mask pixels are to be filled "
                             "in: --num completions as --label, from --seed")
    parser.add_argument("--mask", help=f"with --inpaint: {', '.join(options.MASK_NAMES)} (what "
                                       f"is missing), or a 28x28 PNG, white where the pixel is "
                                       f"known and black where it is missing")
    parser.add_argument("--denoise", metavar="IMAGE.png",
                        help="a noisy 28x28 8-bit grayscale PNG of a --label garment to clean")
    parser.add_argument("--upscale", metavar="IMAGE.png",
                        help="a 14x14 or 7x7 8-bit grayscale PNG drawn at 28x28, its block "
                             "means kept: the input (each pixel over its block), then --num "
                             "completions from --seed, as --label (default: the model's "
                             "choice)")
    parser.add_argument("--out", metavar="FILE.png", help="PNG grid to write")
    parser.add_argument("--npy", metavar="FILE.npy",
                        help=f"save the float32 images [N, 28, 28, 1] here (alone, without "
                             f"--out: written {limits.GENERATE_BATCH} images at a time, "
                             f"whatever --num)")
    args = parser.parse_args(argv)
    if sum(bool(a) for a in (args.restyle, args.inpaint, args.denoise, args.upscale)) > 1:
        parser.error("give one of --restyle, --inpaint, --denoise and --upscale")
    if args.inpaint:
        if args.mask is None or args.label is None:
            parser.error("--inpaint needs --mask and --label")
        cli.check_mask(parser, args.mask)
    elif args.mask is not None:
        parser.error("--mask goes with --inpaint")
    if args.restyle:
        if args.from_label is None or args.to_label is None:
            parser.error("--restyle needs --from and --to")
        cli.refuse_ignored_flags(parser, args, "--restyle")
    elif args.label is None and not args.upscale:  # upscale without a label: the model's choice
        parser.error("give --label (or --restyle with --from and --to)")
    if args.denoise:
        cli.refuse_ignored_flags(parser, args, "--denoise")
    args.num = DEFAULT_NUM if args.num is None else args.num
    args.seed = 0 if args.seed is None else args.seed
    cli.check_grid_arguments(parser, args, limits.MAX_IMAGES)
    if args.inpaint or args.upscale:  # the completions are one request
        cli.check_count(parser, "--num", args.num, limits.MAX_REQUEST_IMAGES)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # Before TensorFlow loads: a typo in a label, a file or the model's path fails at once.
    from cvae.labels import CLASS_NAMES, parse_label

    mask_file = args.mask if args.mask not in options.MASK_NAMES else None
    cli.check_inputs(args.restyle, args.inpaint, mask_file, args.denoise, args.upscale)
    names = options.class_names(options.resolve_version(args.model, args.version)) or CLASS_NAMES
    for label in (args.label, args.from_label, args.to_label):
        if label is not None:
            parse_label(label, names)
    import numpy as np

    from cvae.serving import generate
    from cvae import images
    from cvae.files import npy_stream, write_files

    model = generate.load(args.model, args.version)
    if args.inpaint or args.denoise or args.upscale:
        from cvae.serving import applications as served

        if args.upscale:
            source = images.read_low_res_png(args.upscale)
            label = None if args.label is None else model.label_id(args.label)
            tiles, out, chosen = served.upscale_completions(model, source, label, args.num,
                                                            args.seed)
            columns = args.columns or args.num + 1
            side = source.shape[0]
            whose = " (the model's choice)" if label is None else ""
            what = (f"{args.num} completion(s) of {args.upscale} ({side}x{side}) at 28x28 as "
                    f"{model.class_names[chosen]}{whose} (seed {args.seed})")
        elif args.inpaint:
            source, mask = images.read_png_28x28(args.inpaint), served.read_mask(args.mask)
            label = model.label_id(args.label)
            out = served.inpaint(model, np.repeat(source[np.newaxis], args.num, 0),
                                 np.repeat(mask[np.newaxis], args.num, 0), [label] * args.num,
                                 generate.seeds_for(args.seed, args.num))
            shown = served.shown_masked(source, mask)[np.newaxis]
            tiles, columns = np.concatenate([shown, out]), args.columns or args.num + 1
            what = (f"{args.num} completion(s) of {args.inpaint} (mask {args.mask}) as "
                    f"{model.class_names[label]} (seed {args.seed})")
        else:
            source = images.read_png_28x28(args.denoise)
            label = model.label_id(args.label)
            out = served.denoise(model, source[np.newaxis], [label])
            tiles = np.concatenate([source[np.newaxis], out])  # input | cleaned
            columns = args.columns or 2
            what = f"{args.denoise} denoised as {model.class_names[label]}"
    elif args.restyle:
        source = images.read_png_28x28(args.restyle)
        ids = model.label_id(args.from_label), model.label_id(args.to_label)
        out = generate.restyle(model, source[np.newaxis], [ids[0]], [ids[1]])
        tiles = np.concatenate([source[np.newaxis], out])  # input | restyled
        columns = args.columns or 2
        what = f"{args.restyle} ({model.class_names[ids[0]]}) as {model.class_names[ids[1]]}"
    else:
        label = model.label_id(args.label)
        what = f"{args.num} x {model.class_names[label]} (seed {args.seed})"
        if args.out is None:  # the array alone: made and written a batch at a time
            batches = generate.sample_batches(model, label, args.num, args.seed)
            write_files({args.npy: npy_stream(batches, (args.num, 28, 28, 1))})
            print(f"wrote {args.npy}: {what}, model {model.path}")
            return
        out = generate.samples(model, label, args.num, args.seed)  # <= MAX_GRID_IMAGES
        tiles, columns = out, args.columns or generate.grid_columns(args.num)
    files = {}
    if args.out:
        files[args.out] = images.png_bytes(images.grid(tiles, columns))
    if args.npy:
        import io

        buffer = io.BytesIO()
        np.save(buffer, out)
        files[args.npy] = buffer.getvalue()
    write_files(files)  # both or neither
    print(f"wrote {cli.written(args.out, args.npy)}: {what}, model {model.path}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
