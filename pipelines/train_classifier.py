"""Trains the project's Fashion-MNIST classifier, the yardstick of `pipelines.evaluate`.

    python -m pipelines.train_classifier [--epochs 12] [--out saved_models/classifier]

Trains on the training split only (the validation split picks the epoch), prints the test
accuracy and exports the next version under --out. The logic is in `cvae.evaluation.classifier`.
"""

import sys

from cvae import cli, limits

# Counts -> upper bound, checked here: importing `cvae.evaluation.classifier` loads TensorFlow. (Its
# ClassifierConfig and DataConfig check the lower bounds; its defaults apply to flags not given.)
COUNTS = {"epochs": limits.MAX_EPOCHS, "batch_size": limits.TRAIN_IMAGES,
          "limit": limits.TRAIN_IMAGES}


def main(argv=None) -> None:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--epochs", type=int,
                        help=f"at most {limits.MAX_EPOCHS} (default: ClassifierConfig's)")
    parser.add_argument("--batch-size", type=int,
                        help=f"at most {limits.TRAIN_IMAGES} (default: ClassifierConfig's)")
    parser.add_argument("--learning-rate", type=float, help="(default: ClassifierConfig's)")
    parser.add_argument("--seed", type=int, help="(default: ClassifierConfig's)")
    parser.add_argument("--data-dir", help="folder of the IDX files (default: searched)")
    parser.add_argument("--limit", type=int,
                        help=f"use only the first N training images (at most "
                             f"{limits.TRAIN_IMAGES})")
    parser.add_argument("--out", default="saved_models/classifier", help="model base path")
    args = parser.parse_args(argv)
    for name, bound in COUNTS.items():
        cli.check_count(parser, "--" + name.replace("_", "-"), getattr(args, name), bound,
                        lowest=None)
    from cvae.evaluation.classifier import ClassifierConfig  # TensorFlow loads after argument errors

    given = {name: getattr(args, name) for name in ("epochs", "batch_size", "learning_rate",
                                                    "seed") if getattr(args, name) is not None}
    try:
        config = ClassifierConfig(**given)
    except ValueError as e:
        parser.error(str(e))
    from cvae.evaluation import classifier
    from cvae.config import DataConfig

    data_config = DataConfig(data_dir=args.data_dir, limit=args.limit,
                             validation_size=DataConfig().validation_size)
    path, metrics = classifier.train_classifier(config, data_config, args.out)
    worst = min(metrics["test_accuracy_per_class"].items(), key=lambda kv: kv[1])
    print(f"test accuracy {metrics['test_accuracy']:.4f} (best epoch {metrics['best_epoch']}, "
          f"validation {metrics['validation_accuracy']:.4f}; lowest class {worst[0]} "
          f"{worst[1]:.3f}) in {metrics['train_seconds']:.0f} s")
    print(f"exported {path}")


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
