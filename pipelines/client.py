"""Generates garments by label from a running TensorFlow Serving (REST or gRPC) into a PNG grid.

    python -m pipelines.client --url http://localhost:8501 --model cvae --label Dress --num 8 \
        --seed 0 --out dress.png [--npy dress.npy] [--version N] [--columns C] [--timeout S]
    python -m pipelines.client --grpc localhost:8500 --model cvae --label 3 --num 8 --out dress.png

The same label, seed and number give the same images as `pipelines.generate` from the
SavedModel. This file is intentionally short: the logic is in `cvae.client`.
"""

import argparse
import math
import sys

from cvae import cli, limits


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--url", help="REST endpoint of the server, http://HOST:PORT (port 8501)")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint (port 8500)")
    parser.add_argument("--model", default="cvae", help="model name the server serves")
    parser.add_argument("--version", type=int, help="model version (default: the server's latest)")
    parser.add_argument("--label", required=True, help="class name (case-insensitive) or id 0..9")
    parser.add_argument("--num", type=int, default=16,
                        help=f"how many images, in one request: at most "
                             f"{limits.MAX_REQUEST_IMAGES}")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same images")
    parser.add_argument("--columns", type=int, help="grid columns (default: about sqrt(num))")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--npy", help="also save the float32 images [N, 28, 28, 1] here")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the server's answer")
    args = parser.parse_args(argv)
    if args.url is not None and not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must start with http:// or https://, got {args.url}")
    if args.grpc is not None and (":" not in args.grpc or "/" in args.grpc):
        parser.error(f"--grpc must be HOST:PORT, got {args.grpc}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    cli.check_grid_arguments(parser, args, limits.MAX_REQUEST_IMAGES)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from cvae.labels import CLASS_NAMES, parse_label

    label = parse_label(args.label)  # before importing TensorFlow: a typo fails at once
    import io

    import numpy as np

    from cvae import client, images
    from cvae.files import write_files

    out = client.generate(label, args.num, args.seed, model=args.model, url=args.url,
                          grpc_target=args.grpc, version=args.version, timeout=args.timeout)
    columns = args.columns or math.ceil(math.sqrt(args.num))
    files = {args.out: images.png_bytes(images.grid(out["images"], columns))}
    if args.npy:
        buffer = io.BytesIO()
        np.save(buffer, out["images"])
        files[args.npy] = buffer.getvalue()
    write_files(files)  # both or neither, and only after the server answered
    server = args.url or f"grpc://{args.grpc}"
    version = "latest" if args.version is None else f"version {args.version}"
    print(f"wrote {args.out}: {args.num} x {CLASS_NAMES[label]} (seed {args.seed}), "
          f"model {args.model} ({version}) at {server}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
