"""Evaluates an exported model: metrics.json, report.md and figures in one folder.

    python -m pipelines.evaluate --model saved_models/cvae [--version N] --out reports/NAME \
        [--compare [RECIPE ...]] [--iwae-k 1000] [--manifold-model PATH]

Works from the SavedModel, the test data and the project's classifier (`python -m
pipelines.train_classifier`). --compare adds version 7's dense recipe (saved_models/cvae-fast),
the same recipe without the label and TensorFlow's tutorial recipe (saved_models/cvae-unconditional
and saved_models/cvae-tutorial, or trained there first with the main model's epochs and data);
--compare fast names just one. An export with the inpaint,
denoise and classify signatures also gets a section per application, each beside a baseline
(`cvae.evaluation.applications`; --application-images, --classify-images). The logic is in
`cvae.evaluation.evaluate`, `cvae.evaluation.figures` and `cvae.evaluation.report`.
"""

import sys

from cvae import cli, limits, options

# The counts of `cvae.evaluation.evaluate.Settings` (whose defaults apply to those not given) ->
# (lower bound, upper bound, help). Both bounds are checked here, before importing Settings loads
# TensorFlow (Settings checks the lower ones again, for callers in Python).
COUNTS = {
    "iwae_k": (1, limits.MAX_IWAE_K, "importance samples per test image in the IWAE bound"),
    "iwae_images": (2, limits.TEST_IMAGES, "test images in the IWAE (all by default)"),
    "samples_per_class": (2, limits.MAX_SAMPLES_PER_CLASS,
                          "generated images per class for the accuracy, Fréchet distance and "
                          "diversity"),
    "frechet_images": (2, limits.TEST_IMAGES, "images on each side of the Fréchet distance"),
    "reconstruction_images": (2, limits.TEST_IMAGES, "test images reconstructed (all by "
                                                     "default)"),
    "restyle_per_class": (1, 1000, "test images of each class restyled as every other class "
                                   "(and back) for the label figures"),
}


def main(argv=None) -> None:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--model", default="saved_models/cvae",
                        help="model base path (with version folders) or one version folder")
    parser.add_argument("--version", type=int, help="version to evaluate (default: the newest)")
    parser.add_argument("--out", required=True, help="report folder to create, reports/NAME")
    parser.add_argument("--classifier", default="saved_models/classifier",
                        help="the classifier's base path")
    parser.add_argument("--compare", nargs="*", metavar="RECIPE",
                        help="also evaluate these comparison recipes (fast, unconditional, "
                             "tutorial; all three if none is named)")
    parser.add_argument("--compare-k", type=int, default=100,
                        help=f"IWAE samples per image for the comparison's log-likelihoods, at "
                             f"most {limits.MAX_IWAE_K}")
    parser.add_argument("--models-dir", default="saved_models",
                        help="where the comparison models are (or are trained to)")
    parser.add_argument("--manifold-model",
                        help="a latent_dim=2 model for the manifold figures (default: the "
                             "tutorial recipe's, with --compare)")
    for name, (lowest, bound, text) in COUNTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, dest=name,
                            help=f"{text}, {lowest} to {bound}")
    parser.add_argument("--seed", type=int, help="seed of the samples and random draws (default: "
                                                "cvae.evaluation.evaluate.Settings.seed)")
    parser.add_argument("--data-dir", help="folder of the IDX files (default: searched)")
    parser.add_argument("--application-images", type=int,
                        help=f"test images for in-painting, denoising and the scores (default: "
                             f"cvae.evaluation.applications.Settings.images), at most "
                             f"{limits.TEST_IMAGES}")
    parser.add_argument("--classify-images", type=int,
                        help=f"test images for the classification section (default: all), at "
                             f"most {limits.TEST_IMAGES}")
    args = parser.parse_args(argv)
    for name, (lowest, bound, _) in COUNTS.items():
        cli.check_count(parser, "--" + name.replace("_", "-"), getattr(args, name), bound,
                        lowest)
    if args.seed is not None and (problem := options.seed_problem(args.seed)) is not None:
        parser.error(problem)
    cli.check_count(parser, "--compare-k", args.compare_k, limits.MAX_IWAE_K)
    for flag in ("--application-images", "--classify-images"):
        cli.check_count(parser, flag, getattr(args, flag[2:].replace("-", "_")),
                        limits.TEST_IMAGES, lowest=2)
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be >= 1, got {args.version}")
    options.resolve_version(args.model, args.version)  # a missing model, before TensorFlow too
    from cvae.evaluation import report  # TensorFlow loads after argument errors
    from cvae.evaluation import applications as apps
    from cvae.config import DataConfig
    from cvae.evaluation.evaluate import Settings

    given = {name: getattr(args, name) for name in [*COUNTS, "seed"]
             if getattr(args, name) is not None}
    try:
        settings = Settings(**given)
    except ValueError as e:
        parser.error(str(e))
    application_settings = apps.Settings(
        **{k: v for k, v in (("images", args.application_images),
                             ("classify_images", args.classify_images),
                             ("seed", args.seed)) if v is not None})

    report.write_report(args.model, args.version, args.out, settings, args.classifier,
                        DataConfig(data_dir=args.data_dir), compare=args.compare,
                        compare_k=args.compare_k, models_dir=args.models_dir,
                        manifold_model=args.manifold_model or None,
                        application_settings=application_settings)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
