"""Sweeps denoising's and classification's inference settings on one trained run, without
exporting each:

    python scripts/applications_sweep.py --run runs/NAME --sampler-from saved_models/cvae/N \
        [--denoise 0 20 40x0.1] [--outliers 0.05 0.01] [--images 1000] \
        [--classify-priors 1 0.8 normal] [--pixel-outliers 0 0.2] [--classify-images 2000] \
        [--classify-components 4 16] [--likelihood-powers 1 0.5] \
        [--proposals labelled unlabelled] [--decoders labelled unlabelled] \
        [--reconstruct 0 30x0.2 30x0.2x0.01] [--reconstruct-images 10000]

Reconstruction: a setting is STEPS[xRATE[xOUTLIER]] (`reconstruct_refine_steps`,
`reconstruct_refine_rate`, 0.2 if not given, and the share of a uniform pixel likelihood in the
refinement's objective, 0 if not given); for each it prints how often the project's classifier
recognises the reconstructions of the first `--reconstruct-images` test images and their MSE,
and the MSE to the clean images of the reconstructions of `--images` noisy ones (Gaussian noise
0.2, as `pipelines.evaluate` adds it): what a code fitted to every pixel does with pixels the
model cannot explain.

Denoising: a setting is STEPS[xRATE] (`denoise_refine_steps` and `denoise_refine_rate`, 0.2
if not given); for each and each `--outliers` (the noise model's salt-and-pepper share), on
the first `--images` test images with the noise `pipelines.evaluate` adds
(`cvae.applications.corruptions.NOISES`, the same seeds), it prints the mean squared error to
the clean images over the 3x3 median filter's, per noise kind, and the seconds per batch of 100.

Classification: the K-sample bound on log p(x|y) of the export's `classify` for each class
(its draws, K of the export's config) on the first `--classify-images` images of
`--classify-split` (test, or validation to choose a setting the report then measures), for every
combination of
- the codes: from q(z|x, y) (`labelled`, what `classify` does) or from the encoder without the
  label (`unlabelled`, the encoder of label dropout's unlabelled images);
- the decoder: p(x|z, y) (`labelled`) or p(x|z) without the label;
- p(z|y): each class's mixture of the export (or of `--classify-components` Gaussians, fitted as
  the export fits them) at each of `--classify-priors` temperatures (1 is the model's), or
  N(0, I) (`normal`);
- each pixel's likelihood mixed with a uniform one over the 256 gray levels in each of the
  `--pixel-outliers` shares (`classify_pixel_outlier`);
- p(x|z, y) raised to each of `--likelihood-powers` (1 is the model's own);
it prints Bayes' rule's accuracy (with the training classes' frequencies) and the lowest class.
The codes and the decoder's passes are shared by the variants. The experiment log
(docs/applications.md) quotes the rows.
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import cli  # noqa: E402  (quiet libraries before TensorFlow loads)
from cvae import limits  # noqa: E402


def _denoise_setting(text: str) -> tuple[int, float]:
    try:
        parts = text.split("x")
        steps = int(parts[0])
        rate = float(parts[1]) if len(parts) == 2 else 0.2
        if len(parts) > 2 or not 0 < rate < math.inf:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a setting is STEPS[xRATE], like 0 or 20x0.1")
    if not 0 <= steps <= limits.MAX_REFINE_STEPS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: steps 0 to {limits.MAX_REFINE_STEPS}")
    return steps, rate


def _reconstruct_setting(text: str) -> tuple[int, float, float]:
    try:
        parts = text.split("x")
        steps, rate = int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.2
        outlier = float(parts[2]) if len(parts) > 2 else 0.0
        if len(parts) > 3 or not 0 < rate < math.inf or not 0 <= outlier < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a setting is STEPS[xRATE[xOUTLIER]], like 30 or 30x0.2x0.01")
    if not 0 <= steps <= limits.MAX_REFINE_STEPS:
        raise argparse.ArgumentTypeError(f"{text!r}: steps 0 to {limits.MAX_REFINE_STEPS}")
    return steps, rate, outlier


def run_validation_size(args) -> int:
    """The validation images of the run's config (its data section), before TensorFlow loads."""
    config = json.loads((Path(args.run) / "config.json").read_text())
    return int(config.get("data", {}).get("validation_size", 5000))


