"""Sweeps generation's inference settings on one trained run, without exporting each:

    python scripts/sampling_sweep.py --run runs/NAME --components 8 16 --temperatures 0.6 0.8 \
        --guidance 1 1.5 [--samples-per-class 500]

For every number of mixture components it fits each class's mixture once (as `pipelines.export`
does, `cvae.model.sampling.for_model`), then for every temperature and guidance draws
`--samples-per-class` codes per class and measures what `pipelines.evaluate` measures of
samples, with the same classifier: conditional accuracy, the lowest class, the Fréchet distance
to the test images and diversity (samples over real). First it prints what the run's
reconstructions of the test images score (mean squared error, how often the classifier
recognises them, overall and per class beside the real images, their Fréchet distance), which no
sampling setting changes, and the validation and test -ELBO the run recorded; with
`--reconstruction-guidance 1 1.25 ...` one such line per guidance of the reconstruction's
decoding (params(z, none) + w (params(z, y) - params(z, none)); `reconstruct` decodes at w 1),
`--reconstruction-refine-steps 0 30` also with the code moved by that many Adam steps (step size
0.2, `cvae.applications.inpaint.fitted_code`: `refine` with every pixel known) up
log p(x | z, y) + log N(z; 0, I) from the encoder's mean; `--reconstructions-only` stops there.
Prints one row per setting;
the experiment log (docs/experiments.md) quotes them. A setting is then exported with
`pipelines.export --run runs/NAME --sampling-components K --temperature T --guidance W`.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import cli  # noqa: E402  (quiet libraries before TensorFlow loads)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, runs/<name>")
    parser.add_argument("--components", type=int, nargs="+", default=[8])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.6, 0.8, 1.0])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument("--samples-per-class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconstruction-guidance", type=float, nargs="+", default=[1.0],
                        help="decode the test images' reconstructions at each of these guidance "
                             "weights (default: 1, what `reconstruct` does)")
    parser.add_argument("--reconstruction-refine-steps", type=int, nargs="+", default=[0],
                        help="gradient steps on each reconstruction's code before decoding "
                             "(default: 0, what `reconstruct` does)")
    parser.add_argument("--reconstructions-only", action="store_true",
                        help="print the reconstruction lines and stop (no mixtures fitted)")
    args = parser.parse_args(argv)
    if not 2 <= args.samples_per_class <= 10_000:
        parser.error("--samples-per-class must be between 2 and 10000")
    if any(not 1 <= k <= 100 for k in args.components):
        parser.error("--components must be between 1 and 100")
    if any(not 0 <= w <= 10 for w in args.reconstruction_guidance):
        parser.error("--reconstruction-guidance must be between 0 and 10")
    if any(not 0 <= n <= 1000 for n in args.reconstruction_refine_steps):
        parser.error("--reconstruction-refine-steps must be between 0 and 1000")
    cli.quiet_libraries()

    import numpy as np
    import tensorflow as tf

    from cvae.evaluation import classifier
    from cvae import data
    from cvae.model import sampling
    from cvae.evaluation import metrics as m
    from cvae.applications import inpaint
    from cvae.evaluation.evaluate import real_features
    from cvae.labels import CLASS_NAMES, NUM_CLASSES
    from cvae.training.train import load_run

    run = load_run(args.run)
    model, config = run.model, run.config
    splits = data.load_splits(config.data)
    classify, _, _ = classifier.load()
    real = real_features(splits, classify)["test"]
    test_labels = splits.test[1]
    n = args.samples_per_class
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), n)
    eps = tf.random.stateless_normal([len(labels), config.model.latent_dim], [args.seed, 0])
    u = tf.random.stateless_uniform([len(labels)], [args.seed, 1])

    @tf.function
    def images(z, y, w):  # w a Python number: one trace per guidance
        return model.decode(z, y, guidance=w)

    gray = data.unit_images(splits.test[0])
    held_out = len(labels)
    print(f"{args.run}: seed {config.train.seed}, {config.train.epochs} epochs; -ELBO "
          f"validation {run.metrics['validation']['neg_elbo']:.2f}, test "
          f"{run.metrics['test']['neg_elbo']:.2f} nats (KL {run.metrics['test']['kl']:.2f})")
    test_y = test_labels.astype(np.int32)
    batches = [(gray[s:s + 1000], test_y[s:s + 1000]) for s in range(0, len(gray), 1000)]

    @tf.function
    def fitted(x, y, steps):  # steps a Python number: one trace per count
        return inpaint.fitted_code(model, x, y, steps, 0.2)

    verdict = classifier.predict(classify, gray)["probabilities"].argmax(1)
    print("recognised per class, real test images: " + ", ".join(
        f"{CLASS_NAMES[c]} {(verdict[test_labels == c] == c).mean():.3f}"
        for c in range(NUM_CLASSES)))
    for steps in args.reconstruction_refine_steps:
        codes = [fitted(x, y, steps) for x, y in batches]
        for w in args.reconstruction_guidance:
            recon = np.concatenate([images(z, y, w).numpy() for z, (_, y) in zip(codes, batches)])
            out = classifier.predict(classify, recon)
            verdict = out["probabilities"].argmax(1)
            per_class = [(verdict[test_labels == c] == c).mean() for c in range(NUM_CLASSES)]
            worst = int(np.argmin(per_class))
            print(f"reconstructions of the {len(gray)} test images, guidance {w:g}, "
                  f"{steps} refining steps: MSE {((recon - gray) ** 2).mean():.5f}, recognised "
                  f"{(verdict == test_labels).mean():.4f} (lowest {CLASS_NAMES[worst]} "
                  f"{per_class[worst]:.3f}), Fréchet "
                  f"{m.frechet_distance(out['features'][:held_out], real):.2f}", flush=True)
            print("    per class: " + ", ".join(f"{CLASS_NAMES[c]} {per_class[c]:.3f}"
                                             for c in range(NUM_CLASSES)), flush=True)
    if args.reconstructions_only:
        return
    print(f"{'K':>3} {'T':>5} {'w':>5}  accuracy  lowest class        Fréchet  diversity")
    for k in args.components:
        t0 = time.perf_counter()
        fitted = sampling.for_model(
            model, config.model.__class__(**{**config.model.__dict__,
                                             "sampling_components": k}),
            splits.train[0], splits.train[1])
        fit_seconds = time.perf_counter() - t0
        for t in args.temperatures:
            sampler = sampling.LatentSampler(fitted.loc, fitted.scale_tril, t, fitted.weights)
            z = sampler.latents(tf.constant(labels), eps, u)
            for w in args.guidance:
                x = np.concatenate([images(z[s:s + 1000], labels[s:s + 1000], w).numpy()
                                    for s in range(0, len(labels), 1000)])
                out = classifier.predict(classify, x)
                verdict = out["probabilities"].argmax(1)
                per_class = [(verdict[labels == c] == c).mean() for c in range(NUM_CLASSES)]
                worst = int(np.argmin(per_class))
                diversity = np.mean([
                    m.mean_pairwise_distance(out["features"][labels == c][:500])
                    / m.mean_pairwise_distance(real[test_labels == c][:500])
                    for c in range(NUM_CLASSES)])
                frechet = m.frechet_distance(out["features"], real)
                print(f"{k:>3} {t:>5.2f} {w:>5.2f}  {(verdict == labels).mean():.4f}    "
                      f"{CLASS_NAMES[worst]:<12} {per_class[worst]:.3f}  {frechet:7.2f}  "
                      f"{diversity:.3f}", flush=True)
        print(f"    (K={k}: mixtures fitted in {fit_seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
