"""Sweeps in-painting's settings on one trained run, without exporting each:

    python scripts/inpaint_sweep.py --run runs/NAME --sampler-from saved_models/cvae/N \
        --settings 6x6x0 3x4x30 [--images 500] [--masks bottom-half top-half ...]

A setting is ROUNDSxCODESxSTEPS[xRATE] (`inpaint_iterations`, `inpaint_samples`,
`inpaint_refine_steps` and `inpaint_refine_rate`, 0.2 if not given, of
`cvae.config.ApplicationsConfig`). For each, on the first `--images` test images and the
masks `pipelines.evaluate` draws (`cvae.applications.corruptions.MASKS`, the same seeds), it
prints the mean squared error on the missing pixels of the completions over the class-mean
fill's, how often the project's classifier recognises the completions and the fills, and the
seconds per batch of 100 (the first batch, which traces, left out). The codes' sampler is
the export's (`cvae.serving.export.exported_sampler`), so the completions are those an export of
these settings would give. The experiment log (docs/applications.md) quotes the rows.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import cli  # noqa: E402  (quiet libraries before TensorFlow loads)
from cvae import limits  # noqa: E402


def _setting(text: str) -> tuple[int, int, int, float]:
    try:
        parts = text.split("x")
        rounds, codes, steps = (int(v) for v in parts[:3])
        rate = float(parts[3]) if len(parts) == 4 else 0.2
        if len(parts) > 4 or rate <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a setting is ROUNDSxCODESxSTEPS[xRATE], like 6x6x0 or 3x4x30x0.2")
    if not (1 <= rounds <= limits.MAX_LAYERS and 2 <= codes <= 256
            and 0 <= steps <= limits.MAX_REFINE_STEPS):
        raise argparse.ArgumentTypeError(
            f"{text!r}: rounds 1 to {limits.MAX_LAYERS}, codes 2 to 256, steps 0 to "
            f"{limits.MAX_REFINE_STEPS}")
    return rounds, codes, steps, rate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, runs/<name>")
    parser.add_argument("--sampler-from", required=True, metavar="PATH",
                        help="an exported version of that run, saved_models/<name>/<N>")
    parser.add_argument("--settings", type=_setting, nargs="+", required=True)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--masks", nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 2 <= args.images <= 10_000:
        parser.error("--images must be between 2 and 10000")
    cli.quiet_libraries()

    import numpy as np

    from cvae.evaluation import classifier
    from cvae import data
    from cvae.applications import corruptions
    from cvae.evaluation.applications import _missing_mse, _recognised
    from cvae.config import ApplicationsConfig
    from cvae.data import unit_images
    from cvae.serving.export import exported_sampler
    from cvae.serving.module import ServingModule
    from cvae.batches import seeds_for
    from cvae.labels import NUM_CLASSES
    from cvae.training.train import load_run

    masks = args.masks or list(corruptions.MASKS)
    unknown = sorted(set(masks) - set(corruptions.MASKS))
    if unknown:
        parser.error(f"unknown mask(s) {unknown}: choose from {', '.join(corruptions.MASKS)}")
    run = load_run(args.run)
    sampler = exported_sampler(args.sampler_from)
    splits = data.load_splits(run.config.data)
    classify, _, _ = classifier.load()
    x, y = unit_images(splits.test[0][:args.images]), splits.test[1][:args.images].astype(np.int32)
    train_x = unit_images(splits.train[0])
    means = np.stack([train_x[splits.train[1] == c].mean(0) for c in range(NUM_CLASSES)])
    seeds = seeds_for(args.seed, len(x))
    print(f"{args.run}, sampler of {args.sampler_from}; {len(x)} test images")
    print("| setting | mask | MSE, missing pixels | class-mean fill | ratio | recognised | "
          "class-mean fill recognised | s / 100 |")
    print("|---|---|---|---|---|---|---|---|")
    for rounds, codes, steps, rate in args.settings:
        module = ServingModule(run.model, sampler, ApplicationsConfig(
            inpaint_iterations=rounds, inpaint_samples=codes, inpaint_refine_steps=steps,
            inpaint_refine_rate=rate))
        for i, kind in enumerate(masks):
            mask = corruptions.mask(kind, len(x), args.seed + corruptions.MASKS.index(kind))
            fill = mask * x + (1 - mask) * means[y]
            out, seconds = [], 0.0
            for start in range(0, len(x), 100):
                part = slice(start, start + 100)
                t = time.perf_counter()
                out.append(module.inpaint(images=x[part], mask=mask[part], label=y[part],
                                          seed=seeds[part])["images"].numpy())
                seconds += time.perf_counter() - t if start else 0.0  # the first call traces
            out = np.concatenate(out)
            mse, base = _missing_mse(out, x, mask), _missing_mse(fill, x, mask)
            batches = max(1, (len(x) - 1) // 100)
            print(f"| {rounds}x{codes}x{steps}x{rate:g} | {kind} | {mse:.4f} | {base:.4f} | "
                  f"{mse / base:.3f} | {_recognised(classify, out, y):.3f} | "
                  f"{_recognised(classify, fill, y):.3f} | {seconds / batches:.2f} |", flush=True)


if __name__ == "__main__":
    main()
