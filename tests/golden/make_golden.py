"""Writes the golden TF Serving REST requests and responses of the shipped model.

    .venv/bin/python tests/golden/make_golden.py [--model saved_models/cvae/N] [--out DIR]

Re-run it whenever the shipped model changes (and commit what it writes): the responses are
the model's outputs, and `manifest.json` records the model's fingerprint, so
tests/test_serving_json.py fails with a pointer back here when the two disagree.

For each signature it writes, into this folder, for a batch of two rows:

    <signature>.row.request.json        {"signature_name": ..., "instances": [{...}, {...}]}
    <signature>.row.response.json       {"predictions": [{...}, {...}]}  (bare rows for one output)
    <signature>.columnar.request.json   {"signature_name": ..., "inputs": {...}}
    <signature>.columnar.response.json  {"outputs": {...}}  (the bare tensor for one output)

The inputs: labels 7 and 3 (a sneaker and a dress) with seeds 0 and 1 for `serving_default`;
the `z` it returns (rounded to 4 decimals) decoded as a dress and a sneaker for `decode`; the
images it returns (rounded to 3 decimals, so still in [0, 1]) with their labels for `encode`
and `reconstruct`, and restyled as a sandal and a coat for `restyle`; the same images with
their bottom halves missing (seeds 0 and 1) for `inpaint`, and as they are for `denoise` and
`classify`; their 2x2 block means (rounded to 3 decimals) for `upscale`, the first as a sneaker
and the second with label -1 (the model's choice), seeds 0 and 1. Every signature of the model
gets its files (a model with one this script has no request for is refused), and only those:
a version exported before `upscale` gets none for it. Output floats are rounded
to 6 decimals to keep the files small; the tests compare with a tolerance of 1e-5 (1e-3 for
`inpaint` and `upscale`, whose gradient steps on the code can grow another CPU's last-bit
differences).

The JSON is built here directly from TF Serving's documented rules, without
cvae.serving.rest_json, so that the tests compare that module with an independent construction.
Deterministic: stateless seeds, fixed inputs, sorted keys.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
INPUT_DECIMALS = {"images": 3, "z": 4}
OUTPUT_DECIMALS = 6
TOLERANCE = 1e-5
# inpaint's 30 gradient steps on the code can grow another CPU's last-bit differences.
TOLERANCES = {"inpaint": 1e-3, "upscale": 1e-3}
BOTTOM_HALF_MISSING = np.concatenate([np.ones([2, 14, 28, 1], np.float32),
                                      np.zeros([2, 14, 28, 1], np.float32)], axis=1)


def rows(arrays: dict) -> list:
    """The row format: one object per row keyed by name, or bare rows for a single tensor."""
    lists = {name: a.tolist() for name, a in arrays.items()}
    if len(lists) == 1:
        return next(iter(lists.values()))
    batch = len(next(iter(lists.values())))
    return [{name: lists[name][i] for name in lists} for i in range(batch)]


def columns(arrays: dict):
    """The columnar format: an object keyed by name, or the bare tensor for a single one."""
    lists = {name: a.tolist() for name, a in arrays.items()}
    return next(iter(lists.values())) if len(lists) == 1 else lists


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="SavedModel version directory, relative to the "
                                            "repository (default: the shipped version, "
                                            "saved_models/cvae/SHIPPED)")
    parser.add_argument("--out", default=str(HERE),
                        help="folder to write into (default: this one, tests/golden/)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    if args.model is None:
        from cvae.serving.versions import shipped_path

        args.model = str(shipped_path(REPO / "saved_models" / "cvae").relative_to(REPO))
    model_path = REPO / args.model
    signatures = tf.saved_model.load(str(model_path)).signatures

    def run(name, **inputs):
        out = signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}

    label = np.array([7, 3], np.int32)
    generated = run("serving_default", label=label, seed=np.array([0, 1], np.int32))
    images = np.round(generated["images"], INPUT_DECIMALS["images"]).astype(np.float32)
    z = np.round(generated["z"], INPUT_DECIMALS["z"]).astype(np.float32)
    requests = {
        "serving_default": {"label": label, "seed": np.array([0, 1], np.int32)},
        "decode": {"z": z, "label": label[::-1].copy()},
        "encode": {"images": images, "label": label},
        "reconstruct": {"images": images, "label": label},
        "restyle": {"images": images, "label": label,
                    "target_label": np.array([5, 4], np.int32)},
        # The applications: the same images with their bottom halves missing, as their own
        # labels; cleaned; classified.
        "inpaint": {"images": images, "mask": BOTTOM_HALF_MISSING, "label": label,
                    "seed": np.array([0, 1], np.int32)},
        "denoise": {"images": images, "label": label},
        "classify": {"images": images},
        # 14x14: each pixel a 2x2 block's mean; the second row's class the model's choice
        "upscale": {"images": np.round(images.reshape(2, 14, 2, 14, 2, 1).mean((2, 4)),
                                       INPUT_DECIMALS["images"]).astype(np.float32),
                    "label": np.array([7, -1], np.int32), "seed": np.array([0, 1], np.int32)},
    }
    unknown = sorted(set(signatures) - set(requests))
    if unknown:
        sys.exit(f"{args.model} has signature(s) {', '.join(unknown)} this script has no "
                 f"request for: add one to `requests`")
    requests = {name: inputs for name, inputs in requests.items() if name in signatures}
    for name, inputs in requests.items():
        outputs = run(name, **inputs)
        # Doubles rounded to 6 decimals print as at most 8 characters ("0.123457").
        outputs = {k: np.round(v.astype(np.float64), OUTPUT_DECIMALS) if v.dtype.kind == "f"
                   else v for k, v in sorted(outputs.items())}
        files = {
            "row.request": {"signature_name": name, "instances": rows(inputs)},
            "row.response": {"predictions": rows(outputs)},
            "columnar.request": {"signature_name": name, "inputs": columns(inputs)},
            "columnar.response": {"outputs": columns(outputs)},
        }
        for kind, body in files.items():
            text = json.dumps(body, separators=(",", ":"), allow_nan=False)
            (out_dir / f"{name}.{kind}.json").write_text(text + "\n")
    fingerprint = tf.saved_model.experimental.read_fingerprint(str(model_path)).singleprint()
    manifest = {"model": args.model, "fingerprint": fingerprint,
                "input_decimals": INPUT_DECIMALS, "output_decimals": OUTPUT_DECIMALS,
                "tolerance": TOLERANCE, "tolerances": TOLERANCES, "signatures": sorted(requests)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(requests) * 4} golden files and manifest.json for {args.model}")


if __name__ == "__main__":
    sys.exit(main())
