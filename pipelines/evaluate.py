"""Evaluates an exported model: metrics.json, report.md and figures in one folder.

    python -m pipelines.evaluate --model saved_models/cvae [--version N] --out reports/NAME \
        [--compare] [--iwae-k 1000] [--manifold-model PATH]

Works from the SavedModel, the test data and the project's classifier (`python -m
pipelines.train_classifier`). --compare adds the same recipe without the label and TensorFlow's
tutorial recipe (loaded from saved_models/cvae-unconditional and saved_models/cvae-tutorial, or
trained there first with the main model's epochs and data). The logic is in `cvae.evaluate`,
`cvae.figures` and `cvae.report`.
"""

import argparse
import sys

from cvae import cli


def main(argv=None) -> None:
    from cvae.evaluate import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int, help="version to evaluate (default: the highest)")
    parser.add_argument("--out", required=True, help="report folder to create, reports/NAME")
    parser.add_argument("--classifier", default="saved_models/classifier",
                        help="the classifier's base path")
    parser.add_argument("--compare", action="store_true",
                        help="also evaluate the unconditional and tutorial recipes")
    parser.add_argument("--compare-k", type=int, default=100,
                        help="IWAE samples per image for the comparison's log-likelihoods")
    parser.add_argument("--models-dir", default="saved_models",
                        help="where the comparison models are (or are trained to)")
    parser.add_argument("--manifold-model",
                        help="a latent_dim=2 model for the manifold figures (default: the "
                             "tutorial recipe's, with --compare)")
    parser.add_argument("--iwae-k", type=int, default=defaults.iwae_k)
    parser.add_argument("--iwae-images", type=int, help="test images in the IWAE (default: all)")
    parser.add_argument("--samples-per-class", type=int, default=defaults.samples_per_class)
    parser.add_argument("--frechet-images", type=int, default=defaults.frechet_images)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data-dir", help="folder of the IDX files (default: searched)")
    args = parser.parse_args(argv)
    try:
        settings = Settings(iwae_k=args.iwae_k, iwae_images=args.iwae_images,
                            samples_per_class=args.samples_per_class,
                            frechet_images=args.frechet_images, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    if args.compare_k < 1:
        parser.error(f"--compare-k {args.compare_k} must be >= 1")
    from cvae import report
    from cvae.config import DataConfig

    report.write_report(args.model, args.version, args.out, settings, args.classifier,
                        DataConfig(data_dir=args.data_dir), compare=args.compare,
                        compare_k=args.compare_k, models_dir=args.models_dir,
                        manifold_model=args.manifold_model or None)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
