"""SavedModel export: the serving signatures (a public contract) and versioned, atomic writes.

Layout, as TensorFlow Serving expects it: `<base>/<version>/saved_model.pb`, `variables/`, and
`assets.extra/` with `config.json`, `classes.json`, `metrics.json` and
`tf_serving_warmup_requests` (requests TF Serving replays when it loads the version). A version
is written to a non-numeric temporary sibling (which TF Serving ignores), loaded back and
smoke-tested, and only then renamed to the next integer; an existing version is never touched,
and nothing is written through a symlink or outside the base path. `cvae.check` verifies an
export against `SIGNATURES`.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from cvae import likelihoods, sampling
from cvae.applications import classify as classify_app
from cvae.applications import corruptions, importance
from cvae.applications import denoise as denoise_app
from cvae.applications import inpaint as inpaint_app
from cvae.config import ApplicationsConfig, Config
from cvae.data import binarize_static, load_splits, unit_images
from cvae.files import require_writable
from cvae.labels import CLASS_NAMES, NUM_CLASSES
from cvae.model import CVAE, checked_labels, one_hot_labels

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra/
PREDICT_METHOD = "tensorflow/serving/predict"
# One single-row request, and one with a row per class (a typical batch), for each signature.
WARMUP_BATCH_SIZES = (1, NUM_CLASSES)
VERSION_NAME = re.compile(r"[0-9]+")  # what TF Serving takes for a version directory

tfd = tfp.distributions

N, D = "N", "D"  # symbolic dimensions: the batch, and the latent size (config.json's latent_dim)


class TensorContract(NamedTuple):
    """One input or output of a signature: dtype name, shape (ints, N or D) and, where the
    model checks it (inputs) or guarantees it (outputs), the inclusive range of its values and
    (`values`) the only values it may take."""

    dtype: str
    shape: tuple
    value_range: tuple | None = None
    values: tuple | None = None

    def resolved_shape(self, latent_dim: int | None) -> list[int | None]:
        """The shape with N as None (any batch) and D as `latent_dim` (None: not known)."""
        return [None if d == N else latent_dim if d == D else d for d in self.shape]

    def describe(self) -> str:
        """e.g. "int32 [N]"."""
        return f"{self.dtype} [{', '.join(map(str, self.shape))}]"


LABEL = TensorContract("int32", (N,), (0, NUM_CLASSES - 1))
SEED = TensorContract("int32", (N,))
LATENT = TensorContract("float32", (N, D))
IMAGES = TensorContract("float32", (N, 28, 28, 1), (0.0, 1.0))
MASK = TensorContract("float32", (N, 28, 28, 1), (0.0, 1.0), values=(0.0, 1.0))  # 1 = known
PROBABILITIES = TensorContract("float32", (N, NUM_CLASSES), (0.0, 1.0))
NATS = TensorContract("float32", (N,))

# The serving contract, the one place it is written down: signature name -> inputs (in the order
# the exported functions take them) and outputs. ServingModule builds its input signatures from
# it and `cvae.check` verifies every export against it. Every signature uses PREDICT_METHOD.
SIGNATURES: dict[str, dict[str, dict[str, TensorContract]]] = {
    "serving_default": {"inputs": {"label": LABEL, "seed": SEED},
                        "outputs": {"images": IMAGES, "z": LATENT}},
    "decode": {"inputs": {"z": LATENT, "label": LABEL}, "outputs": {"images": IMAGES}},
    "encode": {"inputs": {"images": IMAGES, "label": LABEL},
               "outputs": {"mean": LATENT, "stddev": LATENT}},
    "reconstruct": {"inputs": {"images": IMAGES, "label": LABEL}, "outputs": {"images": IMAGES}},
    "restyle": {"inputs": {"images": IMAGES, "label": LABEL, "target_label": LABEL},
                "outputs": {"images": IMAGES}},
    # The applications (`cvae.applications`, docs/applications.md).
    "inpaint": {"inputs": {"images": IMAGES, "mask": MASK, "label": LABEL, "seed": SEED},
                "outputs": {"images": IMAGES}},
    "denoise": {"inputs": {"images": IMAGES, "label": LABEL}, "outputs": {"images": IMAGES}},
    "classify": {"inputs": {"images": IMAGES},
                 "outputs": {"probabilities": PROBABILITIES, "label": LABEL,
                             "log_likelihood": NATS, "typicality": NATS}},
}


def input_specs(signature: str, latent_dim: int) -> list[tf.TensorSpec]:
    """The tf.TensorSpecs of a signature's inputs, in the order its function takes them."""
    return [tf.TensorSpec(t.resolved_shape(latent_dim), t.dtype, name=name)
            for name, t in SIGNATURES[signature]["inputs"].items()]


