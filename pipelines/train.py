"""Trains the conditional VAE, exports the next SavedModel version, and writes a class grid.

    python -m pipelines.train [--epochs 12 --latent-dim 16 ...]   # every config field is a flag
    python -m pipelines.train --name NAME --resume                 # continue runs/NAME

This file is intentionally short: the logic is in `cvae.train` and `cvae.export`.
"""

import argparse
import sys
from pathlib import Path

from cvae import cli
from cvae.config import Config, add_config_arguments, config_from_arguments


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<name>/ from its last checkpoint, with the config "
                             "in its config.json; training flags given here (--epochs, "
                             "--learning-rate, ...) override it, data and model flags must agree")
    parser.add_argument("--no-export", action="store_true", help="train only")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    base = Config()
    if args.resume:
        run_dir = Path(args.runs_dir or base.train.runs_dir) / (args.name or base.train.name)
        if not (run_dir / "config.json").is_file():
            raise ValueError(f"--resume: {run_dir}/config.json not found; nothing to resume")
        base = Config.from_json((run_dir / "config.json").read_text())
    config = config_from_arguments(args, base)

    from cvae import export, train  # TensorFlow loads after argument errors

    result = train.train(config, resume=args.resume)
    if not args.no_export:
        export.export_run(result)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
