"""Measures how far a model of Fashion-MNIST's derived fields (label, tone, fill: a folder from
`scripts/fashion_mnist_folder.py --derived`) obeys each field, from its SavedModel: the same
functions that computed the fields on the training images (`cvae.data.derived`) measure them
on the generated ones.

    python scripts/field_control.py --model saved_models/NAME/1 [--per-cell 20]

- label: samples asked for each class (tone and fill unknown), recognised as it by the
  project's classifier (saved_models/classifier);
- tone: samples asked for each class and tone, whose measured tone is the one asked; and test
  garments restyled to another tone alone;
- fill: samples asked for each class at that class's test fills (deciles), Pearson correlation
  and mean absolute error between asked and measured fill; and test garments restyled to
  another garment's fill of their class alone.
Prints one JSON object.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvae import limits  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported version folder")
    parser.add_argument("--per-cell", type=int, default=20,
                        help="samples per (class, tone) and per (class, fill level), 1 to 1000")
    parser.add_argument("--restyled", type=int, default=1000,
                        help=f"test images restyled per field, 10 to {limits.TEST_IMAGES}")
    parser.add_argument("--classifier", default="saved_models/classifier")
    args = parser.parse_args(argv)
    if not 1 <= args.per_cell <= 1000:
        parser.error(f"--per-cell must be 1 to 1000, got {args.per_cell}")
    if not 10 <= args.restyled <= limits.TEST_IMAGES:
        parser.error(f"--restyled must be 10 to {limits.TEST_IMAGES}, got {args.restyled}")
    fields_file = Path(args.model) / "assets.extra" / "fields.json"
    if not fields_file.is_file():
        parser.error(f"--model {args.model}: no assets.extra/fields.json (not a model of fields)")
    fields = {f["name"]: f for f in json.loads(fields_file.read_text())}
    if set(fields) != {"label", "tone", "fill"}:
        parser.error(f"--model {args.model}: fields {sorted(fields)}, not label, tone and fill "
                     f"(scripts/fashion_mnist_folder.py --derived)")
    print(json.dumps(measure(args.model, fields, args.per_cell, args.restyled,
                             args.classifier), indent=2))


def measure(model: str, fields: dict, per_cell: int, restyled: int, classifier_dir: str) -> dict:
    import tensorflow as tf

    from cvae.config import DataConfig
    from cvae.data import derived, load_splits, unit_images
    from cvae.evaluation import classifier
    from cvae.labels import CLASS_NAMES

    served = tf.saved_model.load(model).signatures
    classify, _, _ = classifier.load(classifier_dir)
    splits = load_splits(DataConfig())
    # The terciles the folder's tone column was computed with (every training image but one:
    # scripts/fashion_mnist_folder.py).
    edges = derived.tone_edges(*load_splits(DataConfig(validation_size=1)).train)
    labels_to_index = {name: i for i, name in enumerate(fields["label"]["values"])}
    # The folder's label names are Fashion-MNIST's (T-shirt/top written T-shirt-top in folders).
    class_index = np.array([labels_to_index[n] for n in CLASS_NAMES])
    tone_index = {name: i for i, name in enumerate(fields["tone"]["values"])}
    tones = np.array([tone_index[t] for t in derived.TONES])  # derived order -> model's index
    unknown_int = lambda n: tf.constant(np.full(n, -1, np.int32))  # noqa: E731
    unknown_float = lambda n: tf.constant(np.full(n, np.nan, np.float32))  # noqa: E731

    def sample(label, tone=None, fill=None, seed0=0):
        n = len(label)
        out = served["serving_default"](
            seed=tf.constant(np.arange(seed0, seed0 + n, dtype=np.int32)),
            label=tf.constant(class_index[label].astype(np.int32)),
            tone=unknown_int(n) if tone is None else tf.constant(tones[tone].astype(np.int32)),
            fill=unknown_float(n) if fill is None else tf.constant(fill.astype(np.float32)))
        return out["images"].numpy()

    results = {}
    # label
    asked = np.repeat(np.arange(10), per_cell * 3)
    images = sample(asked)
    predicted = classifier.predict(classify, images)["probabilities"].argmax(1)
    results["label"] = {"samples": float((predicted == asked).mean()), "images": len(asked)}
    # tone
    label = np.repeat(np.arange(10), 3 * per_cell)
    tone = np.tile(np.repeat(np.arange(3), per_cell), 10)
    images = sample(label, tone=tone, seed0=100_000)
    seen = derived.tone(images, label, edges)
    results["tone"] = {"samples": float((seen == tone).mean()), "images": len(label)}
    # fill: each class at its own test fills' deciles
    test_fill, test_labels = derived.fill(splits.test[0]), splits.test[1].astype(np.int64)
    levels = np.array([np.quantile(test_fill[test_labels == c], np.linspace(0.1, 0.9, 9))
                       for c in range(10)])  # [10, 9]
    label = np.repeat(np.arange(10), 9 * per_cell)
    asked_fill = np.repeat(levels.reshape(-1), per_cell)
    images = sample(label, fill=asked_fill, seed0=200_000)
    seen_fill = derived.fill(images)
    results["fill"] = {"samples_pearson": float(np.corrcoef(asked_fill, seen_fill)[0, 1]),
                       "samples_mae": float(np.abs(asked_fill - seen_fill).mean()),
                       "images": len(label)}
    # restyle one field alone, on test garments given their own fields
    x = unit_images(splits.test[0][:restyled])
    y = test_labels[:restyled]
    own_tone = derived.tone(splits.test[0][:restyled], y, edges)
    own_fill = test_fill[:restyled]
    base = {"images": tf.constant(x), "label": tf.constant(class_index[y].astype(np.int32)),
            "tone": tf.constant(tones[own_tone].astype(np.int32)),
            "fill": tf.constant(own_fill.astype(np.float32)),
            "to_label": unknown_int(len(y))}
    target_tone = (own_tone + 1) % 3
    moved = served["restyle"](**base, to_tone=tf.constant(tones[target_tone].astype(np.int32)),
                              to_fill=unknown_float(len(y)))["images"].numpy()
    results["tone"]["restyle"] = float((derived.tone(moved, y, edges) == target_tone).mean())
    rng = np.random.default_rng(0)
    target_fill = np.array([rng.choice(test_fill[test_labels == c]) for c in y], np.float32)
    moved = served["restyle"](**base, to_tone=unknown_int(len(y)),
                              to_fill=tf.constant(target_fill))["images"].numpy()
    seen_fill = derived.fill(moved)
    results["fill"]["restyle_pearson"] = float(np.corrcoef(target_fill, seen_fill)[0, 1])
    results["fill"]["restyle_mae"] = float(np.abs(target_fill - seen_fill).mean())
    results["restyled"] = len(y)
    return results


if __name__ == "__main__":
    main()