def _serving_function(fn, signature: str, latent_dim: int):
    """`fn` as a tf.function with the input signature of SIGNATURES[signature]. Specs bind by
    position, so `fn`'s parameters must be the contract's inputs, in order: otherwise two inputs
    of one type (label, target_label) could be swapped without any shape error."""
    params, inputs = list(inspect.signature(fn).parameters), list(SIGNATURES[signature]["inputs"])
    if params != inputs:
        raise RuntimeError(f"{fn.__name__} takes {params}, but SIGNATURES[{signature!r}] lists "
                           f"the inputs {inputs}")
    return tf.function(fn, input_signature=input_specs(signature, latent_dim))


def _checked_images(images: tf.Tensor) -> tf.Tensor:
    """`images` with run-time checks that they are [N, 28, 28, 1] and every pixel is a number
    in [0, 1]. (A SignatureDef's shape is not enforced when a request is served.)"""
    shape = tf.debugging.assert_equal(
        tf.shape(images)[1:], tf.constant([28, 28, 1]),
        message="images must have shape [N, 28, 28, 1] (28x28 grayscale)")
    with tf.control_dependencies([shape]):
        in_range = tf.reduce_all((images >= 0.0) & (images <= 1.0))  # False for NaN too
    check = tf.debugging.Assert(
        in_range, ["images must be float32 pixels in [0, 1] (scale 8-bit images by 1/255)"])
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _checked_mask(mask: tf.Tensor) -> tf.Tensor:
    """`mask` with run-time checks that it is [N, 28, 28, 1] and every value is 0 or 1."""
    shape = tf.debugging.assert_equal(
        tf.shape(mask)[1:], tf.constant([28, 28, 1]),
        message="mask must have shape [N, 28, 28, 1], like the images")
    with tf.control_dependencies([shape]):
        binary = tf.reduce_all((mask == 0.0) | (mask == 1.0))  # False for NaN too
    check = tf.debugging.Assert(
        binary, ["mask must be 1 (pixel known) or 0 (pixel missing) at every pixel"])
    with tf.control_dependencies([check]):
        return tf.identity(mask)


