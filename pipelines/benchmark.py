"""Benchmarks training, the input pipeline and generation on this machine; writes a JSON report.

    python -m pipelines.benchmark [--out reports/benchmark.json]       # the full benchmark
    python -m pipelines.benchmark --batch-size 256 --precision mixed_bfloat16   # another config
    python -m pipelines.benchmark --variants        # training throughput of standard alternatives
    python -m pipelines.benchmark --variants batch_size=256,steps_per_execution=8 jit_compile=true
    python -m pipelines.benchmark --quick           # seconds-long smoke run (tests)
    python -m pipelines.benchmark --applications    # classify, inpaint, denoise at batch 100

The full benchmark took about 2 minutes on the project's 2-core CPU machine, --variants about
7 earlier; it prints a table and three targets, each PASS or FAIL.
This file is intentionally short: the logic is in `cvae.evaluation.benchmark` (the runner) and
`cvae.evaluation.benchmarks` (one module per benchmark).
"""

import argparse
import sys

from cvae import cli, limits
from cvae.config import Config, add_config_arguments, config_from_arguments

# Settings fields -> (upper bound, help); the defaults are
# `cvae.evaluation.benchmarks.common.Settings`' (or its quick()).
SETTINGS = {
    "train_images": (limits.TRAIN_IMAGES, "time to quality: training images (validation: N // 5)"),
    "baseline_epochs": (limits.MAX_EPOCHS,
                        "time to quality: the baseline's epochs, which set the target"),
    "max_epochs": (limits.MAX_EPOCHS,
                   "time to quality: the default training stops here if not there yet"),
    "timed_images": (limits.MAX_BENCHMARK_IMAGES,
                     "training throughput: images timed after the warm-up"),
    "warmup_steps": (limits.MAX_BENCHMARK_CALLS,
                     "training throughput: untimed steps first (tracing)"),
    "pipeline_images": (limits.MAX_BENCHMARK_IMAGES, "input pipeline: images timed"),
    "latency_calls": (limits.MAX_BENCHMARK_CALLS,
                      "generation: timed calls at batch 1 and at batch 64"),
    "throughput_calls": (limits.MAX_BENCHMARK_CALLS, "generation: timed calls at batch 1000"),
    "application_calls": (limits.MAX_BENCHMARK_CALLS,
                          "--applications: timed calls of each signature at batch 100"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--out", help="JSON report (default: reports/benchmark.json, or "
                                      "reports/benchmark-variants.json with --variants)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and subset, few steps and calls: a smoke run")
    parser.add_argument("--variants", nargs="*", metavar="FIELD=VALUE[,FIELD=VALUE]",
                        help="measure only training throughput, of the config given and of "
                             "these alternatives (none listed: batch 64/128/256/512, "
                             "steps_per_execution 1/8, mixed_bfloat16, jit_compile)")
    parser.add_argument("--applications", action="store_true",
                        help="measure only the classify, inpaint, denoise and upscale "
                             "signatures of --model's newest version at batch 100 (the "
                             "export's settings)")
    parser.add_argument("--model", dest="model_dir", metavar="DIR",
                        help="SavedModel base path whose latest version generation times "
                             "(default: saved_models/cvae)")
    parser.add_argument("--baseline-model", metavar="DIR",
                        help="an export (version directory) whose generation is timed in the "
                             "same run and compared (default: saved_models/cvae/10; 'none': "
                             "no comparison)")
    for name, (bound, text) in SETTINGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, dest=name,
                            help=f"{text}; at most {bound}")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    for name, (bound, _) in SETTINGS.items():
        cli.check_count(parser, "--" + name.replace("_", "-"), getattr(args, name), bound)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    config_from_arguments(args)  # the config flags' checks (bounds too), before TensorFlow loads
    from cvae.evaluation import benchmark
    from cvae.evaluation.benchmarks import applications, common

    given = {k: getattr(args, k) for k in ["model_dir", "baseline_model", *SETTINGS]
             if getattr(args, k) is not None}
    if given.get("baseline_model") == "none":
        given["baseline_model"] = None
    settings = common.Settings.quick(**given) if args.quick else common.Settings(**given)
    config = config_from_arguments(args, common.quick_config() if args.quick
                                   else Config().from_scratch())
    if args.applications:
        results = applications.run_applications(settings)
        report = applications.format_applications(results)
    elif args.variants is not None:
        specs = args.variants or benchmark.STANDARD_VARIANTS
        variants = [benchmark.parse_variant(spec, config) for spec in specs]
        results = benchmark.run_variants(config, variants, settings)
        report = benchmark.format_variants(results)
    else:
        results = benchmark.run(config, settings)
        report = benchmark.format_report(results)
    out = args.out or ("reports/benchmark-applications.json" if args.applications else
                       "reports/benchmark-variants.json" if args.variants is not None
                       else "reports/benchmark.json")
    benchmark.write_report(out, results)
    print(report + f"\nwrote {out}", flush=True)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
