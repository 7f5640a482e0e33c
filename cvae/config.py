"""Frozen configuration dataclasses; their defaults train the shipped model.

    python -m pipelines.train --name NAME        # the defaults: the shipped model's recipe
    make train                                   # the quick recipe (Config.quick): 15 epochs

The defaults train 150 epochs of 55,000 images in about 100 minutes on the project's 2-core CPU
(bfloat16 by `precision="auto"`) to a test negative ELBO near 1840 nats per image, then export
the next version under saved_models/cvae (5 minutes more on a shared machine, most of it fitting
the per-class mixtures). For a smoke run that finishes in seconds use `Config.small()` (what the
tests train). How each default was chosen, with the sweeps and their figures:
docs/experiments.md. One module of some 530 lines because it is one idea, every setting with
the reason for its default next to it, and the flags and JSON that read them back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Literal

from cvae import limits

Likelihood = Literal["discretized_logistic", "bernoulli", "continuous_bernoulli"]
DataSource = Literal["auto", "idx", "tfds"]
Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
Schedule = Literal["cosine", "constant"]
Strategy = Literal["default", "mirrored", "multiworker"]
Architecture = Literal["mlp", "conv", "resnet", "tutorial"]
Binarization = Literal["dynamic", "static"]
Sampling = Literal["class_posterior", "prior"]


def _require(ok: bool, name: str, value, problem: str) -> None:
    if not ok:
        raise ValueError(f"config: {name}={value!r} {problem}")


def _at_most(name: str, value, bound: int) -> None:
    """Refuses a count (or a tuple of sizes) above its bound in `cvae.limits`."""
    if isinstance(value, tuple):
        _require(all(v <= bound for v in value), name, value, f"must hold sizes <= {bound}")
    else:
        _require(value is None or value <= bound, name, value, f"must be <= {bound}")



@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where Fashion-MNIST comes from and how it is batched."""

    # Folder holding the four original IDX .gz files; None searches $FASHION_MNIST_DIR, then
    # /usr/share/datasets/fashion-mnist, then falls back to tfds (see `cvae.data.resolve_source`).
    data_dir: str | None = None
    source: DataSource = "auto"
    # Held out of the 60,000 training images by a fixed permutation (independent of `seed`), so
    # every run validates on the same images; the official 10,000 test images stay untouched.
    validation_size: int = 5000
    batch_size: int = 128
    # Use only the first N training (and N // 5 validation) images: smoke runs and tests.
    limit: int | None = None
    # One's own images instead of Fashion-MNIST (`cvae.data.folder`, docs/own-images.md): a
    # folder of PNG or JPEG files, with `metadata` (a CSV: a `file` column and one column per
    # field) or in class sub-folders (one field, `label`).
    images: str | None = None
    metadata: str | None = None
    # The CSV's fields that are numbers, each "NAME=LOW:HIGH" (its range); the other columns
    # are categorical, their values the column's distinct cells.
    continuous: tuple[str, ...] = ()
    # The folder's images held out for validation and for test, by a permutation of
    # `split_seed` (the same split whatever the training seed).
    validation_share: float = 0.1
    test_share: float = 0.1
    split_seed: int = 0

    def __post_init__(self):
        _require(self.validation_size >= 1, "validation_size", self.validation_size, "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _require(self.limit is None or self.limit >= 1, "limit", self.limit, "must be >= 1")
        for name in ("validation_size", "batch_size", "limit"):  # Fashion-MNIST's 60,000
            _at_most(name, getattr(self, name), limits.TRAIN_IMAGES)
        for spec in self.continuous:
            _require(continuous_range(spec) is not None, "continuous", spec,
                     "must be NAME=LOW:HIGH with numbers LOW < HIGH, e.g. fill=0:1")
        for name in ("validation_share", "test_share"):
            _require(0 < getattr(self, name) < 0.5, name, getattr(self, name),
                     "must be between 0 and 0.5")
        _require(self.split_seed >= 0, "split_seed", self.split_seed, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of q(z|x,y) and p(x|z,y)."""

    # 64 numbers a garment: enough for its print and texture at beta 0.1 (docs/experiments.md).
    latent_dim: int = 64
    # The networks (`cvae.model.networks`, a module each):
    # resnet: residual convolutional encoder and decoder at 14x14 and 7x7 (`encoder_filters`,
    #   `decoder_filters`, `residual_blocks`, `hidden_dim`), the last layer sub-pixel to 28x28;
    #   about 10 M multiply-adds an image each way. The shipped model.
    # The others have the convolutional encoder (28 -> 14 -> 7, `encoder_filters`, then a dense
    # layer of `hidden_dim`), with these decoders:
    # mlp: [z, y] -> dense layers of `decoder_hidden` (y joined again before each) -> the
    #   likelihood's parameters for all 784 pixels; about 1.1 M multiply-adds an image, a sixth of
    #   "conv", which is what makes k=1000 importance sampling and fast generation affordable.
    # conv: [z, y] -> dense -> 7x7 -> transposed convolutions (`decoder_filters`) to 28x28.
    # tutorial: the encoder and decoder of TensorFlow's convolutional-VAE tutorial (conv 32, 64
    #   -> dense head; dense 7x7x32 -> transposed conv 64, 32, 1), for the comparison in
    #   `pipelines.evaluate --compare` (see `Config.tutorial`).
    architecture: Architecture = "resnet"
    decoder_hidden: tuple[int, ...] = (512, 512)
    # False: the label is replaced by zeros everywhere it enters, which is the same networks
    # without conditioning (the comparison model of `pipelines.evaluate --compare`).
    conditional: bool = True
    # Label dropout: this fraction of training images is shown without its label (zeros for y
    # in the encoder and the decoder), so the same networks also learn p(x|z) without a label,
    # which `guidance` needs.
    label_dropout: float = 0.1
    # The images the model shows (every serving signature) are decoded with the decoder's
    # parameters moved from the label-free ones towards, and past, the labelled ones:
    # params(z, none) + guidance * (params(z, y) - params(z, none)); 1 is the plain
    # conditional decoder. It is the guidance of Ho & Salimans (2022) applied to a VAE's
    # decoder, and makes samples follow their label more closely. Likelihoods (the ELBO, the
    # IWAE bound) are always of the plain conditional model. 2.0 on the shipped model, whose
    # decoder takes the type from y: 1 left Shirt samples at 0.69 (docs/experiments.md).
    guidance: float = 2.0
    # Where generated images take their latent codes from (`cvae.model.sampling`; docs/model.md#sampling):
    # class_posterior: a mixture of Gaussians fitted at export to each class's codes on the
    # training images, so samples stay where the decoder has learnt to draw that class (one
    # mixture of all the codes for an unconditional model); prior: N(0, I).
    # Only generation uses it: the ELBO and the IWAE bound are always of the N(0, I) prior.
    sampling: Sampling = "class_posterior"
    # Gaussians per class for class_posterior: a mixture fitted by EM to the class's codes
    # (`cvae.model.sampling.fit_mixture`); 1 is one Gaussian matching the codes' mean and covariance.
    sampling_components: int = 16
    # The codes' spread about their component's centre, z = loc_yk + temperature * L_yk eps:
    # below 1, more typical garments and less variety. Like guidance, an inference setting.
    # 1: the fitted mixture itself, the prior of the shipped model's likelihood bound.
    temperature: float = 1.0
    # discretized_logistic: 256-level grayscale likelihood (default; docs/model.md#likelihoods).
    # bernoulli: dynamically binarised pixels, for likelihoods comparable with the literature.
    # continuous_bernoulli: density on [0, 1] (Loaiza-Ganem & Cunningham, 2019).
    likelihood: Likelihood = "discretized_logistic"
    # How pixels become binary for the Bernoulli likelihood: dynamic draws x ~ Bernoulli(pixel)
    # afresh at every step; static thresholds pixel > 0.5 once (TensorFlow's tutorial).
    binarization: Binarization = "dynamic"
    encoder_filters: tuple[int, ...] = (32, 64)
    decoder_filters: tuple[int, ...] = (64, 32)
    hidden_dim: int = 512
    # Also tile the one-hot label onto the decoder's 7x7 and 14x14 feature maps.
    decoder_label_planes: bool = True
    # resnet: residual blocks at each resolution (14x14 and 7x7) of the encoder and decoder.
    residual_blocks: int = 1
    # Lower bound of the logistic scale, in [0, 1] pixel units (0.3 of one gray level): keeps
    # log-probabilities finite on pixels the decoder is certain about.
    min_scale: float = 1e-3
    # (height, width, channels) of the images: Fashion-MNIST's 28x28 grey, or what a folder of
    # one's own holds (`cvae.data.folder`): square, a side that is a multiple of 4 (the networks
    # halve it twice), 1 (grey) or 3 (RGB) channels, each channel its own likelihood.
    image_shape: tuple[int, ...] = (28, 28, 1)
    # The metadata the model is conditioned on, when it is not Fashion-MNIST's class: each a
    # `cvae.data.fields.Field` as JSON, set from the data by training (not a flag). Empty: the
    # ten classes, an integer label.
    fields: tuple[dict, ...] = ()

    def __post_init__(self):
        _require(self.latent_dim >= 1, "latent_dim", self.latent_dim, "must be >= 1")
        _require(len(self.encoder_filters) == 2, "encoder_filters", self.encoder_filters,
                 "must have 2 entries (28 -> 14 -> 7: the side halved twice)")
        _require(len(self.decoder_filters) == 2, "decoder_filters", self.decoder_filters,
                 "must have 2 entries (7 -> 14 -> 28: the side doubled twice)")
        _require(all(f >= 1 for f in self.encoder_filters + self.decoder_filters),
                 "encoder_filters/decoder_filters", self.encoder_filters + self.decoder_filters,
                 "must be positive")
        _require(self.residual_blocks >= 0, "residual_blocks", self.residual_blocks,
                 "must be >= 0")
        _require(self.hidden_dim >= 1, "hidden_dim", self.hidden_dim, "must be >= 1")
        _require(len(self.decoder_hidden) >= 1 and all(h >= 1 for h in self.decoder_hidden),
                 "decoder_hidden", self.decoder_hidden, "must be one or more positive sizes")
        _require(0 <= self.label_dropout < 1, "label_dropout", self.label_dropout,
                 "must be in [0, 1)")
        _require(self.guidance >= 0, "guidance", self.guidance, "must be >= 0")
        _require(self.guidance == 1 or self.label_dropout > 0, "guidance", self.guidance,
                 "needs a model trained with label_dropout > 0 (else use 1)")
        _require(self.sampling in typing.get_args(Sampling), "sampling", self.sampling,
                 f"must be one of {typing.get_args(Sampling)}")
        _require(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        _require(self.sampling_components >= 1, "sampling_components", self.sampling_components,
                 "must be >= 1")
        _require(self.architecture in typing.get_args(Architecture), "architecture",
                 self.architecture, f"must be one of {typing.get_args(Architecture)}")
        _require(self.binarization in typing.get_args(Binarization), "binarization",
                 self.binarization, f"must be one of {typing.get_args(Binarization)}")
        _require(self.likelihood in typing.get_args(Likelihood), "likelihood", self.likelihood,
                 f"must be one of {typing.get_args(Likelihood)}")
        _require(self.min_scale > 0, "min_scale", self.min_scale, "must be > 0")
        _require(len(self.image_shape) == 3 and self.image_shape[0] == self.image_shape[1]
                 and self.image_shape[0] % 4 == 0 and 8 <= self.image_shape[0] <= 256
                 and self.image_shape[2] in (1, 3), "image_shape", self.image_shape,
                 "must be (side, side, channels), the side a multiple of 4 from 8 to 256, "
                 "1 or 3 channels")
        _require(self.architecture != "tutorial" or tuple(self.image_shape) == (28, 28, 1),
                 "image_shape", self.image_shape, "the tutorial's networks take 28x28x1 only")
        _at_most("latent_dim", self.latent_dim, limits.MAX_LATENT_DIM)
        for name in ("hidden_dim", "decoder_hidden", "encoder_filters", "decoder_filters"):
            _at_most(name, getattr(self, name), limits.MAX_LAYER_WIDTH)
        _require(len(self.decoder_hidden) <= limits.MAX_LAYERS, "decoder_hidden",
                 self.decoder_hidden, f"must be at most {limits.MAX_LAYERS} layers")
        _at_most("residual_blocks", self.residual_blocks, limits.MAX_LAYERS)
        _at_most("sampling_components", self.sampling_components,
                 limits.MAX_SAMPLING_COMPONENTS)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, and where results go."""

    # The shipped recipe starts from version 10's weights (`init_from`), trained 150 epochs
    # from scratch at 2e-3 (`Config.from_scratch`), and teaches its decoder the label in 30
    # more at a quarter of that rate (docs/experiments.md#the-label-steers-the-decoder).
    epochs: int = 30
    # Adam's (peak) learning rate. At another batch size B, scale it by sqrt(B / 128) (the
    # square-root rule for Adam): the benchmark's baseline gets 1e-3 at its batch of 32 that way.
    learning_rate: float = 5e-4
    # cosine: the rate falls from `learning_rate` to 0 along a half cosine over the run's
    # `epochs` (keras.optimizers.schedules.CosineDecay), so late epochs settle instead of
    # jittering; constant: `learning_rate` throughout (configs written before this field).
    # Cosine from 2e-3 reached the benchmark's quality target in fewer epochs than any constant
    # rate (docs/experiments.md#speed-what-was-tried).
    lr_schedule: Schedule = "cosine"
    # Weight of the KL term in the objective (1 = the ELBO). Reported metrics are always the
    # unweighted negative ELBO and its parts. beta < 1 lets z carry the garment's detail (a
    # print, a strap) that a decoder of independent pixels can only otherwise blur; generation
    # then draws z from each class's fitted mixture (`sampling`), not from N(0, I), which is
    # also the prior of the shipped model's likelihood bound (docs/model.md#choosing-beta).
    beta: float = 0.1
    # The KL weight rises linearly from 0 to `beta` over this many optimiser steps. Off by
    # default: while the weight is near 0, z is free to carry the class as well.
    kl_warmup_steps: int = 0
    # Keeping the label out of the code, so the decoder takes the garment type from the label
    # (`cvae.model.vae.CVAE.label_terms`; docs/model.md#the-label-steers-the-decoder):
    # code_adversary_weight: an MLP on the posterior mean learns to tell the label from the
    # code, and encoder and decoder also minimise this weight times the cross-entropy of its
    # prediction with the uniform distribution (Fader Networks, Lample et al. 2017), the weight
    # rising linearly from 0 over `code_adversary_ramp_steps` steps; 0 trains no adversary.
    code_adversary_weight: float = 0.0
    code_adversary_ramp_steps: int = 0
    # swap_weight: a small classifier learns the label of the training images, and the decoder
    # also minimises this weight times its cross-entropy on decode(z, y') for labels y' drawn
    # at random, with z the image's code or, for a share `swap_prior_share` of the batch, a
    # draw from N(0, I); 0 trains no such classifier.
    # 30: version 10's weights, taught the label in 30 epochs, restyle their garments as the
    # asked class 0.93 of the time (every pair >= 0.67) at the same test ELBO
    # (docs/experiments.md#the-label-steers-the-decoder).
    swap_weight: float = 30.0
    swap_prior_share: float = 0.5
    # An exported version (saved_models/<name>/<N>) whose encoder's and decoder's weights the
    # run starts from instead of a random initialisation (the optimiser starts afresh): a
    # longer-trained model taught something new, such as the label terms above, in fewer
    # epochs than training again from scratch. Its architecture must be this config's.
    init_from: str | None = "saved_models/cvae/10"
    # XLA for the train step: slower than plain graphs on this project's 2-core CPU in a quick
    # comparison, worth trying on GPUs.
    jit_compile: bool = False
    # Train steps run per call into the graph: fewer Python round trips, which matter on fast
    # accelerators with small steps. Callbacks and the progress bar then see every N steps.
    steps_per_execution: int = 1
    # mixed_float16 for NVIDIA GPUs (tensor cores; the loss is scaled against underflow),
    # mixed_bfloat16 for TPUs and CPUs with bfloat16 units. Variables, the posterior's and the
    # likelihood's parameters and the loss stay float32, and evaluation and export run in
    # float32 whatever the policy. auto (`resolve_precision`): mixed_bfloat16 on a machine
    # without a GPU whose CPU has bfloat16 instructions (AMX or AVX512_BF16: oneDNN's bfloat16
    # convolutions), float32 anywhere else; a run's config.json records what it resolved to.
    precision: Precision = "auto"
    # The likelihood's log-probability and the KL (element-wise work over 784 pixels and their
    # two parameters) compiled by XLA into a few fused kernels, in `fit`'s train and test steps
    # only; the rest of the step stays a plain TensorFlow graph (`jit_compile` compiles it all).
    # Off: no faster on the project's 2-core CPU in bfloat16, and its compilation adds seconds
    # (docs/experiments.md#speed-what-was-tried). Worth trying where the rest of the step is
    # fast, as on a GPU.
    xla_loss: bool = False
    # Adam's update of each variable by TensorFlow's fused kernel (`cvae.training.optimizers.FusedAdam`,
    # the same arithmetic) rather than Keras 3's eight element-wise operations.
    fused_adam: bool = True
    # default: one device. mirrored: tf.distribute.MirroredStrategy over every local GPU (or
    # every logical CPU device when there is no GPU). multiworker: MultiWorkerMirroredStrategy
    # across the machines that TF_CONFIG lists. batch_size is the global batch, split evenly
    # across replicas. See docs/training.md#gpus-several-gpus-several-machines.
    strategy: Strategy = "default"
    # tf.config.experimental.enable_op_determinism(): bit-for-bit repeatable runs (and exact
    # resumes) at some cost in speed; some GPU kernels refuse it.
    deterministic: bool = False
    seed: int = 0
    name: str = "cvae"
    runs_dir: str = "runs"
    export_dir: str = "saved_models/cvae"

    def __post_init__(self):
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _require(self.beta >= 0, "beta", self.beta, "must be >= 0")
        _require(self.kl_warmup_steps >= 0, "kl_warmup_steps", self.kl_warmup_steps, "must be >= 0")
        for name in ("code_adversary_weight", "swap_weight"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _require(self.code_adversary_ramp_steps >= 0, "code_adversary_ramp_steps",
                 self.code_adversary_ramp_steps, "must be >= 0")
        _require(0 <= self.swap_prior_share <= 1, "swap_prior_share", self.swap_prior_share,
                 "must be in [0, 1]")
        _require(self.steps_per_execution >= 1, "steps_per_execution", self.steps_per_execution,
                 "must be >= 1")
        _require(self.precision in typing.get_args(Precision), "precision", self.precision,
                 f"must be one of {typing.get_args(Precision)}")
        _require(self.lr_schedule in typing.get_args(Schedule), "lr_schedule", self.lr_schedule,
                 f"must be one of {typing.get_args(Schedule)}")
        _require(self.strategy in typing.get_args(Strategy), "strategy", self.strategy,
                 f"must be one of {typing.get_args(Strategy)}")
        _require(bool(self.name) and "/" not in self.name and self.name not in (".", ".."),
                 "name", self.name, "must be a plain folder name")
        _at_most("epochs", self.epochs, limits.MAX_EPOCHS)
        _at_most("kl_warmup_steps", self.kl_warmup_steps, limits.MAX_STEPS)
        _at_most("code_adversary_ramp_steps", self.code_adversary_ramp_steps, limits.MAX_STEPS)
        _at_most("steps_per_execution", self.steps_per_execution, limits.MAX_STEPS)


@dataclasses.dataclass(frozen=True)
class ApplicationsConfig:
    """The exported applications (`cvae.applications`: classify, inpaint, denoise) and
    `reconstruct`'s refinement: inference settings like guidance, read at export; the trained
    weights are the same whatever they are. Their costs and the measurements that chose them:
    docs/applications.md."""

    # Importance samples per class in `classify`'s bounds on log p(x|y): 10 * K decoder passes
    # an image. On version 7 (1,000 test images) K 1, 4, 10, 32 gave accuracy 0.831, 0.840,
    # 0.844, 0.849 at 0.1, 0.2, 0.5, 1.4 s per batch of 100.
    classify_samples: int = 8
    # Each pixel's likelihood in classify's bounds: the decoder's mixed with a uniform one in
    # this share (a robust observation model: detail the decoder cannot place does not decide
    # the class); 0 is the decoder's own.
    classify_pixel_outlier: float = 0.5
    # Calibration: p(y|x) = softmax((log p(x|y) + log p(y)) / T). None: T is fitted at export
    # on validation images (`calibration_images` of them) and recorded here in the export's
    # config.json; 1 is Bayes' rule itself, whose posteriors are overconfident (differences of
    # hundreds of nats between classes; expected calibration error 0.15 on version 7).
    classify_temperature: float | None = None
    calibration_images: int = 1000
    # `inpaint`: rounds of importance-weighted resampling of the code, and codes drawn per
    # round, half from the encoder and half from the class's mixture (iterations * samples
    # decoder passes and iterations encoder passes an image). Their measurements, and those of
    # the refinement below: docs/applications.md.
    inpaint_iterations: int = 3
    inpaint_samples: int = 6
    # Then steps of gradient ascent (Adam, at this rate) on log p(x_known | z, y) + log p(z|y)
    # from the resampled code (a decoder pass forward and back a step).
    inpaint_refine_steps: int = 30
    inpaint_refine_rate: float = 0.2
    # `denoise`: codes weighted under the noise model (K decoder passes an image), then steps
    # of gradient ascent (Adam, at this rate) on the best code under that noise model.
    denoise_samples: int = 16
    denoise_refine_steps: int = 20
    denoise_refine_rate: float = 0.2
    # `reconstruct`: steps of gradient ascent (Adam, at this rate) on
    # log p(x | z, y) + log N(z; 0, I) from the encoder's mean, the code that best explains
    # the image (a decoder pass forward and back a step); 0 decodes the encoder's mean. Each
    # pixel's likelihood in that objective is mixed with a uniform one in the share
    # `reconstruct_pixel_outlier`, so pixels the model cannot explain (noise) do not drag the
    # code off the garments it knows.
    reconstruct_refine_steps: int = 30
    reconstruct_refine_rate: float = 0.2
    reconstruct_pixel_outlier: float = 0.01
    # `restyle`: the code it draws under the target label is reconstruct's fitted code (False:
    # the encoder's mean), decoded with this guidance weight (None: the model's `guidance`).
    # Guidance sharpens a label's samples from its own region of code space; on a garment's own
    # code drawn as another type it overshoots (docs/experiments.md#the-label-steers-the-decoder).
    restyle_refine: bool = True
    restyle_guidance: float | None = 1.0
    # `upscale`: steps of gradient ascent (Adam, at this rate) on
    # log p(observed block means | z, y) + log p(z|y) from a draw of the encoder's posterior of
    # the upsampled input (a decoder pass forward and back a step; 0: that draw as it is);
    # `upscale_classify_samples` codes a class in the label-less case's Bayes' rule (10 K
    # decoder passes an image). Their measurements: docs/experiments.md#super-resolution.
    upscale_refine_steps: int = 20
    upscale_refine_rate: float = 0.2
    upscale_classify_samples: int = 1

    def __post_init__(self):
        for name in ("classify_samples", "calibration_images", "inpaint_iterations",
                     "denoise_samples", "upscale_classify_samples"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        _require(self.inpaint_samples >= 2, "inpaint_samples", self.inpaint_samples,
                 "must be >= 2 (one from the encoder, one from the class's codes)")
        for name in ("classify_samples", "inpaint_samples", "denoise_samples",
                     "upscale_classify_samples"):
            _at_most(name, getattr(self, name), limits.MAX_IWAE_K)
        _at_most("inpaint_iterations", self.inpaint_iterations, limits.MAX_LAYERS)
        for name in ("inpaint_refine_steps", "denoise_refine_steps", "reconstruct_refine_steps",
                     "upscale_refine_steps"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
            _at_most(name, getattr(self, name), limits.MAX_REFINE_STEPS)
        _at_most("calibration_images", self.calibration_images, limits.TRAIN_IMAGES)
        for name in ("inpaint_refine_rate", "denoise_refine_rate", "reconstruct_refine_rate",
                     "upscale_refine_rate"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "must be > 0")
        for name in ("classify_pixel_outlier", "reconstruct_pixel_outlier"):
            _require(0 <= getattr(self, name) < 1, name, getattr(self, name), "must be in [0, 1)")
        _require(self.restyle_guidance is None or self.restyle_guidance >= 0, "restyle_guidance",
                 self.restyle_guidance, "must be >= 0 (or None)")
        _require(self.classify_temperature is None or self.classify_temperature > 0,
                 "classify_temperature", self.classify_temperature, "must be > 0 (or None)")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    applications: ApplicationsConfig = dataclasses.field(default_factory=ApplicationsConfig)

    def __post_init__(self):
        if self.model.fields:  # a model of metadata fields, not of Fashion-MNIST's class
            for name in ("swap_weight", "code_adversary_weight"):
                _require(getattr(self.train, name) == 0, name, getattr(self.train, name),
                         "must be 0 for a model of metadata fields (its networks judge "
                         "Fashion-MNIST's ten classes; Config.own_images)")
            _require(self.model.sampling == "prior", "sampling", self.model.sampling,
                     "must be prior for a model of metadata fields (Config.own_images)")
            _require(self.model.conditional, "conditional", self.model.conditional,
                     "must be true for a model of metadata fields")

    @classmethod
    def small(cls, **train_overrides) -> "Config":
        """A seconds-long variant for tests and smoke runs: 512 images, tiny layers, 1 epoch."""
        return cls(
            data=DataConfig(limit=512, batch_size=64, validation_size=128),
            model=ModelConfig(latent_dim=4, encoder_filters=(8, 16), decoder_filters=(16, 8),
                              hidden_dim=32, decoder_hidden=(32,)),
            train=TrainConfig(**{"epochs": 1, "kl_warmup_steps": 4, "name": "small",
                                 "learning_rate": 2e-3, "init_from": None, "swap_weight": 0.0,
                                 **train_overrides}),
        )

    def from_scratch(self) -> "Config":
        """The shipped recipe from random weights: 150 epochs from Adam at 2e-3 (version 10's
        training, with the label terms), about 100 minutes on the project's 2-core CPU."""
        return self.replace(init_from=None, epochs=150, learning_rate=2e-3)

    def tutorial(self) -> "Config":
        """The recipe of TensorFlow's convolutional-VAE tutorial, written in this project's
        code, with this config's data, epochs and seed: the tutorial's networks, latent 2, batch
        32, Adam at a constant 1e-4 in float32, pixels binarised once at 0.5, a Bernoulli
        likelihood, the plain ELBO (beta 1) and no label. (The tutorial estimates the KL term
        with the one sample of z; the analytic KL used here has the same expectation.)"""
        return self.replace(init_from=None, architecture="tutorial", latent_dim=2, batch_size=32,
                            learning_rate=1e-4, lr_schedule="constant", precision="float32",
                            likelihood="bernoulli", binarization="static",
                            conditional=False, label_dropout=0.0, guidance=1.0, beta=1.0,
                            sampling="prior", temperature=1.0,
                            kl_warmup_steps=0, swap_weight=0.0,
                            encoder_filters=(32, 64), decoder_filters=(64, 32),
                            name="tutorial", export_dir="saved_models/cvae-tutorial")

    def own_images(self) -> "Config":
        """The recipe for a folder of one's own images (`--images`, docs/own-images.md): from
        random weights, 30 epochs from Adam at 2e-3; codes from N(0, I) (the per-class
        mixtures and the label terms are Fashion-MNIST's ten classes')."""
        return self.replace(init_from=None, epochs=30, learning_rate=2e-3, swap_weight=0.0,
                            code_adversary_weight=0.0, sampling="prior", temperature=1.0)

    def quick(self) -> "Config":
        """The shipped recipe from scratch (`from_scratch`, the label terms included) in 12
        epochs rather than 150: what `make train` runs, in under 20 minutes with its export on
        the project's 2-core machine. The swap loss makes an epoch about 1.4 times as long, so
        15 epochs and the export came to 19 to 20 minutes; at 15 epochs the shipped sampling
        settings (T 1, guidance 2) gave 0.976 conditional accuracy where T 0.6 gave a Fréchet
        distance of 70 rather than 53 (docs/experiments.md#the-label-steers-the-decoder)."""
        return self.from_scratch().replace(epochs=12, name="quick")

    def fast(self) -> "Config":
        """The previous shipped recipe (version 7, kept as saved_models/cvae-fast): the
        convolutional encoder and dense decoder, latent 16, beta 3, 20 epochs; about 15,000
        images/s generated, at a third of the resnet recipe's fidelity (docs/experiments.md)."""
        return self.from_scratch().replace(architecture="mlp", latent_dim=16, hidden_dim=256,
                            encoder_filters=(32, 64), decoder_hidden=(512, 512), beta=3.0,
                            epochs=20, guidance=1.75, sampling_components=8, temperature=0.4,
                            swap_weight=0.0,
                            name="fast", export_dir="saved_models/cvae-fast")

    def unconditional(self) -> "Config":
        """The same recipe with the label removed (`conditional=False`), this config's epochs and
        rate from random weights (no `init_from`: version 10 is a conditional model)."""
        return self.replace(init_from=None, conditional=False, label_dropout=0.0, guidance=1.0,
                            swap_weight=0.0,
                            sampling="prior", temperature=1.0, name="unconditional",
                            export_dir="saved_models/cvae-unconditional")

    def replace(self, **flat) -> "Config":
        """Returns a copy with fields changed by their flat names (e.g. `latent_dim=2`)."""
        sections = {s.name: {} for s in dataclasses.fields(self)}
        owner = _field_owners()
        for key, value in flat.items():
            if key not in owner:
                raise ValueError(f"unknown config field {key!r}")
            sections[owner[key]][key] = value
        return Config(**{name: dataclasses.replace(getattr(self, name), **changes)
                         for name, changes in sections.items()})

    def resolved(self) -> "Config":
        """This config with precision "auto" made concrete for this machine
        (`resolve_precision`), as a run's config.json and an export record it."""
        return self.replace(precision=resolve_precision(self.train.precision))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        kwargs = {}
        for section in dataclasses.fields(cls):
            section_type = _SECTIONS[section.name]
            values = dict(d.get(section.name, {}))
            if values:  # written before these fields existed: what they did then
                for name, old in _BEFORE.get(section.name, ()):
                    values.setdefault(name, old)
            for f in dataclasses.fields(section_type):
                if f.name in values and _is_tuple(f.type) and values[f.name] is not None:
                    values[f.name] = tuple(values[f.name])
            unknown = set(values) - {f.name for f in dataclasses.fields(section_type)}
            if unknown:
                raise ValueError(f"unknown config field(s) in {section.name!r}: {sorted(unknown)}")
            kwargs[section.name] = section_type(**values)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
             "applications": ApplicationsConfig}

# Fields added after configs were first written, with the value that gives an older config its
# meaning when it is read back.
_BEFORE = {"model": (("architecture", "conv"), ("label_dropout", 0.0), ("guidance", 1.0),
                     ("sampling", "prior"), ("temperature", 1.0), ("sampling_components", 1)),
           "train": (("lr_schedule", "constant"), ("xla_loss", False),
                     ("fused_adam", False), ("swap_weight", 0.0), ("init_from", None)),
           "applications": (("inpaint_refine_steps", 0), ("inpaint_refine_rate", 0.2),
                            ("classify_pixel_outlier", 0.0),
                            ("denoise_refine_steps", 0), ("denoise_refine_rate", 0.2),
                            ("reconstruct_refine_steps", 0), ("reconstruct_refine_rate", 0.2),
                            ("reconstruct_pixel_outlier", 0.0), ("restyle_refine", False),
                            ("restyle_guidance", None),
                            # upscale came later than its section: nothing to be faithful to,
                            # so an older run exported again upscales as today's do
                            ("upscale_refine_steps", 20), ("upscale_refine_rate", 0.2),
                            ("upscale_classify_samples", 1))}


def resolve_precision(precision: Precision, cpu_flags: set[str] | None = None,
                      gpus: int | None = None) -> Precision:
    """`precision`, with "auto" made concrete for this machine (or for `cpu_flags` and `gpus`
    given): "mixed_bfloat16" without a GPU on a CPU with bfloat16 instructions (the `amx_bf16` or
    `avx512_bf16` flag of /proc/cpuinfo), "float32" otherwise (a GPU, another OS, an older
    CPU, where bfloat16 is emulated and slower)."""
    if precision != "auto":
        return precision
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if cpu_flags is None:
        cpu_flags = set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        cpu_flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return "mixed_bfloat16" if not gpus and cpu_flags & {"amx_bf16", "avx512_bf16"} else "float32"


def continuous_range(spec: str) -> tuple[str, float, float] | None:
    """("fill", 0.0, 1.0) from "fill=0:1", or None if `spec` is not NAME=LOW:HIGH with
    LOW < HIGH."""
    name, _, rest = str(spec).partition("=")
    low, _, high = rest.partition(":")
    try:
        low, high = float(low), float(high)
    except ValueError:
        return None
    return (name.strip(), low, high) if name.strip() and low < high else None


# Config fields that are set from the data, not given as flags.
NOT_FLAGS = frozenset({"fields"})


def _field_owners() -> dict[str, str]:
    owners = {}
    for section, section_type in _SECTIONS.items():
        for f in dataclasses.fields(section_type):
            assert f.name not in owners, f"config field {f.name} is defined twice"
            owners[f.name] = section
    return owners


def _resolved_type(t):
    return eval(t, vars(typing) | globals()) if isinstance(t, str) else t  # noqa: S307


def _is_tuple(t) -> bool:
    return typing.get_origin(_resolved_type(t)) is tuple


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one `--flag` per config field (underscores become dashes), defaulting to None."""
    for section, section_type in _SECTIONS.items():
        group = parser.add_argument_group(f"{section} config")
        for f in dataclasses.fields(section_type):
            if f.name in NOT_FLAGS:
                continue
            t = _resolved_type(f.type)
            flag = "--" + f.name.replace("_", "-")
            kwargs = {"default": None, "dest": f.name,
                      "help": f"(default: {getattr(section_type(), f.name)!r})"}
            args = typing.get_args(t)
            if typing.get_origin(t) is Literal:
                kwargs["choices"] = args
            elif typing.get_origin(t) is tuple:
                kwargs.update(type=args[0] if args and args[0] is not Ellipsis else int,
                              nargs="+")
            elif t is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif isinstance(t, types.UnionType):  # e.g. `int | None`
                kwargs["type"] = next(a for a in args if a is not type(None))
            else:
                kwargs["type"] = t
            group.add_argument(flag, **kwargs)


def config_from_arguments(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Builds a Config from `base` (default: `Config()`) and the flags the user gave."""
    flat = {name: getattr(args, name) for name in _field_owners()
            if getattr(args, name, None) is not None}
    flat = {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}
    return (base or Config()).replace(**flat)