def _checked_z(z: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """`z` with a run-time check that it is [N, latent_dim]."""
    check = tf.debugging.assert_equal(
        tf.shape(z)[1], latent_dim, message=f"z must have shape [N, {latent_dim}]")
    with tf.control_dependencies([check]):
        return tf.identity(z)


def _same_batch(**tensors) -> None:
    """Fails the request unless every input has the same batch size (dimension 0)."""
    names = list(tensors)
    first = tf.shape(tensors[names[0]])[0]
    for name in names[1:]:
        tf.debugging.assert_equal(
            tf.shape(tensors[name])[0], first,
            message=f"inputs {names[0]} and {name} must have the same batch size (dimension 0)")


class ServingModule(tf.Module):
    """The exported functions. Every input is batched along dimension 0."""

    def __init__(self, model: CVAE, sampler: sampling.LatentSampler | None = None,
                 applications: ApplicationsConfig = ApplicationsConfig(),
                 class_log_prior: np.ndarray | None = None):
        """`sampler`: where `serving_default` takes its codes (`cvae.sampling`); it may be left
        out only for a model configured with sampling="prior" (N(0, I) at its temperature).
        `applications`: the settings of inpaint, denoise and classify (a classify_temperature
        of None is taken as 1, Bayes' rule uncalibrated, until `export` assigns the fitted one
        to the variable `classify_temperature`);
        `class_log_prior`: log p(y) [10] for classify, the training labels' frequencies
        (`cvae.applications.classify.class_log_prior`; uniform if not given)."""
        super().__init__(name="cvae_serving")
        # Track the plain tf.Variables under the Keras variables, not the Keras model. Tracking
        # the model would also trace its own default signature; tracking Keras variables makes
        # SavedModel write a second copy of each that TF1-style loaders (TF Serving,
        # `saved_model_cli run`) restore instead of the one the functions read, which then fail
        # with "Could not find variable" (keras-team/keras#19274).
        self.model_variables = [v.value for v in model.variables]
        object.__setattr__(self, "model", model)  # untracked reference for the functions
        latent = model.config.latent_dim
        if sampler is None:
            if model.config.sampling != "prior":
                raise ValueError(f"sampling={model.config.sampling!r} needs the fitted sampler "
                                 f"(cvae.sampling.for_model)")
            sampler = sampling.standard_normal(latent, model.config.temperature)
        if sampler.latent_dim != latent:
            raise ValueError(f"sampler of {sampler.latent_dim} dimensions for a model of {latent}")
        self.sampling_loc = tf.Variable(sampler.loc, trainable=False, name="sampling_loc")
        self.sampling_scale_tril = tf.Variable(sampler.scale_tril, trainable=False,
                                               name="sampling_scale_tril")
        self.sampling_weights = tf.Variable(sampler.weights, trainable=False,
                                            name="sampling_weights")
        self.temperature = float(sampler.temperature)
        self.generate = _serving_function(self._generate, "serving_default", latent)
        self.decode = _serving_function(self._decode, "decode", latent)
        self.encode = _serving_function(self._encode, "encode", latent)
        self.reconstruct = _serving_function(self._reconstruct, "reconstruct", latent)
        self.restyle = _serving_function(self._restyle, "restyle", latent)
        self.applications = applications
        if class_log_prior is None:
            class_log_prior = np.full([NUM_CLASSES], -np.log(NUM_CLASSES), np.float32)
        self.class_log_prior = tf.Variable(np.asarray(class_log_prior, np.float32),
                                           trainable=False, name="class_log_prior")
        # The codes' noise of classify and denoise: fixed draws, the same for every image (so
        # an image's answer does not depend on the request or the batch it came in).
        self.classify_eps = tf.constant(tf.random.stateless_normal(
            [applications.classify_samples, latent], classify_app.SEED))
        self.denoise_eps = tf.constant(tf.random.stateless_normal(
            [applications.denoise_samples, latent], denoise_app.SEED))
        self.classify_temperature = tf.Variable(applications.classify_temperature or 1.0,
                                                trainable=False, name="classify_temperature")
        # The per-class bounds classify's Bayes' rule starts from: for the calibration at
        # export and for `pipelines.evaluate` (not a serving signature).
        self.class_log_likelihoods = tf.function(self._class_log_likelihoods, input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        self.inpaint = _serving_function(self._inpaint, "inpaint", latent)
        self.denoise = _serving_function(self._denoise, "denoise", latent)
        self.classify = _serving_function(self._classify, "classify", latent)
        # For `pipelines.evaluate`; not serving signatures (TF Serving does not see them).
        likelihood_inputs = [tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images"),
                             tf.TensorSpec([None], tf.int32, name="label"),
                             tf.TensorSpec([None, latent], tf.float32, name="z")]
        self.log_likelihood = tf.function(self._log_likelihood,
                                          input_signature=likelihood_inputs)
        self.binarized_log_likelihood = tf.function(self._binarized_log_likelihood,
                                                    input_signature=likelihood_inputs)
        self.log_prior = tf.function(self._log_prior, input_signature=likelihood_inputs[2:0:-1])

    def _decode_mean(self, z, label, guided=True):
        return self.model.decode(z, label, guided=guided)

    def _generate(self, label, seed):
        """eps ~ N(0, I) and u ~ U[0, 1) drawn from each row's own seed (stateless Philox: the
        same (label, seed) gives the same z in any process and any batch); u picks a component k
        of the label's mixture, z = loc[label, k] + temperature * scale_tril[label, k] @ eps
        (`cvae.sampling`), then the decoder's image."""
        _same_batch(label=label, seed=seed)
        label = checked_labels(label)  # a label out of range fails here, before the gathers
        eps, u = tf.map_fn(
            lambda s: (tf.random.stateless_normal([self.model.config.latent_dim],
                                                  seed=tf.stack([s, 0])),
                       tf.random.stateless_uniform([], seed=tf.stack([s, 1]))),
            seed, fn_output_signature=(tf.float32, tf.float32))
        z = sampling.latents(self.sampling_loc, self.sampling_scale_tril, self.sampling_weights,
                             self.temperature, label, eps, u)
        return {"images": self._decode_mean(z, label), "z": z}

    def _decode(self, z, label):
        _same_batch(z=z, label=label)
        return {"images": self._decode_mean(_checked_z(z, self.model.config.latent_dim), label)}

    def _encode(self, images, label):
        _same_batch(images=images, label=label)
        p = self.model.encode(_checked_images(images), label)
        return {"mean": p["mean"], "stddev": p["stddev"]}

    def _reconstruct(self, images, label):
        _same_batch(images=images, label=label)
        settings = self.applications
        # The code that best explains the image, each pixel's likelihood robust to what the
        # model cannot explain.
        z = inpaint_app.fitted_code(self.model, _checked_images(images), label,
                                    settings.reconstruct_refine_steps,
                                    settings.reconstruct_refine_rate,
                                    settings.reconstruct_pixel_outlier)
        # Without guidance: it would move a reconstruction away from the image it reconstructs.
        return {"images": self._decode_mean(z, label, guided=False)}

    def _restyle(self, images, label, target_label):
        _same_batch(images=images, label=label, target_label=target_label)
        one_hot_labels(target_label)
        mean = self.model.encode(_checked_images(images), label)["mean"]
        return {"images": self._decode_mean(mean, target_label)}

    def _class_prior_log_prob(self, z, labels, temperature):
        """log p(z|y) under the class's mixture with its scales times `temperature`: at the
        sampling temperature what `serving_default` draws from, at 1 the prior of the
        generative model that ships (N(0, I) for an export with sampling="prior")."""
        return importance.mixture_log_prob(self.sampling_loc, self.sampling_scale_tril,
                                           self.sampling_weights, labels, z, temperature)

    def _class_centre(self, labels):
        """The mean of each label's mixture, [N, d]: where in-painting starts."""
        centres = tf.reduce_sum(self.sampling_weights[..., None] * self.sampling_loc, 1)
        return tf.gather(centres, labels)

    def _inpaint(self, images, mask, label, seed):
        """The missing pixels (mask 0) filled by importance-weighted resampling of the code
        given the known ones, then gradient ascent on the code (`cvae.applications.inpaint`);
        the known pixels copied exactly."""
        _same_batch(images=images, mask=mask, label=label, seed=seed)
        images, mask, label = _checked_images(images), _checked_mask(mask), checked_labels(label)
        settings = self.applications
        out = inpaint_app.inpaint(self.model,
                                  lambda z, y: self._class_prior_log_prob(z, y, self.temperature),
                                  lambda y, eps, u: sampling.latents(
                                      self.sampling_loc, self.sampling_scale_tril,
                                      self.sampling_weights, self.temperature, y, eps, u),
                                  self._class_centre,
                                  images, mask, label, seed, settings.inpaint_iterations,
                                  settings.inpaint_samples, settings.inpaint_refine_steps,
                                  settings.inpaint_refine_rate,
                                  lambda z, y: self._class_prior_log_prob(z, y, 1.0))
        return {"images": out["images"]}

    def _denoise(self, images, label):
        """A noisy garment cleaned by inference under a noise model
        (`cvae.applications.denoise`)."""
        _same_batch(images=images, label=label)
        images, label = _checked_images(images), checked_labels(label)
        settings = self.applications
        return {"images": denoise_app.denoise(
            self.model, images, label, self.denoise_eps,
            refine_steps=settings.denoise_refine_steps,
            refine_rate=settings.denoise_refine_rate)["images"]}

    def _classify(self, images):
        """p(y|x) by Bayes' rule from the per-class bounds on log p(x|y) and the training
        classes' frequencies (calibrated by classify_temperature), its argmax, log p(x) in
        nats, and the typicality score (log p(x) corrected by the image's complexity)."""
        images = _checked_images(images)
        # Bayes' rule on the robust observation model's bounds; log p(x) and typicality on
        # the generative model's own (the same codes and decoder passes).
        own, robust = tf.unstack(self._class_bounds(images))
        probabilities = classify_app.bayes_posterior(robust, self.class_log_prior,
                                                     self.classify_temperature)
        log_px = classify_app.log_evidence(own, self.class_log_prior)
        return {"probabilities": probabilities,
                "label": tf.argmax(probabilities, -1, output_type=tf.int32),
                "log_likelihood": log_px,
                "typicality": classify_app.typicality(log_px, images)}

    def _class_bounds(self, images):
        """[2, N, 10] in nats: the K-sample bound on log p(x|y) for every class, with the
        decoder's own pixel likelihood and with it mixed with a uniform one in the share
        `classify_pixel_outlier` (`cvae.applications.classify.class_log_likelihoods`, with
        classify's draws)."""
        return classify_app.class_log_likelihoods(
            self.model, _checked_images(images), self.classify_eps,
            lambda z, y: self._class_prior_log_prob(z, y, 1.0),
            (0.0, self.applications.classify_pixel_outlier))

    def _class_log_likelihoods(self, images):
        """The bounds classify's Bayes' rule starts from, float32 [N, 10] in nats (the robust
        ones of `_class_bounds`)."""
        return self._class_bounds(images)[1]

    def _log_likelihood(self, images, label, z):
        """log p(x | z, y) in nats, float32 [N], on the model's own data representation: the
        gray levels of `images`, or `images` themselves for the Bernoulli likelihood (which
        expects binary pixels)."""
        config = self.model.config
        params = self.model.decoder_params(z, label)
        own = likelihoods.distribution(params, config.likelihood, config.min_scale)
        return own.log_prob(likelihoods.target(images, config.likelihood))

    def _log_prior(self, z, label):
        """log p(z | y) in nats, float32 [N], of the prior generation draws from, at temperature
        1: each class's fitted mixture (`cvae.sampling.class_log_densities`), or N(0, I) for a
        model that samples the prior. With `log_likelihood` it bounds log p(x | y) of the
        generative model that ships (the fitted prior, then the decoder)."""
        label = checked_labels(label)  # a label out of range fails here, before the gather
        if self.model.config.sampling == "prior":
            return tfd.MultivariateNormalDiag(loc=tf.zeros_like(z)).log_prob(z)
        every_class = sampling.class_log_densities(z, self.sampling_loc, self.sampling_scale_tril,
                                                   self.sampling_weights)
        return tf.gather(every_class, label, batch_dims=1)

    def _binarized_log_likelihood(self, images, label, z):
        """log P(binarize_static(images) | z, y) in nats, float32 [N]: the model's probability
        of the images thresholded at 0.5 (`cvae.likelihoods.binarized_logits`), which compares
        models of gray levels with models of binary pixels."""
        config = self.model.config
        logits = likelihoods.binarized_logits(self.model.decoder_params(z, label),
                                              config.likelihood, config.min_scale)
        binary = tfd.Independent(tfd.Bernoulli(logits=logits), reinterpreted_batch_ndims=3)
        return binary.log_prob(binarize_static(images))

    def signatures(self) -> dict:
        return {"serving_default": self.generate, "decode": self.decode, "encode": self.encode,
                "reconstruct": self.reconstruct, "restyle": self.restyle,
                "inpaint": self.inpaint, "denoise": self.denoise, "classify": self.classify}


def versions(base_dir: str | os.PathLike) -> list[int]:
    """The integer version directories under a model base path, ascending."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


# `<base>/SHIPPED` holds the number of the version the project ships (the one its README, report
# and tests describe), which need not be the newest: every `make train` exports a newer one.
# TF Serving ignores it, as it ignores every name that is not an integer (it serves the newest).
SHIPPED_FILE = "SHIPPED"


def shipped_version(base_dir: str | os.PathLike) -> int:
    """The version number that `<base_dir>/SHIPPED` names; raises ValueError if the file is
    missing, holds anything but one integer, or names a version that is not there."""
    file = Path(base_dir) / SHIPPED_FILE
    try:
        text = file.read_text().strip()
    except OSError as e:
        raise ValueError(f"{file}: cannot read the shipped version ({e.strerror})") from None
    if not VERSION_NAME.fullmatch(text):
        raise ValueError(f"{file}: expected one version number, got {text[:40]!r}")
    if int(text) not in versions(base_dir):
        raise ValueError(f"{file} names version {int(text)}, which is not among "
                         f"{versions(base_dir)}")
    return int(text)


def shipped_path(base_dir: str | os.PathLike) -> Path:
    """`<base_dir>/<shipped_version(base_dir)>`."""
    return Path(base_dir) / str(shipped_version(base_dir))


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
        for signature, contract in SIGNATURES.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, tensor in contract["inputs"].items():
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(np.asarray(values[name], dtype=tensor.dtype)))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def _refuse_unsafe_base(base: Path) -> Path:
    """The resolved base path; raises ValueError if `base` looks like a version directory itself
    or holds a version directory that is a symlink (writing beside it, or TF Serving loading it,
    would reach outside the base path)."""
    root = base.resolve()
    for name in (base.name, root.name):
        if VERSION_NAME.fullmatch(name):
            raise ValueError(
                f"model base path {base} looks like a version directory ({name!r} is an "
                f"integer); give the folder that holds the versions, e.g. {root.parent}")
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if VERSION_NAME.fullmatch(entry.name) and entry.is_symlink():
                raise ValueError(
                    f"version directory {entry} is a symlink (to {os.readlink(entry)}); versions "
                    f"under {base} must be real directories inside it")
    return root


def _own_child(root: Path, path: Path) -> Path:
    """`path` if it is a direct child of the resolved base path `root` and not a symlink; raises
    ValueError otherwise (e.g. a symlink planted while the export was running)."""
    if path.is_symlink() or path.resolve().parent != root:
        raise ValueError(f"refusing to write {path}: it is a symlink or resolves outside the "
                         f"model base path {root}")
    return path


def write_version(base_dir: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Has `fill` write a complete version into a temporary sibling folder, then renames it to
    the next integer version under `base_dir` and returns that path. Nothing is left behind if
    `fill` fails.

    The version number is taken when the finished folder is renamed into place; if another
    writer took it first (the rename finds a non-empty directory), the next one is tried.
    A base path named like a version (`saved_models/cvae/3`) or holding a symlinked version is
    refused with ValueError before anything is written.
    """
    base = Path(base_dir)
    root = _refuse_unsafe_base(base)
    require_writable(base, "a version")
    created_base = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-export-{uuid.uuid4().hex}"
    try:
        fill(tmp)
        for _ in range(100):
            final = _own_child(root, base / str((versions(base) or [0])[-1] + 1))
            try:
                os.rename(tmp, final)  # fails on a non-empty directory: never overwrites
                return final
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise RuntimeError(f"could not claim a version number under {base}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if created_base and not any(base.iterdir()):
            base.rmdir()


TRAINING_LOGS = "training_logs"  # assets.extra/training_logs/{train,validation}/: TensorBoard


def export(model: CVAE, config: Config, metrics: dict | None,
           base_dir: str | os.PathLike, logs_dir: str | os.PathLike | None = None,
           sampler: sampling.LatentSampler | None = None) -> Path:
    """Writes the model as the next version under `base_dir` (see `write_version`) and returns
    its path. `logs_dir`, a run's TensorBoard folder, has its train and validation scalars
    copied into assets.extra/training_logs/ (for the training curves of `pipelines.evaluate`).
    `sampler`: the codes of `serving_default`, of the kind and temperature `config.model` names;
    by default the one it asks for, fitted to the config's training images
    (`cvae.sampling.for_model`). `config` is what assets.extra/config.json records, so its
    model section must be the model's own; its applications section is recorded with
    classify_temperature fitted on validation images if it was None
    (`cvae.applications.classify.fit_calibration`)."""
    if model.config != config.model:
        raise ValueError("export: the model's config differs from the config to be recorded "
                         "(set both, as pipelines.export does for --guidance)")
    if sampler is not None and sampler.temperature != config.model.temperature:
        raise ValueError(f"export: the sampler's temperature {sampler.temperature} is not the "
                         f"config's {config.model.temperature}")
    if (sampler is not None and config.model.sampling == "class_posterior"
            and sampler.components != config.model.sampling_components):
        raise ValueError(f"export: the sampler has {sampler.components} Gaussian(s) per class, "
                         f"the config's sampling_components is {config.model.sampling_components}")
    # TF Serving names the model after its base path by convention (MODEL_NAME=cvae).
    model_name = Path(base_dir).resolve().name

    def fill(tmp: Path) -> None:
        # Here, after write_version has vetted the base path.
        splits = load_splits(config.data)
        fitted = sampler
        if fitted is None:
            training = splits.train if config.model.sampling != "prior" else (None, None)
            fitted = sampling.for_model(model, config.model, *training)
        # classify's class frequencies, and its calibration if the config leaves it to the
        # export (then recorded in config.json): on validation images, never the test's.
        class_log_prior = classify_app.class_log_prior(splits.train[1])
        applications = config.applications
        module = ServingModule(model, fitted, applications, class_log_prior)
        if applications.classify_temperature is None:
            n = applications.calibration_images
            temperature = classify_app.fit_calibration(
                module.class_log_likelihoods, class_log_prior,
                unit_images(splits.validation[0][:n]), splits.validation[1][:n])
            module.classify_temperature.assign(temperature)
            applications = dataclasses.replace(applications, classify_temperature=temperature)
        recorded = dataclasses.replace(config, applications=applications)
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        extra = tmp / ASSETS_EXTRA
        extra.mkdir()
        # As training records it: "auto" made concrete (for a config given as it was written).
        (extra / "config.json").write_text(recorded.resolved().to_json())
        (extra / "classes.json").write_text(json.dumps(list(CLASS_NAMES), indent=2))
        (extra / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
        with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
            for log in warmup_requests(module, model_name):
                writer.write(log.SerializeToString())
        for split in ("train", "validation") if logs_dir is not None else ():
            if (Path(logs_dir) / split).is_dir():
                shutil.copytree(Path(logs_dir) / split, extra / TRAINING_LOGS / split)
        _smoke_test(tmp, config.model.latent_dim)

    return write_version(base_dir, fill)


def exported_config(path: str | os.PathLike) -> Config:
    """The config an exported version records (assets.extra/config.json)."""
    config_file = Path(path) / ASSETS_EXTRA / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: not an exported version (no {ASSETS_EXTRA}/config.json)")
    return Config.from_json(config_file.read_text())


def exported_sampler(path: str | os.PathLike) -> sampling.LatentSampler:
    """The codes' sampler an exported version draws `serving_default`'s codes from (its
    variables sampling_loc, sampling_scale_tril, sampling_weights and its config's
    temperature): exporting the same weights again with it keeps every generated image
    bit-identical to that version's, without fitting the mixtures again."""
    temperature = exported_config(path).model.temperature
    loaded = tf.saved_model.load(str(path))
    if not hasattr(loaded, "sampling_loc"):
        raise ValueError(f"{path}: exported without a sampler's variables (before version 8)")
    return sampling.LatentSampler(loaded.sampling_loc.numpy(), loaded.sampling_scale_tril.numpy(),
                                  temperature, loaded.sampling_weights.numpy())


def export_run(result, base_dir: str | os.PathLike | None = None,
               sampler: sampling.LatentSampler | None = None) -> Path:
    """Exports a `cvae.train.TrainResult` (to its config's export_dir by default; `sampler` as
    `export` takes it) and writes the class grid of the exported version to
    <run dir>/class_grid.png: the report's picture (`cvae.figures.class_grid`, a row per class
    named by its label)."""
    from cvae import figures, generate
    from cvae.files import atomic_write_bytes

    path = export(result.model, result.config, result.metrics,
                  base_dir or result.config.train.export_dir, logs_dir=result.run_dir / "logs",
                  sampler=sampler)
    print(f"exported {path}")
    grid_path = result.run_dir / "class_grid.png"
    atomic_write_bytes(grid_path, figures.class_grid(generate.load(path)))
    print(f"wrote {grid_path} (one row per class)")
    return path


def _smoke_test(path: Path, latent_dim: int) -> None:
    """Loads the export back and checks that generation gives finite images of the right shape."""
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](label=tf.range(10), seed=tf.range(10))
    images, z = out["images"].numpy(), out["z"].numpy()
    if images.shape != (10, 28, 28, 1) or z.shape != (10, latent_dim):
        raise RuntimeError(f"export smoke test: got images {images.shape}, z {z.shape}")
    if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise RuntimeError("export smoke test: generated images are not finite values in [0, 1]")
