"""SavedModel export: a trained model written as the next version, with what TF Serving and the
project's clients read beside it.

Layout, as TensorFlow Serving expects it: `<base>/<version>/saved_model.pb`, `variables/`, and
`assets.extra/` with `config.json`, `classes.json`, `metrics.json` and
`tf_serving_warmup_requests` (requests TF Serving replays when it loads the version). A version
is written to a non-numeric temporary sibling (which TF Serving ignores), loaded back and
smoke-tested, and only then renamed to the next integer; an existing version is never touched,
and nothing is written through a symlink or outside the base path. `cvae.serving.check` verifies an
export against `cvae.serving.contract.SIGNATURES`; the functions are `cvae.serving.module`'s, the
warm-up requests `cvae.serving.warmup`'s, the versioned writing `cvae.serving.versions`'.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from cvae.applications import classify as classify_app
from cvae.config import Config
from cvae.data import load_splits, unit_images
from cvae.labels import CLASS_NAMES
from cvae.model import sampling
from cvae.model.vae import CVAE
from cvae.serving.contract import ASSETS_EXTRA, WARMUP_FILE
from cvae.serving.module import ServingModule
from cvae.serving.versions import write_version
from cvae.serving.warmup import warmup_requests


TRAINING_LOGS = "training_logs"  # assets.extra/training_logs/{train,validation}/: TensorBoard


def export(model: CVAE, config: Config, metrics: dict | None,
           base_dir: str | os.PathLike, logs_dir: str | os.PathLike | None = None,
           sampler: sampling.LatentSampler | None = None) -> Path:
    """Writes the model as the next version under `base_dir` (see `write_version`) and returns
    its path. `logs_dir`, a run's TensorBoard folder, has its train and validation scalars
    copied into assets.extra/training_logs/ (for the training curves of `pipelines.evaluate`).
    `sampler`: the codes of `serving_default`, of the kind and temperature `config.model` names;
    by default the one it asks for, fitted to the config's training images
    (`cvae.model.sampling.for_model`). `config` is what assets.extra/config.json records, so its
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


def _smoke_test(path: Path, latent_dim: int) -> None:
    """Loads the export back and checks that generation gives finite images of the right shape."""
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](label=tf.range(10), seed=tf.range(10))
    images, z = out["images"].numpy(), out["z"].numpy()
    if images.shape != (10, 28, 28, 1) or z.shape != (10, latent_dim):
        raise RuntimeError(f"export smoke test: got images {images.shape}, z {z.shape}")
    if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise RuntimeError("export smoke test: generated images are not finite values in [0, 1]")
