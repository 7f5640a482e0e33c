"""Runs every signature of SavedModels in a process that cannot import cvae, TFP or Keras.

    python tests/served_outputs.py INPUTS.npz OUT.npz EXPORT_DIR [EXPORT_DIR ...]

Used by test_export.py; the outputs of export i are saved as "<i>/<signature>/<output>".
"""

import sys

for name in ("cvae", "tensorflow_probability", "keras", "tf_keras"):
    sys.modules[name] = None  # any import of these now raises ImportError

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

inputs = dict(np.load(sys.argv[1]))
results = {}
for i, path in enumerate(sys.argv[3:]):
    sig = tf.saved_model.load(path).signatures
    z = inputs[f"z{i}"]
    calls = {
        "serving_default": dict(label=inputs["label"], seed=inputs["seed"]),
        "decode": dict(z=z, label=inputs["label"]),
        "encode": dict(images=inputs["images"], label=inputs["label"]),
        "reconstruct": dict(images=inputs["images"], label=inputs["label"]),
        "restyle": dict(images=inputs["images"], label=inputs["label"],
                        target_label=inputs["target_label"]),
        "inpaint": dict(images=inputs["images"], mask=inputs["mask"], label=inputs["label"],
                        seed=inputs["seed"]),
        "denoise": dict(images=inputs["images"], label=inputs["label"]),
        "classify": dict(images=inputs["images"]),
        # the images at 14x14 (2x2 blocks' means); label -1 for the last row: the model's choice
        "upscale": dict(images=inputs["images"].reshape(-1, 14, 2, 14, 2, 1).mean((2, 4)),
                        label=np.where(np.arange(len(inputs["label"])) == len(inputs["label"]) - 1,
                                       -1, inputs["label"]).astype(np.int32),
                        seed=inputs["seed"]),
    }
    assert sorted(sig) == sorted(calls), sorted(sig)
    for name, kwargs in calls.items():
        out = sig[name](**{k: tf.constant(v) for k, v in kwargs.items()})
        for key, value in out.items():
            results[f"{i}/{name}/{key}"] = value.numpy()
np.savez(sys.argv[2], **results)
