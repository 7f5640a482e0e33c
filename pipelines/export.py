"""Exports a training run's last checkpoint as the next SavedModel version.

    python -m pipelines.export --run runs/NAME [--model-dir saved_models/cvae]

(`python -m pipelines.train` exports by itself; this is for a run that was stopped or trained
with --no-export. If the run's metrics.json is not of its last checkpoint, the validation and
test figures are computed again.) The logic is in `cvae.train.load_run` and `cvae.export`.
"""

import argparse
import sys

from cvae import cli


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, runs/<name>")
    parser.add_argument("--model-dir", help="model base path (default: the run's export_dir)")
    args = parser.parse_args(argv)
    from cvae import export, train

    export.export_run(train.load_run(args.run), args.model_dir)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
