"""Exports a training run's last checkpoint as the next SavedModel version, or checks a version.

    python -m pipelines.export --run runs/NAME [--model-dir saved_models/cvae] [--guidance W]
        [--sampling class_posterior|prior] [--sampling-components K] [--temperature T]
        [--classify-samples K] [--classify-pixel-outlier P] [--inpaint-iterations R]
        [--inpaint-refine-steps S] [--denoise-refine-steps S] [--reconstruct-refine-steps S]
        [--reconstruct-pixel-outlier P] [--sampler-from saved_models/cvae/N]
    python -m pipelines.export --check saved_models/cvae/N

(`python -m pipelines.train` exports by itself; --run is for a run that was stopped or trained
with --no-export. If the run's metrics.json is not of its last checkpoint, the validation and
test figures are computed again. --sampler-from takes the codes' mixtures of an earlier export
of the same run, with its generation settings (guidance, sampling, temperature: no flag may
change them then), instead of fitting them again: its generated images stay bit-identical, and
the export takes a minute rather than several. --check verifies a version as TF Serving would
load it, and exits with status 2 listing every problem if it fails.) The logic is in
`cvae.training.train.load_run`, `cvae.serving.export` and `cvae.serving.check`.
"""

import sys
import typing

from cvae import cli, limits
from cvae.config import Sampling

# The settings that shape generated images, which --sampler-from takes from the earlier export.
GENERATION_SETTINGS = ("guidance", "sampling", "sampling_components", "temperature")
# The applications' settings a flag can change (cvae.config.ApplicationsConfig).
APPLICATION_SETTINGS = ("classify_samples", "classify_pixel_outlier", "inpaint_iterations",
                        "inpaint_refine_steps", "denoise_refine_steps", "reconstruct_refine_steps",
                        "reconstruct_pixel_outlier")


