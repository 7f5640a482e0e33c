"""How far the label steers the decoder of a trained run, by the evaluation classifier.

    python scripts/label_sweep.py --run runs/NAME [--images 100] [--guidance 1 2.5]
    python scripts/label_sweep.py --model saved_models/cvae/10 [--images 100]

Prints, per guidance weight: restyle off-class accuracy of the target class (mean, worst
(source, target) pair), the share still recognised as the source class, the round trip
restyle(restyle(x, y -> t), t -> y) against x (MSE, beside plain reconstruction's), and the
conditional accuracy of codes drawn from N(0, I) (mean, lowest class). Codes are the encoder's
means. With --model, an export instead, through its own `restyle`, `reconstruct` and `decode`
signatures: the report's measurement (`cvae.evaluation.evaluate.label_control`). Figures for
docs/experiments.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory, runs/<name>")
    source.add_argument("--model", help="an export, saved_models/<name>/<version>")
    parser.add_argument("--images", type=int, default=100, help="test images per class (<= 1000)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument("--figure", help="a PNG of ten test garments restyled as every class "
                                         "(at the first guidance weight)")
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 1000:
        parser.error("--images must be in 1..1000")
    import numpy as np
    import tensorflow as tf

    from cvae.evaluation import classifier
    from cvae import data
    from cvae.labels import NUM_CLASSES
    from cvae.training.train import load_run

    start = time.perf_counter()
    if args.model:
        return _export(args.model, args.images, start)
    run = load_run(args.run)
    model = run.model
    splits = data.load_splits(run.config.data.__class__())
    x_all, y_all = splits.test
    pick = np.concatenate([np.flatnonzero(y_all == c)[:args.images] for c in range(NUM_CLASSES)])
    x, y = data.unit_images(x_all[pick]), y_all[pick].astype(np.int32)
    classify, _, _ = classifier.load()

    def predicted(images):
        out = classifier.predict(classify, images)
        return out["probabilities"].argmax(-1)

    def decode(z, labels, w):
        return np.concatenate([model.decode(tf.constant(z[i:i + 500]),
                                            tf.constant(labels[i:i + 500]), guidance=w).numpy()
                               for i in range(0, len(z), 500)])

    mean = np.concatenate([model.encode(tf.constant(x[i:i + 500]), tf.constant(y[i:i + 500]))
                           ["mean"].numpy() for i in range(0, len(x), 500)])
    prior = tf.random.stateless_normal([len(x), model.config.latent_dim], [0, 1]).numpy()
    print(f"run {args.run}: test neg_elbo {run.metrics['test']['neg_elbo']:.2f} nats "
          f"(kl {run.metrics['test']['kl']:.2f}), {len(x)} test images")
    for w in args.guidance:
        recon = decode(mean, y, 1.0)
        recon_mse = float(np.mean((recon - x) ** 2))
        pair = np.zeros([NUM_CLASSES, NUM_CLASSES])
        source_share, trip_mse, n_off = 0.0, 0.0, 0
        for t in range(1, NUM_CLASSES):
            target = (y + t) % NUM_CLASSES
            out = decode(mean, target, w)
            p = predicted(out)
            for s in range(NUM_CLASSES):
                rows = y == s
                pair[s, (s + t) % NUM_CLASSES] = np.mean(p[rows] == target[rows])
            source_share += float(np.sum(p == y))
            n_off += len(y)
            back_mean = model.encode(tf.constant(out), tf.constant(target))["mean"].numpy()
            trip_mse += float(np.sum(np.mean((decode(back_mean, y, 1.0) - x) ** 2, (1, 2, 3))))
        off = pair[~np.eye(NUM_CLASSES, dtype=bool)]
        worst = np.unravel_index(np.argmin(pair + np.eye(NUM_CLASSES) * 9), pair.shape)
        prior_p = predicted(decode(prior, y, w))
        per_class = [float(np.mean(prior_p[y == c] == c)) for c in range(NUM_CLASSES)]
        print("  restyle accuracy, rows: source class, columns: target class")
        for s in range(NUM_CLASSES):
            print("  " + " ".join("  -- " if s == t else f"{pair[s, t]:.2f}"
                                  for t in range(NUM_CLASSES)))
        print(f"guidance {w}: restyle off-class {off.mean():.4f} (worst {off.min():.2f}, "
              f"{worst[0]}->{worst[1]}), still source {source_share / n_off:.4f}, "
              f"round trip MSE {trip_mse / n_off:.5f} (reconstruction {recon_mse:.5f}); "
              f"N(0, I) codes {np.mean(prior_p == y):.4f} (lowest class "
              f"{int(np.argmin(per_class))}: {min(per_class):.2f}); "
              f"reconstructions recognised {np.mean(predicted(recon) == y):.4f}")
    if args.figure:
        from cvae import images

        first = np.array([np.flatnonzero(y == c)[0] for c in range(NUM_CLASSES)])
        rows = [x[first]] + [decode(mean[first], np.full(NUM_CLASSES, t, np.int32),
                                    args.guidance[0]) for t in range(NUM_CLASSES)]
        images.write_png(args.figure, images.grid(np.concatenate(rows), NUM_CLASSES))
        print(f"wrote {args.figure}: the first row the test garments, then one row per target")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


def _export(path: str, per_class: int, start: float) -> int:
    """The report's label figures of an export (`label_control`), printed."""
    from cvae import data
    from cvae.evaluation import classifier, evaluate
    from cvae.serving.generate import load

    model = load(path)
    x_all, y_all = data.load_splits(data.DataConfig()).test
    classify, _, _ = classifier.load()
    out = evaluate.label_control(model, data.unit_images(x_all), y_all.astype("int32"), classify,
                                 evaluate.Settings(restyle_per_class=per_class,
                                                   samples_per_class=per_class))
    rs, prior = out["restyle"], out["prior_codes"]
    worst = rs["worst_pair"]
    lowest = min(prior["per_class"].items(), key=lambda kv: kv[1])
    print(f"{model.path}: restyle off-class {rs['target_accuracy']:.4f} (worst "
          f"{worst['accuracy']:.2f}, {worst['source']}->{worst['target']}), still source "
          f"{rs['still_source']:.4f}, round trip MSE {rs['round_trip_mse']:.5f} (reconstruct "
          f"{rs['reconstruction_mse']:.5f}); N(0, I) codes {prior['overall']:.4f} (lowest "
          f"{lowest[0]}: {lowest[1]:.2f}); {rs['images']} test images, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
