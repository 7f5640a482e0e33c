"""Classifies garment images with an exported model's `classify` signature (Bayes' rule on the
CVAE's own likelihoods) and says how typical each image is.

    python -m pipelines.classify IMAGE.png [IMAGE.png ...] [--model saved_models/cvae] [--version N]

For each image (a 28x28 8-bit grayscale PNG, white garment on black) it prints one line: the
class and its probability, the top three, log p(x) in nats and the typicality (log p(x)
corrected by the image's complexity: low means unlike the training garments). This file is
intentionally short: the logic is in `cvae.serving.applications`.
"""

import sys

from cvae import cli, options


def parse_args(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE.png", help="28x28 grayscale PNGs")
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int, help="version to load (default: the newest)")
    args = parser.parse_args(argv)
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be >= 1, got {args.version}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.check_inputs(*args.images)  # before TensorFlow loads, as the model's path
    options.resolve_version(args.model, args.version)
    import numpy as np

    from cvae.serving import generate
    from cvae import images
    from cvae.serving import applications as served

    pictures = np.stack([images.read_png_28x28(path) for path in args.images])  # all, first
    model = generate.load(args.model, args.version)
    out = served.classify(model, pictures)
    for i, path in enumerate(args.images):
        print(served.describe(path, out, i, model.class_names))


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