def main(argv=None) -> None:
    parser = cli.argument_parser(__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--run", help="a run directory, runs/<name>: export its last checkpoint")
    action.add_argument("--check", metavar="PATH",
                        help="a version directory, saved_models/cvae/<N>: check it for serving")
    parser.add_argument("--model-dir", help="model base path (default: the run's export_dir)")
    parser.add_argument("--guidance", type=float, metavar="W",
                        help="export with this guidance instead of the run's (an inference "
                             "setting: it changes the images shown, not the trained weights)")
    parser.add_argument("--sampling", choices=typing.get_args(Sampling),
                        help="where generated images take their latent codes from, instead of "
                             "the run's (an inference setting, like --guidance)")
    parser.add_argument("--sampling-components", type=int, metavar="K",
                        help=f"Gaussians per class for --sampling class_posterior (at most "
                             f"{limits.MAX_SAMPLING_COMPONENTS}), instead of the run's (an "
                             f"inference setting, like --guidance)")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="spread of the sampled codes instead of the run's (an inference "
                             "setting, like --guidance)")
    parser.add_argument("--classify-samples", type=int, metavar="K",
                        help=f"importance samples per class of the classify signature (10 K "
                             f"decoder passes an image; at most {limits.MAX_IWAE_K}), instead "
                             f"of the run's (an inference setting, like --guidance; "
                             f"docs/applications.md)")
    parser.add_argument("--inpaint-iterations", type=int, metavar="R",
                        help=f"rounds of resampling of the inpaint signature (at most "
                             f"{limits.MAX_LAYERS}), instead of the run's (an inference setting, "
                             f"like --guidance; docs/applications.md)")
    parser.add_argument("--inpaint-refine-steps", type=int, metavar="S",
                        help=f"gradient steps on the code after inpaint's resampling (at most "
                             f"{limits.MAX_REFINE_STEPS}), instead of the run's")
    parser.add_argument("--denoise-refine-steps", type=int, metavar="S",
                        help=f"gradient steps on denoise's best code (at most "
                             f"{limits.MAX_REFINE_STEPS}), instead of the run's")
    parser.add_argument("--reconstruct-refine-steps", type=int, metavar="S",
                        help=f"gradient steps on reconstruct's code (at most "
                             f"{limits.MAX_REFINE_STEPS}), instead of the run's")
    parser.add_argument("--classify-pixel-outlier", type=float, metavar="P",
                        help="share of a uniform pixel likelihood in classify's bounds, in "
                             "[0, 1), instead of the run's")
    parser.add_argument("--reconstruct-pixel-outlier", type=float, metavar="P",
                        help="share of a uniform pixel likelihood in reconstruct's "
                             "refinement, in [0, 1), instead of the run's")
    parser.add_argument("--sampler-from", metavar="PATH",
                        help="an earlier export of this run, saved_models/<name>/<N>: keep its "
                             "codes' mixtures (and so its generated images) rather than fit "
                             "them again")
    args = parser.parse_args(argv)
    # Before loading the run (and TensorFlow); the config checks the lower bound.
    cli.check_count(parser, "--inpaint-iterations", args.inpaint_iterations, limits.MAX_LAYERS,
                    lowest=None)
    cli.check_count(parser, "--inpaint-refine-steps", args.inpaint_refine_steps,
                    limits.MAX_REFINE_STEPS, lowest=None)
    for flag in ("--denoise-refine-steps", "--reconstruct-refine-steps"):
        cli.check_count(parser, flag, getattr(args, flag[2:].replace("-", "_")),
                        limits.MAX_REFINE_STEPS, lowest=None)
    for flag in ("--classify-pixel-outlier", "--reconstruct-pixel-outlier"):
        share = getattr(args, flag[2:].replace("-", "_"))
        if share is not None and not 0 <= share < 1:
            parser.error(f"{flag} must be in [0, 1), got {share:g}")
    cli.check_count(parser, "--classify-samples", args.classify_samples, limits.MAX_IWAE_K,
                    lowest=None)
    cli.check_count(parser, "--sampling-components", args.sampling_components,
                    limits.MAX_SAMPLING_COMPONENTS, lowest=None)
    overrides = {name: getattr(args, name)
                 for name in (*GENERATION_SETTINGS, *APPLICATION_SETTINGS)
                 if getattr(args, name) is not None}
    if args.check and (args.model_dir or overrides or args.sampler_from):
        parser.error("--model-dir, --sampler-from and the settings (--guidance, --sampling, "
                     "--sampling-components, --temperature, --classify-samples, "
                     "--classify-pixel-outlier, --inpaint-iterations, --inpaint-refine-steps, "
                     "--denoise-refine-steps, --reconstruct-refine-steps, "
                     "--reconstruct-pixel-outlier) go with --run, not --check")
    if args.sampler_from and set(GENERATION_SETTINGS) & set(overrides):
        parser.error("--sampler-from keeps an export's mixtures and generation settings: it "
                     "takes no --guidance, --sampling, --sampling-components or --temperature")
    if args.check:
        from cvae.serving import check

        for line in check.check_version(args.check):
            print(line)
        print(f"ok: {args.check} passed the serving check")
        return
    from cvae import workflow
    from cvae.serving import export
    from cvae.training import train

    earlier = export.exported_config(args.sampler_from) if args.sampler_from else None
    result = train.load_run(args.run)
    if earlier is not None:  # the export's generation settings come with its mixtures
        if earlier.model.latent_dim != result.config.model.latent_dim:
            raise ValueError(f"--sampler-from {args.sampler_from}: its codes have "
                             f"{earlier.model.latent_dim} dimensions, the run's "
                             f"{result.config.model.latent_dim}")
        overrides = {name: getattr(earlier.model, name) for name in GENERATION_SETTINGS} | overrides
    if overrides:
        result.config = result.config.replace(**overrides)  # validated here
        result.model.config = result.config.model
    sampler = export.exported_sampler(args.sampler_from) if earlier is not None else None
    workflow.export_run(result, args.model_dir, sampler)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
