"""Generates, in-paints, denoises or classifies garments with a running TF Serving (REST or gRPC).

    python -m pipelines.client --url http://localhost:8501 --model cvae --label Dress --num 8 \
        --seed 0 --out dress.png [--npy dress.npy] [--version N] [--columns C] [--timeout S]
    python -m pipelines.client --grpc localhost:8500 --model cvae --label 3 --num 8 --out dress.png
    python -m pipelines.client --url http://localhost:8501 --inpaint docs/examples/dress.png \
        --mask bottom-half --label Dress --num 3 --seed 0 --out completed.png
    python -m pipelines.client --url http://localhost:8501 \
        --denoise docs/examples/noisy-dress.png --label Dress --out clean.png
    python -m pipelines.client --url http://localhost:8501 \
        --upscale docs/examples/dress-14x14.png [--label Dress] --num 3 --out upscaled.png
    python -m pipelines.client --grpc localhost:8500 \
        --classify docs/examples/ankle-boot.png docs/examples/pullover.png   # a line per image

The same label, seed and number give the same images as `pipelines.generate` from the
SavedModel, and `--inpaint` the same completions as `pipelines.generate --inpaint`;
`--classify` prints the lines of `pipelines.classify` and writes no file. The options they share
(mask names, seed bounds, output files) follow the same rules (`cvae.options`). This file is
intentionally short: the logic is in `cvae.serving.client`.
"""

import argparse
import math
import sys

from cvae import cli, limits, options

