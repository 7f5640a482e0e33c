"""Sweeps super-resolution's inference settings on one trained run, without exporting each:

    python scripts/upscale_sweep.py --run runs/NAME --sampler-from saved_models/cvae/N \
        [--settings 0 20 40x0.1 20xnormal] [--images 500] [--unknown-label]

A setting is STEPS[xRATE][xnormal] (`upscale_refine_steps`, `upscale_refine_rate`, 0.2 if not
given; `normal`: N(0, I) as p(z|y) instead of the class's mixture at temperature 1). For each
factor (2: 14x14, 4: 7x7) it prints, on the first `--images` test images, the MSE to the true
images of bicubic and nearest-neighbour upsampling and of each setting (with its ratio to
bicubic's), with and without the projection on the block means, the evaluation classifier's
accuracy on the results, the largest block-mean error in gray levels and the seconds per batch
of 100. `--unknown-label` adds each setting with the label chosen by Bayes' rule
(`cvae.applications.upscale.class_log_likelihoods`) and that choice's accuracy.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import cli  # noqa: E402  (quiet libraries before TensorFlow loads)


def _setting(text: str) -> tuple[int, float, bool]:
    parts = text.split("x")
    steps = int(parts[0])
    rate = 0.2
    normal = False
    for part in parts[1:]:
        if part == "normal":
            normal = True
        else:
            rate = float(part)
    return steps, rate, normal


def main(argv=None) -> None:
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--sampler-from", required=True, metavar="PATH")
    parser.add_argument("--settings", nargs="+", type=_setting, default=[_setting("20")])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--unknown-label", action="store_true")
    args = parser.parse_args(argv)
    cli.check_count(parser, "--images", args.images, 10_000)

    import numpy as np
    import tensorflow as tf

    from cvae import data
    from cvae.applications import importance, upscale
    from cvae.evaluation import classifier
    from cvae.serving.export import exported_sampler
    from cvae.training.train import load_run

    run = load_run(args.run)
    model = run.model
    sampler = exported_sampler(args.sampler_from)
    splits = data.load_splits(run.config.data)
    x = data.unit_images(splits.test[0][:args.images])
    y = splits.test[1][:args.images].astype(np.int32)
    seeds = np.arange(len(x), dtype=np.int32)
    classify = classifier.load()[0]
    print(f"{args.run}, sampler of {args.sampler_from}; {len(x)} test images; true images "
          f"recognised {(classifier.predict(classify, x)['probabilities'].argmax(1) == y).mean():.3f}")

    def mixture(z, labels):
        return importance.mixture_log_prob(sampler.loc, sampler.scale_tril, sampler.weights,
                                           labels, z)

    def normal(z, labels):
        return tf.reduce_sum(-0.5 * tf.square(z) - 0.5 * importance.LOG_2PI, -1)

    def report(name, out, seconds=None):
        mse = float(((out - x) ** 2).mean())
        accuracy = (classifier.predict(classify, out)["probabilities"].argmax(1) == y).mean()
        error = np.abs(upscale.block_means(tf.constant(out), factor).numpy() - low).max() * 255
        timing = "" if seconds is None else f", {seconds:.2f} s / 100"
        print(f"  {name}: MSE {mse:.4f} ({mse / bicubic:.3f}x bicubic), recognised "
              f"{accuracy:.3f}, block means within {error:.3f} gray levels{timing}")

    for factor in upscale.FACTORS:
        low = upscale.block_means(tf.constant(x), factor).numpy()
        up = tf.clip_by_value(tf.image.resize(low, [28, 28], "bicubic"), 0.0, 1.0).numpy()
        bicubic = float(((up - x) ** 2).mean())
        print(f"{28 // factor}x{28 // factor}: bicubic MSE {bicubic:.4f}, nearest "
              f"{float(((upscale.nearest(low, factor).numpy() - x) ** 2).mean()):.4f}")
        report("bicubic", up)
        report("bicubic, projected", upscale.project(tf.constant(up), low, factor).numpy())
        for steps, rate, is_normal in args.settings:
            prior = normal if is_normal else mixture
            fn = tf.function(lambda lo, lab, s: upscale.upscale(
                model, lo, factor, lab, s, prior, steps, rate))
            outs, zs, times = [], [], []
            for i in range(0, len(x), 100):
                start = time.perf_counter()
                out = fn(tf.constant(low[i:i + 100]), tf.constant(y[i:i + 100]),
                         tf.constant(seeds[i:i + 100]))
                times.append(time.perf_counter() - start)
                outs.append(out["images"].numpy())
                zs.append(out["z"])
            name = f"{steps} steps at {rate}, {'N(0, I)' if is_normal else 'mixture'}"
            report(name, np.concatenate(outs), float(np.median(times[1:] or times)))
            raw = np.concatenate([importance.params_image(model, model.decoder_params(
                z, tf.constant(y[i * 100:(i + 1) * 100]))).numpy() for i, z in enumerate(zs)])
            report(name + ", not projected", raw)
            if args.unknown_label:
                eps = tf.random.stateless_normal([1, model.config.latent_dim],
                                                 upscale.CLASSIFY_SEED)
                bounds = np.concatenate([upscale.class_log_likelihoods(
                    model, tf.constant(low[i:i + 100]), factor, eps, mixture).numpy()
                    for i in range(0, len(x), 100)])
                chosen = bounds.argmax(1).astype(np.int32)
                print(f"  Bayes' rule on the block means (K 1): accuracy {(chosen == y).mean():.3f}")
                out = np.concatenate([fn(tf.constant(low[i:i + 100]),
                                         tf.constant(chosen[i:i + 100]),
                                         tf.constant(seeds[i:i + 100]))["images"].numpy()
                                      for i in range(0, len(x), 100)])
                report(name + ", label by Bayes' rule", out)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
