"""Asking a running TensorFlow Serving for predictions: REST (standard-library HTTP) or gRPC.

    from cvae.serving import client
    out = client.generate(label=3, num=8, seed=0, url="http://localhost:8501", model="cvae")
    out["images"]  # float32 [8, 28, 28, 1] in [0, 1], the same as cvae.serving.generate gives locally

Every failure (no server there, no answer in time, an error status from the server, an answer
that is not what the signature contract promises) is a ServingError with a one-line message.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from cvae.serving import rest_json as serving_json
from cvae.batches import seeds_for

DEFAULT_TIMEOUT = 30.0  # seconds; a cold TF Serving answers its first request slower


class ServingError(RuntimeError):
    """The model server could not be reached, did not answer in time, answered with an error, or
    answered with something else than the signature's outputs; the message says which."""


def predict_url(base_url: str, model: str, version: int | None = None) -> str:
    """`<base_url>/v1/models/<model>[/versions/<version>]:predict`, TF Serving's REST endpoint."""
    if not re.fullmatch(r"https?://[^/\s]+/?", base_url):
        raise ValueError(f"the server URL must look like http://HOST:PORT, got {base_url!r}")
    if not re.fullmatch(r"[^/:\s]+", model):
        raise ValueError(f"a model name cannot contain '/', ':' or spaces: {model!r}")
    path = f"/v1/models/{model}" + ("" if version is None else f"/versions/{version}")
    return base_url.rstrip("/") + path + ":predict"