DEFAULT_NUM = 16
# --num with --inpaint: each row of its request holds an image and a mask (6.3 KB of float32),
# so half the generation bound keeps the request under gRPC's default 4 MB message limit.
MAX_INPAINT_IMAGES = limits.MAX_REQUEST_IMAGES // 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--url", help="REST endpoint of the server, http://HOST:PORT (port 8501)")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint (port 8500)")
    parser.add_argument("--model", default="cvae", help="model name the server serves")
    parser.add_argument("--version", type=int, help="model version (default: the server's latest)")
    parser.add_argument("--label", help="class name (case-insensitive) or id 0..9: the class to "
                                        "generate, or of the --inpaint or --denoise image")
    parser.add_argument("--num", type=int,
                        help=f"how many images, in one request (default: {DEFAULT_NUM}): at most "
                             f"{limits.MAX_REQUEST_IMAGES}, and at most {MAX_INPAINT_IMAGES} "
                             f"completions with --inpaint")
    parser.add_argument("--seed", type=int,
                        help=f"same seed, same images: 0..{options.MAX_SEED} (default: 0)")
    parser.add_argument("--columns", type=int, help="grid columns (default: about sqrt(num))")
    parser.add_argument("--inpaint", metavar="IMAGE.png",
                        help="a 28x28 8-bit grayscale PNG whose --mask pixels the `inpaint` "
                             "signature fills in: the masked image, then --num completions as "
                             "--label from --seed")
    parser.add_argument("--mask", help=f"with --inpaint: {', '.join(options.MASK_NAMES)} (what "
                                       f"is missing), or a 28x28 PNG, white where the pixel is "
                                       f"known and black where it is missing")
    parser.add_argument("--denoise", metavar="IMAGE.png",
                        help="a noisy 28x28 8-bit grayscale PNG of a --label garment, cleaned "
                             "by the `denoise` signature: the image, then the cleaned one")
    parser.add_argument("--upscale", metavar="IMAGE.png",
                        help="a 14x14 or 7x7 8-bit grayscale PNG drawn at 28x28 by the `upscale` "
                             "signature, its block means kept: the input (each pixel a block), "
                             "then --num completions from --seed, as --label (default: the "
                             "model's choice)")
    parser.add_argument("--classify", nargs="+", metavar="IMAGE.png",
                        help=f"28x28 8-bit grayscale PNGs (at most {limits.MAX_REQUEST_IMAGES}, "
                             f"one request) for the `classify` signature: prints a line per "
                             f"image as pipelines.classify does, writes no file")
    parser.add_argument("--out", metavar="FILE.png", help="PNG file to write (the grid)")
    parser.add_argument("--npy", metavar="FILE.npy",
                        help="also save the float32 images [N, 28, 28, 1] here (with --inpaint "
                             "the completions, with --denoise the cleaned image)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the server's answer")
    args = parser.parse_args(argv)
    actions = [flag for flag, value in (("--inpaint", args.inpaint), ("--denoise", args.denoise),
                                        ("--upscale", args.upscale),
                                        ("--classify", args.classify)) if value is not None]
    if len(actions) > 1:
        parser.error("give one of --inpaint, --denoise, --upscale and --classify")
    if args.inpaint is not None:
        if args.mask is None or args.label is None:
            parser.error("--inpaint needs --mask and --label")
        cli.check_mask(parser, args.mask)
    elif args.mask is not None:
        parser.error("--mask goes with --inpaint")
    # Flags the action would ignore are refused rather than silently dropped.
    if args.classify is not None:
        cli.refuse_ignored_flags(parser, args, "--classify")
    elif args.denoise is not None:
        cli.refuse_ignored_flags(parser, args, "--denoise")
        if args.label is None:
            parser.error("--denoise needs --label")
    missing = [f"--{name}" for name in ("label", "out") if getattr(args, name) is None
               and not (name == "label" and args.upscale is not None)]  # upscale: the model's
    if args.classify is None and missing:  # in argparse's words, as when both were required
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.url is not None and not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must start with http:// or https://, got {args.url}")
    if args.grpc is not None and (":" not in args.grpc or "/" in args.grpc):
        parser.error(f"--grpc must be HOST:PORT, got {args.grpc}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.classify is not None:
        if args.version is not None and args.version < 1:
            parser.error(f"--version must be >= 1, got {args.version}")
        if len(args.classify) > limits.MAX_REQUEST_IMAGES:
            parser.error(f"--classify takes at most {limits.MAX_REQUEST_IMAGES} images (one "
                         f"request), got {len(args.classify)}")
        return args
    args.num = DEFAULT_NUM if args.num is None else args.num
    args.seed = 0 if args.seed is None else args.seed
    cli.check_grid_arguments(parser, args, MAX_INPAINT_IMAGES if args.inpaint is not None
                             else limits.MAX_REQUEST_IMAGES)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from cvae.labels import CLASS_NAMES, parse_label

    # before importing TensorFlow: a typo in a label or a file fails at once
    label = None if args.label is None else parse_label(args.label)
    mask_file = args.mask if args.mask not in options.MASK_NAMES else None
    cli.check_inputs(args.inpaint, mask_file, args.denoise, args.upscale,
                     *(args.classify or ()))
    import io

    import numpy as np

    from cvae.serving import client
    from cvae import images
    from cvae.serving import applications as served
    from cvae.files import write_files
    from cvae.batches import seeds_for

    server = dict(model=args.model, url=args.url, grpc_target=args.grpc, version=args.version,
                  timeout=args.timeout)
    if args.classify is not None:
        pictures = np.stack([images.read_png_28x28(path) for path in args.classify])  # all, first
        out = client.classify(pictures, **server)
        for i, path in enumerate(args.classify):
            print(served.describe(path, out, i, CLASS_NAMES))
        return
    if args.inpaint is not None:
        source, mask = images.read_png_28x28(args.inpaint), served.read_mask(args.mask)
        result = client.inpaint(np.repeat(source[np.newaxis], args.num, 0),
                                np.repeat(mask[np.newaxis], args.num, 0), [label] * args.num,
                                seeds_for(args.seed, args.num), **server)
        tiles = np.concatenate([served.shown_masked(source, mask)[np.newaxis], result])
        columns = args.columns or args.num + 1
        what = (f"{args.num} completion(s) of {args.inpaint} (mask {args.mask}) as "
                f"{CLASS_NAMES[label]} (seed {args.seed})")
    elif args.denoise is not None:
        source = images.read_png_28x28(args.denoise)
        result = client.denoise(source[np.newaxis], [label], **server)
        tiles, columns = np.concatenate([source[np.newaxis], result]), args.columns or 2
        what = f"{args.denoise} denoised as {CLASS_NAMES[label]}"
    elif args.upscale is not None:
        source = images.read_low_res_png(args.upscale)
        factor = 28 // source.shape[0]
        out = client.upscale(np.repeat(source[np.newaxis], args.num, 0),
                             [-1 if label is None else label] * args.num,
                             seeds_for(args.seed, args.num), **server)
        result = out["images"]
        shown = np.repeat(np.repeat(source, factor, 0), factor, 1)  # each pixel its block
        tiles = np.concatenate([shown[np.newaxis], result])
        columns = args.columns or args.num + 1
        chosen = CLASS_NAMES[int(out["label"][0])]
        whose = "" if label is not None else " (the model's choice)"
        what = (f"{args.num} completion(s) of {args.upscale} ({source.shape[0]}x"
                f"{source.shape[0]}) at 28x28 as {chosen}{whose} (seed {args.seed})")
    else:
        result = client.generate(label, args.num, args.seed, **server)["images"]
        tiles, columns = result, args.columns or math.ceil(math.sqrt(args.num))
        what = f"{args.num} x {CLASS_NAMES[label]} (seed {args.seed})"
    files = {args.out: images.png_bytes(images.grid(tiles, columns))}
    if args.npy:
        buffer = io.BytesIO()
        np.save(buffer, result)
        files[args.npy] = buffer.getvalue()
    write_files(files)  # both or neither, and only after the server answered
    address = args.url or f"grpc://{args.grpc}"
    version = "latest" if args.version is None else f"version {args.version}"
    print(f"wrote {cli.written(args.out, args.npy)}: {what}, model {args.model} ({version}) at "
          f"{address}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