def _prior(text: str) -> str | float:
    if text == "normal":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(f"{text!r}: a temperature in (0, 10], or normal")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, runs/<name>")
    parser.add_argument("--sampler-from", required=True, metavar="PATH",
                        help="an exported version of that run, saved_models/<name>/<N>")
    parser.add_argument("--denoise", type=_denoise_setting, nargs="*", default=[])
    parser.add_argument("--outliers", type=float, nargs="+", default=[0.05])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--reconstruct", type=_reconstruct_setting, nargs="*", default=[])
    parser.add_argument("--reconstruct-images", type=int, default=10_000)
    parser.add_argument("--classify-priors", type=_prior, nargs="*", default=[])
    parser.add_argument("--pixel-outliers", type=float, nargs="+", default=[0.0])
    parser.add_argument("--likelihood-powers", type=float, nargs="+", default=[1.0],
                        help="p(x|z,y) raised to each power in the bound (1: the model's own)")
    parser.add_argument("--proposals", choices=("labelled", "unlabelled"), nargs="+",
                        default=["labelled"])
    parser.add_argument("--decoders", choices=("labelled", "unlabelled"), nargs="+",
                        default=["labelled"])
    parser.add_argument("--classify-images", type=int, default=2000)
    parser.add_argument("--classify-split", choices=("test", "validation"), default="test",
                        help="the images classified (validation: to choose a setting without "
                             "the test images the report measures)")
    parser.add_argument("--classify-components", type=int, nargs="+", default=None,
                        help="Gaussians a class of p(z|y) (default: the export's mixtures)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("images", "classify_images", "reconstruct_images"):
        if not 2 <= getattr(args, name) <= 10_000:
            parser.error(f"--{name.replace('_', '-')} must be between 2 and 10000")
    if any(not 0 < p < 1 for p in args.outliers):
        parser.error("--outliers must be between 0 and 1 (exclusive)")
    if any(not 0 <= p < 1 for p in args.pixel_outliers):
        parser.error("--pixel-outliers must be in [0, 1)")
    if any(not 0 < a <= 10 for a in args.likelihood_powers):
        parser.error("--likelihood-powers must be in (0, 10]")
    if any(not 1 <= m <= limits.MAX_SAMPLING_COMPONENTS for m in args.classify_components or []):
        parser.error(f"--classify-components must be between 1 and "
                     f"{limits.MAX_SAMPLING_COMPONENTS}")
    if not 0 <= args.seed < 2 ** 31:
        parser.error("--seed must be between 0 and 2147483647")
    if args.classify_split == "validation" and args.classify_images > run_validation_size(args):
        parser.error(f"--classify-images {args.classify_images}: the validation split has "
                     f"{run_validation_size(args)} images")
    cli.quiet_libraries()

    import numpy as np
    import tensorflow as tf

    from cvae import data
    from cvae.model import sampling
    from cvae.applications import classify as classify_app
    from cvae.applications import corruptions, denoise, importance
    from cvae.serving.export import exported_config, exported_sampler
    from cvae.labels import CLASS_NAMES, NUM_CLASSES
    from cvae.training.train import load_run

    run = load_run(args.run)
    model = run.model
    sampler = exported_sampler(args.sampler_from)
    applications = exported_config(args.sampler_from).applications
    splits = data.load_splits(run.config.data)
    print(f"{args.run}, sampler of {args.sampler_from}")

    x = data.unit_images(splits.test[0][:args.images])
    y = splits.test[1][:args.images].astype(np.int32)
    if args.denoise:
        eps = tf.random.stateless_normal([applications.denoise_samples,
                                          run.config.model.latent_dim], denoise.SEED)
        noisy = {kind: corrupt(x, args.seed + 100 + i)
                 for i, (kind, corrupt) in enumerate(corruptions.NOISES.items())}
        baseline = {kind: float(((denoise.median_filter_3x3(v).numpy() - x) ** 2).mean())
                    for kind, v in noisy.items()}
        print(f"denoising, {len(x)} test images, {applications.denoise_samples} codes; the "
              "median filter's MSE: " + ", ".join(f"{k} {v:.4f}" for k, v in baseline.items()))
        print("| refining steps x rate | outlier share | " + " | ".join(noisy) + " | s / 100 |")
        print("|---|---|" + "---|" * len(noisy) + "---|")
        for steps, rate in args.denoise:
            for outlier in args.outliers:
                fn = tf.function(lambda images, labels: denoise.denoise(
                    model, images, labels, eps, outlier=outlier, refine_steps=steps,
                    refine_rate=rate)["images"])
                cells, seconds = [], 0.0
                for kind, v in noisy.items():
                    out = []
                    for start in range(0, len(x), 100):
                        t = time.perf_counter()
                        out.append(fn(v[start:start + 100], y[start:start + 100]).numpy())
                        seconds += time.perf_counter() - t if start else 0.0
                    mse = float(((np.concatenate(out) - x) ** 2).mean())
                    cells.append(f"{mse:.4f} ({mse / baseline[kind]:.3f}x)")
                batches = len(noisy) * max(1, (len(x) - 1) // 100)
                print(f"| {steps}x{rate:g} | {outlier:g} | " + " | ".join(cells)
                      + f" | {seconds / batches:.2f} |", flush=True)

    if args.reconstruct:
        from cvae.evaluation import classifier
        from cvae.applications import inpaint

        classify_net, _, _ = classifier.load()
        n = args.reconstruct_images
        rx = data.unit_images(splits.test[0][:n])
        ry = splits.test[1][:n].astype(np.int32)
        # The noise of `pipelines.evaluate`'s denoising (Gaussian 0.2), on its 1,000 images.
        noisy = corruptions.NOISES["gaussian 0.2"](x, args.seed + 101)
        print(f"reconstruct: the first {n} test images, recognised by the project's "
              f"classifier, and MSE to the clean image of the clean and (first {len(x)}) noisy "
              "ones, Gaussian noise 0.2")
        print("| steps x rate x outlier share | recognised | MSE, clean | MSE, noisy |")
        print("|---|---|---|---|")
        for steps, rate, outlier in args.reconstruct:
            @tf.function
            def reconstruct(x, y):
                return model.decode(inpaint.fitted_code(model, x, y, steps, rate, outlier), y,
                                    guided=False)

            def reconstruct_all(images, labels):
                return np.concatenate([reconstruct(tf.constant(images[s:s + 500]),
                                                   tf.constant(labels[s:s + 500])).numpy()
                                       for s in range(0, len(images), 500)])

            clean = reconstruct_all(rx, ry)
            verdict = classifier.predict(classify_net, clean)["probabilities"].argmax(1)
            from_noisy = reconstruct_all(noisy, y)
            print(f"| {steps}x{rate:g}x{outlier:g} | {(verdict == ry).mean():.4f} | "
                  f"{((clean - rx) ** 2).mean():.5f} | {((from_noisy - x) ** 2).mean():.5f} |",
                  flush=True)

    if not args.classify_priors:
        return
    n = args.classify_images
    held_out = getattr(splits, args.classify_split)
    cx = data.unit_images(held_out[0][:n])
    cy = held_out[1][:n].astype(np.int32)
    eps = tf.random.stateless_normal([applications.classify_samples,
                                      run.config.model.latent_dim], classify_app.SEED)
    log_class_prior = classify_app.class_log_prior(splits.train[1])
    config = run.config.model
    k = applications.classify_samples

    def codes(images, labels, unlabelled):
        """K codes per image from q(z|x, y), or from q(z|x) without the label (the encoder
        of label dropout's unlabelled images), and their log-density."""
        if not unlabelled:
            return importance.proposals(model, images, labels, eps)
        mean, stddev = model.encoder(images, tf.zeros([tf.shape(images)[0], NUM_CLASSES]))
        z = mean[:, None, :] + stddev[:, None, :] * eps
        log_q = tf.reduce_sum(-0.5 * tf.square(eps) - 0.5 * importance.LOG_2PI
                              - tf.math.log(stddev[:, None, :]), -1)
        return {"z": z, "log_q": log_q}

    # p(z|y): the export's mixtures, or mixtures of other sizes fitted as the export fits
    # them, at each temperature; or N(0, I).
    mixtures = {}
    for components in args.classify_components or [sampler.loc.shape[1]]:
        if components == sampler.loc.shape[1]:
            mixtures[components] = sampler
        else:
            t = time.perf_counter()
            mixtures[components] = sampling.for_model(
                model, dataclasses.replace(config, sampling_components=components),
                splits.train[0], splits.train[1])
            print(f"fitted {components} Gaussians a class in {time.perf_counter() - t:.0f} s",
                  flush=True)
    priors = ([(f"{m} Gaussians, T {p:g}", mixtures[m], p) for m in mixtures
               for p in args.classify_priors if p != "normal"]
              + [("N(0, I)", None, "normal")] * ("normal" in args.classify_priors))

    @tf.function
    def bounds(images, c):
        """[variants, N] bounds on log p(x|y=c), variants in (proposal, decoder, prior, pixel
        outlier) order."""
        labels = tf.fill(tf.shape(images)[:1], c)
        rep = importance.repeat(labels, k)
        out = []
        for proposal in args.proposals:
            drawn = codes(images, labels, proposal == "unlabelled")
            z = importance.flat(drawn["z"])
            for decoder in args.decoders:
                if decoder == "unlabelled":
                    params = model.decoder(z, tf.zeros([tf.shape(z)[0], NUM_CLASSES]))
                else:
                    params = model.decoder_params(z, rep)
                log_pixel = importance.params_log_prob(model, params,
                                                       importance.repeat(images, k))
                for _, mixture, prior in priors:
                    if prior == "normal":
                        log_p = model.prior().log_prob(z)
                    else:
                        log_p = importance.mixture_log_prob(mixture.loc, mixture.scale_tril,
                                                            mixture.weights, rep, z, prior)
                    for share in args.pixel_outliers:
                        log_px = tf.reduce_sum(
                            importance.robust_log_prob(model, log_pixel, share), [1, 2, 3])
                        for power in args.likelihood_powers:
                            log_w = tf.reshape(power * log_px + log_p, [-1, k]) - drawn["log_q"]
                            out.append(importance.log_mean_exp(log_w))
        return tf.stack(out)

    t = time.perf_counter()
    per_class = []
    for c in range(NUM_CLASSES):
        per_class.append(np.concatenate(
            [bounds(tf.constant(cx[s:s + 250]), tf.constant(c)).numpy()
             for s in range(0, n, 250)], 1))
    scores = np.stack(per_class, -1) + log_class_prior  # [variants, N, 10]
    print(f"classification, {n} {args.classify_split} images, K {k} ({time.perf_counter() - t:.0f} s for every "
          "variant)")
    print("| codes from | decoder | p(z|y) | pixel outlier share | accuracy | lowest class |")
    print("|---|---|---|---|---|---|")
    variants = [(q, d, p[0], s, a) for q in args.proposals for d in args.decoders
                for p in priors for s in args.pixel_outliers for a in args.likelihood_powers]
    for (proposal, decoder, name, share, power), score in zip(variants, scores):
        verdict = score.argmax(1)
        accuracy = [(verdict[cy == c] == c).mean() for c in range(NUM_CLASSES)]
        worst = int(np.argmin(accuracy))
        print(f"| q(z|x{', y' if proposal == 'labelled' else ''}) | "
              f"p(x|z{', y' if decoder == 'labelled' else ''})^{power:g} | {name} | {share:g} | "
              f"{(verdict == cy).mean():.4f} | "
              f"{CLASS_NAMES[worst]} {accuracy[worst]:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
