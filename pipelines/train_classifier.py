"""Trains the project's Fashion-MNIST classifier, the yardstick of `pipelines.evaluate`.

    python -m pipelines.train_classifier [--epochs 12] [--out saved_models/classifier]

Trains on the training split only (the validation split picks the epoch), prints the test
accuracy and exports the next version under --out. The logic is in `cvae.classifier`.
"""

import argparse
import sys

from cvae import cli


def main(argv=None) -> None:
    from cvae.classifier import CLASSIFIER_DIR, ClassifierConfig

    defaults = ClassifierConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data-dir", help="folder of the IDX files (default: searched)")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--out", default=CLASSIFIER_DIR, help="model base path")
    args = parser.parse_args(argv)
    try:
        config = ClassifierConfig(epochs=args.epochs, batch_size=args.batch_size,
                                  learning_rate=args.learning_rate, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    from cvae import classifier
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
