"""The warm-up requests TF Serving replays when it loads a version
(`assets.extra/tf_serving_warmup_requests`): every signature of the contract at each batch size
of `WARMUP_BATCH_SIZES`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from cvae.applications import corruptions
from cvae.labels import NUM_CLASSES
from cvae.serving.contract import SIGNATURES, WARMUP_BATCH_SIZES


def warmup_requests(module: ServingModule, model_name: str) -> list:
    """PredictionLog protos for `assets.extra/tf_serving_warmup_requests`: for every signature in
    SIGNATURES, one request per batch size in WARMUP_BATCH_SIZES. The images are the model's own
    samples and z its own latent codes, so the requests look like real traffic; `model_name`
    goes into each request's model_spec."""
    logs = []
    for n in WARMUP_BATCH_SIZES:
        label = np.arange(n) % NUM_CLASSES
        seed = np.arange(n)
        sample = module.generate(tf.constant(label, tf.int32), tf.constant(seed, tf.int32))
        values = {"label": label, "seed": seed, "z": sample["z"].numpy(),
                  "images": sample["images"].numpy(), "target_label": (label + 1) % NUM_CLASSES,
                  "mask": corruptions.mask("bottom-half", n)}
        # upscale's images: the samples at 14x14 (each pixel a 2x2 block's mean)
        low_res = sample["images"].numpy().reshape(n, 14, 2, 14, 2, 1).mean((2, 4))
        for signature, contract in SIGNATURES.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, tensor in contract["inputs"].items():
                value = low_res if (signature, name) == ("upscale", "images") else values[name]
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(np.asarray(value, dtype=tensor.dtype)))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs
