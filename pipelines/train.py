"""Trains the conditional VAE, exports the next SavedModel version, and writes a class grid.

    python -m pipelines.train [--epochs 40 --latent-dim 64 ...]   # every config field is a flag
    python -m pipelines.train --recipe quick                       # `make train`: 15 epochs
    python -m pipelines.train --recipe tutorial --name tutorial    # TensorFlow tutorial's recipe
    python -m pipelines.train --images DIR [--metadata FILE.csv] --name NAME  # your own images
    python -m pipelines.train --name NAME --resume                 # continue runs/NAME
    python -m pipelines.train --strategy mirrored                  # every local GPU
    TF_CONFIG=... python -m pipelines.train --strategy multiworker # one process per machine

This file is intentionally short: the logic is in `cvae.training.train` and `cvae.serving.export`.
"""

import argparse
import sys
from pathlib import Path

from cvae import cli, limits
from cvae.config import Config, add_config_arguments, config_from_arguments


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<name>/ from its last checkpoint, with the config "
                             "in its config.json; training flags given here (--epochs, "
                             "--learning-rate, ...) override it, data and model flags must agree")
    parser.add_argument("--no-export", action="store_true", help="train only")
    parser.add_argument("--logical-cpus", type=int, metavar="N",
                        help=f"split the CPU into N logical devices (at most "
                             f"{limits.MAX_LOGICAL_CPUS}), so --strategy mirrored can run (and "
                             f"be tried out) on a machine without GPUs")
    parser.add_argument("--recipe", choices=RECIPES, default="cvae",
                        help="starting point that the config flags change: this project's "
                             "defaults (the shipped model: 30 epochs from version 10's "
                             "weights), the same from random weights in 150 epochs (scratch) "
                             "or 12 (quick, what `make train` runs), version 7's dense recipe "
                             "(fast), the defaults without the label (unconditional), or "
                             "TensorFlow's convolutional-VAE tutorial (see Config.quick, "
                             "Config.fast, ...)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.images and not args.name and not args.resume:
        parser.error("--images needs --name: the run and its export (saved_models/NAME) are "
                     "named after it, apart from the Fashion-MNIST model's")
    if args.metadata and not args.images:
        parser.error("--metadata needs --images, the folder its files are in")
    if args.resume and args.recipe != "cvae":
        parser.error("--recipe goes with a new run; --resume takes the run's own config")
    return args


RECIPES = ("cvae", "scratch", "quick", "fast", "unconditional", "tutorial")


def recipe(name: str) -> Config:
    """The base config of a --recipe name."""
    return {"cvae": Config(), "scratch": Config().from_scratch(), "quick": Config().quick(),
            "fast": Config().fast(),
            "unconditional": Config().unconditional(), "tutorial": Config().tutorial()}[name]


def main(argv=None) -> None:
    args = parse_args(argv)
    # One's own images start from their own recipe (Config.own_images) unless one is named.
    base = Config().own_images() if args.images and args.recipe == "cvae" else recipe(args.recipe)
    if args.resume:
        run_dir = Path(args.runs_dir or base.train.runs_dir) / (args.name or base.train.name)
        if not (run_dir / "config.json").is_file():
            raise ValueError(f"--resume: {run_dir}/config.json not found; nothing to resume")
        base = Config.from_json((run_dir / "config.json").read_text())
    config = config_from_arguments(args, base)
    if args.images and args.export_dir is None and not args.resume:  # beside saved_models/cvae
        config = config.replace(export_dir=str(Path("saved_models") / config.train.name))

    if args.logical_cpus is not None and args.logical_cpus < 1:
        raise ValueError(f"--logical-cpus {args.logical_cpus} must be >= 1")
    if args.logical_cpus is not None and args.logical_cpus > limits.MAX_LOGICAL_CPUS:
        raise ValueError(f"--logical-cpus {args.logical_cpus} must be <= "
                         f"{limits.MAX_LOGICAL_CPUS}")

    from cvae import workflow  # TensorFlow loads after argument errors
    from cvae.training import train  # TensorFlow loads after argument errors

    if args.logical_cpus:
        train.split_cpu(args.logical_cpus)
    result = train.train(config, resume=args.resume)
    if not args.no_export and result.chief:  # one export per run, by the chief
        workflow.export_run(result)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