def rest_predict(base_url: str, model: str, inputs: Mapping[str, np.ndarray], *,
                 signature_name: str = serving_json.DEFAULT_SIGNATURE,
                 version: int | None = None, output_dtypes: Mapping | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> dict[str, np.ndarray]:
    """POSTs a row-format predict request and returns the outputs as arrays keyed by name
    (converted to `output_dtypes` when given; see serving_json.response_to_arrays)."""
    url = predict_url(base_url, model, version)
    data = serving_json.dumps(serving_json.row_request(inputs, signature_name)).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as e:  # before URLError: it is a subclass
        raise ServingError(f"{url} answered HTTP {e.code}: {_error_text(e.read())}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise ServingError(f"no answer from {url} within {timeout:g} s") from None
        reason = getattr(e.reason, "strerror", None) or e.reason
        raise ServingError(f"cannot reach {url}: {reason}") from None
    except TimeoutError:  # raised while reading the answer, after connecting
        raise ServingError(f"no answer from {url} within {timeout:g} s") from None
    except (ConnectionError, http.client.HTTPException) as e:
        raise ServingError(f"connection to {url} failed: {e or type(e).__name__}") from None
    try:
        return serving_json.response_to_arrays(body, output_dtypes)
    except serving_json.ResponseError as e:
        raise ServingError(f"{url} answered with an unusable response: {e}") from None


def _error_text(body: bytes) -> str:
    """The message of a TF Serving error body ({"error": "..."}), else the body's start."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        message = json.loads(text)["error"]
    except (ValueError, TypeError, KeyError):
        return _first_line(text[:300]) or "(empty body)"
    return _first_line(str(message)) or "(empty error)"


def _first_line(text: str) -> str:
    """The first non-empty line: a TensorFlow error's first line says what failed (e.g.
    "assertion failed: [label out of range ...]"); the rest names graph nodes."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def grpc_predict(target: str, model: str, inputs: Mapping[str, np.ndarray], *,
                 signature_name: str = serving_json.DEFAULT_SIGNATURE,
                 version: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> dict[str, np.ndarray]:
    """Calls PredictionService/Predict at `target` (HOST:PORT) and returns the outputs as arrays
    keyed by name, in the dtypes the server sent."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    if not re.fullmatch(r"[^\s/]+:\d+", target):
        raise ValueError(f"the gRPC address must look like HOST:PORT, got {target!r}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            code, details = e.code(), _first_line(e.details() or "")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(f"no answer from gRPC server {target} within {timeout:g} s") \
                    from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(f"cannot reach gRPC server {target}: {details}") from None
            raise ServingError(f"gRPC server {target} answered {code.name}: {details}") from None
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def generate(label: int, num: int, seed: int, *, model: str = "cvae", url: str | None = None,
             grpc_target: str | None = None, version: int | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> dict[str, np.ndarray]:
    """`num` images of class `label` from the served model's serving_default signature, with the
    request seeds cvae.serving.generate.seeds_for(seed, num) (so the same images `pipelines.generate`
    makes from the SavedModel): {"images": float32 [num, 28, 28, 1] in [0, 1],
    "z": float32 [num, latent]}. Give exactly one of `url` (REST) and `grpc_target` (gRPC)."""
    if (url is None) == (grpc_target is None):
        raise ValueError("give exactly one of url (REST) and grpc_target (gRPC)")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    inputs = {"label": np.full(num, label, np.int32), "seed": seeds_for(seed, num)}
    if url is not None:
        out = rest_predict(url, model, inputs, version=version, timeout=timeout,
                           output_dtypes={"images": tf.float32, "z": tf.float32})
        where = predict_url(url, model, version)
    else:
        out = grpc_predict(grpc_target, model, inputs, version=version, timeout=timeout)
        where = f"gRPC server {grpc_target}"
    _check_generated(out, num, where)
    return out


def _check_generated(out: dict, num: int, where: str) -> None:
    """Fails unless `out` is what the serving_default contract promises (docs/serving.md)."""
    if sorted(out) != ["images", "z"]:
        raise ServingError(f"{where} sent outputs {sorted(out)}; serving_default gives "
                           f"images and z (is this the cvae model?)")
    images, z = out["images"], out["z"]
    if images.dtype != np.float32 or images.shape != (num, 28, 28, 1):
        raise ServingError(f"{where} sent images {images.dtype} {list(images.shape)}; expected "
                           f"float32 [{num}, 28, 28, 1]")
    if z.dtype != np.float32 or z.ndim != 2 or z.shape[0] != num:
        raise ServingError(f"{where} sent z {z.dtype} {list(z.shape)}; expected float32 "
                           f"[{num}, latent]")
    if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise ServingError(f"{where} sent images with pixels outside [0, 1]")


# The outputs of every signature with their dtypes, as `cvae.serving.contract.SIGNATURES` lists them
# (REST's JSON does not carry dtypes; tests/test_client.py keeps the two in step). Written out
# here because a client must not need the export code (TensorFlow Probability, Keras).
OUTPUT_DTYPES = {
    "serving_default": {"images": "float32", "z": "float32"},
    "decode": {"images": "float32"}, "encode": {"mean": "float32", "stddev": "float32"},
    "reconstruct": {"images": "float32"}, "restyle": {"images": "float32"},
    "inpaint": {"images": "float32"}, "denoise": {"images": "float32"},
    "classify": {"probabilities": "float32", "label": "int32", "log_likelihood": "float32",
                 "typicality": "float32"},
    "upscale": {"images": "float32", "z": "float32", "label": "int32"},
}


def predict(signature: str, inputs: Mapping[str, np.ndarray], *, model: str = "cvae",
            url: str | None = None, grpc_target: str | None = None, version: int | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, np.ndarray]:
    """Any signature of the served model, over REST (`url`) or gRPC (`grpc_target`; give exactly
    one): its outputs as arrays of the contract's dtypes. An answer with other outputs, or of
    other dtypes, is a ServingError."""
    if (url is None) == (grpc_target is None):
        raise ValueError("give exactly one of url (REST) and grpc_target (gRPC)")
    if signature not in OUTPUT_DTYPES:
        raise ValueError(f"unknown signature {signature!r}: one of {', '.join(OUTPUT_DTYPES)}")
    expected = OUTPUT_DTYPES[signature]
    if url is not None:
        out = rest_predict(url, model, inputs, signature_name=signature, version=version,
                           timeout=timeout, output_dtypes=expected)
        where = predict_url(url, model, version)
    else:
        out = grpc_predict(grpc_target, model, inputs, signature_name=signature,
                           version=version, timeout=timeout)
        where = f"gRPC server {grpc_target}"
    if sorted(out) != sorted(expected):
        raise ServingError(f"{where} sent outputs {sorted(out)}; {signature} gives "
                           f"{', '.join(sorted(expected))}")
    for name, dtype in expected.items():
        if out[name].dtype != np.dtype(dtype):
            raise ServingError(f"{where} sent {name} as {out[name].dtype}; {signature} gives "
                               f"{dtype}")
    return out


def inpaint(images, mask, labels, seeds, **server) -> np.ndarray:
    """The served model's completions float32 [N, 28, 28, 1] of `images` [N, 28, 28, 1] whose
    pixels where `mask` is 0 are missing, as classes `labels`, from `seeds` (see `predict` for
    the server arguments)."""
    inputs = {"images": np.asarray(images, np.float32), "mask": np.asarray(mask, np.float32),
              "label": np.asarray(labels, np.int32), "seed": np.asarray(seeds, np.int32)}
    return predict("inpaint", inputs, **server)["images"]


def denoise(images, labels, **server) -> np.ndarray:
    """The served model's cleaned images float32 [N, 28, 28, 1] of noisy `images` of classes
    `labels`."""
    inputs = {"images": np.asarray(images, np.float32), "label": np.asarray(labels, np.int32)}
    return predict("denoise", inputs, **server)["images"]


def classify(images, **server) -> dict[str, np.ndarray]:
    """The served model's {"probabilities", "label", "log_likelihood", "typicality"} for
    `images` [N, 28, 28, 1] in [0, 1]."""
    return predict("classify", {"images": np.asarray(images, np.float32)}, **server)


def upscale(images, labels, seeds, **server) -> dict[str, np.ndarray]:
    """The served model's {"images": float32 [N, 28, 28, 1] whose block means are `images`',
    "z": the fitted codes, "label": the classes used} for garments `images` [N, 14, 14, 1] or
    [N, 7, 7, 1] in [0, 1] of classes `labels` (-1: the model's choice), from `seeds`."""
    inputs = {"images": np.asarray(images, np.float32), "label": np.asarray(labels, np.int32),
              "seed": np.asarray(seeds, np.int32)}
    return predict("upscale", inputs, **server)
