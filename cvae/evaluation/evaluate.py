"""`pipelines.evaluate`: how good an exported model is, from its SavedModel, the test data and
the project's classifier (`cvae.evaluation.classifier`).

Metrics (all on the 10,000 official test images unless said otherwise):
- negative ELBO in nats per image, with its reconstruction and KL parts (the KL in closed form,
  the reconstruction averaged over the importance samples below);
- the importance-weighted bound (IWAE, Burda et al. 2016) with k samples per image from the
  encoder's posterior, and its standard error over images: nats per image, and bits per
  dimension for the 8-bit likelihood;
- conditional accuracy: `samples_per_class` samples per class, classified by the classifier;
- a Fréchet distance between the classifier's penultimate features of samples and of test
  images, beside the same distance for held-out real images (the validation split), its floor;
- diversity: the mean pairwise feature distance within each class, samples over real images;
- reconstruction error of the `reconstruct` signature's images (the refined code decoded, or
  the posterior mean), in pixels in [0, 1].
`compare` evaluates other models (`--compare`) on one footing: the same samples, the same IWAE
k, and the log-likelihood of the same binarised test images.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from cvae.evaluation import metrics as m
from cvae.data import Splits, binarize_static, unit_images
from cvae.model.losses import bits_per_dim, kl_to_standard_normal
from cvae.batches import batched, seeds_for
from cvae.serving.generate import ModelLoadError, ServedModel
from cvae.labels import NUM_CLASSES

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class Settings:
    iwae_k: int = 1000
    # Test images in the IWAE (None: all 10,000) and images per call into the model.
    iwae_images: int | None = None
    samples_per_class: int = 1000
    # Test images of each class restyled as every other class (and back) by `label_control`.
    restyle_per_class: int = 100
    # Images on each side of the Fréchet distance (samples, and the held-out real images).
    frechet_images: int = 5000
    # The first test images reconstructed (None: all 10,000; reconstruct refines each code, so
    # all of them is about a minute on the project's CPU).
    reconstruction_images: int | None = None
    seed: int = 0
    # Also the first_k-sample bound from the first first_k of the IWAE's own k samples (what
    # `--compare` ranks models by, at k=100, without a second pass; `likelihood_bounds` checks
    # that 1 <= first_k <= iwae_k).
    first_k: int | None = None

    def __post_init__(self):
        for name in ("iwae_k", "samples_per_class", "frechet_images", "restyle_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluate: {name}={getattr(self, name)} must be >= 1")
        if self.frechet_images < 2 or self.samples_per_class < 2:
            raise ValueError("evaluate: frechet_images and samples_per_class must be >= 2")
        for name in ("iwae_images", "reconstruction_images"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise ValueError(f"evaluate: {name}={getattr(self, name)} must be >= 2")


def _function(model: ServedModel, name: str):
    fn = getattr(model._loaded, name, None)
    if fn is None:
        raise ModelLoadError(f"{model.path}: has no {name} function (exported by an older "
                             f"version of this project; export the run again)")
    return fn


def model_images(model: ServedModel, gray: np.ndarray, seed: int) -> np.ndarray:
    """Test images float32 [N, 28, 28, 1] in [0, 1] as the model was trained on them: gray, or
    binarised the model's way (static threshold, or one fixed dynamic draw)."""
    config = model.config["model"]
    if config["likelihood"] != "bernoulli":
        return gray
    if config.get("binarization", "dynamic") == "static":
        return binarize_static(gray).numpy()
    u = tf.random.stateless_uniform(gray.shape, seed=[seed, 7]).numpy()
    return (u < gray).astype(np.float32)


def encode(model: ServedModel, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return batched(model.signatures["encode"], {"images": images.astype(np.float32),
                                                "label": labels.astype(np.int32)})


def likelihood_bounds(model: ServedModel, images: np.ndarray, labels: np.ndarray, k: int,
                      seed: int = 0, binarized: bool = False, rows_per_call: int = 8000,
                      first_k: int | None = None) -> dict[str, np.ndarray]:
    """Per test image (float64 [N] each): "iwae", the k-sample importance-weighted bound on
    log p(x|y) with q(z|x,y) as the proposal; "elbo", the mean of the same k log-weights (an
    estimate of the ELBO); "recon", the mean log p(x|z,y) over the k samples; "kl", KL(q || p(z))
    in closed form; with `first_k`, "iwae_first", the first_k-sample bound of the first first_k
    of the same samples (they are independent draws from q, so it is a first_k-sample bound
    like any other, for free). `binarized` scores the images thresholded at 0.5 instead of the
    model's own representation (the proposal still sees `images`). Every figure is in nats."""
    if first_k is not None and not 1 <= first_k <= k:
        raise ValueError(f"likelihood_bounds: first_k={first_k} must be between 1 and k={k}")
    posterior = encode(model, images, labels)
    fn = _function(model, "binarized_log_likelihood" if binarized else "log_likelihood")
    latent = posterior["mean"].shape[1]
    chunk = max(1, rows_per_call // k)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32),
                                  tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, latent], tf.float32),
                                  tf.TensorSpec([None, latent], tf.float32),
                                  tf.TensorSpec([2], tf.int64)])
    def weights(x, y, mean, stddev, step_seed):
        c = tf.shape(x)[0]
        eps = tf.random.stateless_normal([c, k, latent], step_seed)
        z = mean[:, None, :] + stddev[:, None, :] * eps
        log_q = tf.reduce_sum(-0.5 * eps ** 2 - 0.5 * LOG_2PI - tf.math.log(stddev)[:, None, :],
                              -1)
        log_pz = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * LOG_2PI, -1)
        rows = tf.repeat(y, k, axis=0)
        log_px = tf.reshape(fn(images=tf.repeat(x, k, axis=0), label=rows,
                               z=tf.reshape(z, [-1, latent])), [c, k])
        log_fitted = (tf.reshape(fitted_prior(z=tf.reshape(z, [-1, latent]), label=rows), [c, k])
                      if fitted_prior is not None else tf.zeros_like(log_px))
        return log_px, log_px + log_pz - log_q, log_px + log_fitted - log_q

    # The generative model that ships draws z from each class's fitted mixture: with the
    # export's `log_prior`, the same samples also bound log p(x|y) under that prior.
    fitted_prior = getattr(model._loaded, "log_prior", None)
    iwae, elbo, recon, first, fitted = [], [], [], [], []
    for start in range(0, len(images), chunk):
        s = slice(start, start + chunk)
        log_px, log_w, log_w_fitted = weights(
            images[s], labels[s].astype(np.int32), posterior["mean"][s], posterior["stddev"][s],
            tf.constant([seed, start], tf.int64))
        log_w = log_w.numpy().astype(np.float64)
        fitted.append(m.log_mean_exp(log_w_fitted.numpy().astype(np.float64), axis=1))
        iwae.append(m.log_mean_exp(log_w, axis=1))
        elbo.append(log_w.mean(1))
        recon.append(log_px.numpy().astype(np.float64).mean(1))
        if first_k is not None:
            first.append(m.log_mean_exp(log_w[:, :first_k], axis=1))
    kl = kl_to_standard_normal(posterior["mean"].astype(np.float64),
                               posterior["stddev"].astype(np.float64)).numpy()
    out = {"iwae": np.concatenate(iwae), "elbo": np.concatenate(elbo),
           "recon": np.concatenate(recon), "kl": kl}
    if first_k is not None:
        out["iwae_first"] = np.concatenate(first)
    if fitted_prior is not None:
        out["iwae_fitted_prior"] = np.concatenate(fitted)
    return out


def generate_per_class(model: ServedModel, per_class: int, seed: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """(images [10 * per_class, 28, 28, 1], labels): per_class samples of each class."""
    labels = np.repeat(np.arange(NUM_CLASSES), per_class).astype(np.int32)
    seeds = seeds_for(seed, len(labels))
    out = batched(model.signatures["serving_default"], {"label": labels, "seed": seeds})
    return out["images"], labels


def label_control(model: ServedModel, images: np.ndarray, labels: np.ndarray, classify,
                  settings: Settings, reconstruction_mse: np.ndarray | None = None) -> dict:
    """How far the label steers the decoder, by the evaluation classifier: `restyle` of the
    first `restyle_per_class` test images of each class to each of the nine other classes
    (the share recognised as the target, mean and per (source, target) pair; the share still
    recognised as the source), the round trip restyle(restyle(x, y -> t), t -> y) against x
    beside `reconstruct`'s squared error on the same images (`reconstruction_mse`, per image of
    `images`; None: computed here on the restyled ones), and codes drawn from N(0, I) decoded
    under each label (`decode`)."""
    from cvae.evaluation.classifier import predict

    pick = np.concatenate([np.flatnonzero(labels == c)[:settings.restyle_per_class]
                           for c in range(NUM_CLASSES)])
    x, y = images[pick], labels[pick]
    restyle = model.signatures["restyle"]
    pairs = np.full([NUM_CLASSES, NUM_CLASSES], np.nan)
    still_source, trip = [], []
    for shift in range(1, NUM_CLASSES):
        target = ((y + shift) % NUM_CLASSES).astype(np.int32)
        out = batched(restyle, {"images": x, "label": y, "target_label": target})["images"]
        seen = predict(classify, out)["probabilities"].argmax(1)
        for s in range(NUM_CLASSES):
            pairs[s, (s + shift) % NUM_CLASSES] = float(np.mean(seen[y == s] == target[y == s]))
        still_source.append(seen == y)
        back = batched(restyle, {"images": out, "label": target, "target_label": y})["images"]
        trip.append(((back - x) ** 2).mean(axis=(1, 2, 3)))
    if reconstruction_mse is None:
        recon = batched(model.signatures["reconstruct"], {"images": x, "label": y})["images"]
        own_mse = ((recon - x) ** 2).mean(axis=(1, 2, 3))
    else:
        own_mse = reconstruction_mse[pick]
    off = pairs[~np.eye(NUM_CLASSES, dtype=bool)]
    worst = np.unravel_index(np.nanargmin(pairs), pairs.shape)
    names = model.class_names
    per_class = settings.samples_per_class
    prior_labels = np.repeat(np.arange(NUM_CLASSES), per_class).astype(np.int32)
    z = np.random.default_rng(settings.seed).standard_normal(
        [len(prior_labels), model.config["model"]["latent_dim"]]).astype(np.float32)
    drawn = batched(model.signatures["decode"], {"z": z, "label": prior_labels})["images"]
    prior_seen = predict(classify, drawn)["probabilities"].argmax(1)
    prior_class = {names[c]: float(np.mean(prior_seen[prior_labels == c] == c))
                   for c in range(NUM_CLASSES)}
    return {
        "restyle": {
            "images": len(x), "target_accuracy": float(off.mean()),
            "worst_pair": {"source": names[worst[0]], "target": names[worst[1]],
                           "accuracy": float(pairs[worst])},
            "still_source": float(np.mean(still_source)),
            "pairs": {names[s]: {names[t]: float(pairs[s, t]) for t in range(NUM_CLASSES)
                                 if t != s} for s in range(NUM_CLASSES)},
            "round_trip_mse": float(np.mean(trip)),
            "reconstruction_mse": float(own_mse.mean()),
        },
        "prior_codes": {"overall": float(np.mean(prior_seen == prior_labels)),
                        "per_class": prior_class, "samples_per_class": per_class},
    }


def real_features(splits: Splits, classify) -> dict[str, np.ndarray]:
    """The classifier's penultimate features of the test images ("test") and of the held-out
    validation images ("held_out"): the real side of every model's Fréchet distance and
    diversity, the same for all models."""
    from cvae.evaluation.classifier import predict

    return {name: predict(classify, unit_images(images))["features"]
            for name, images in (("test", splits.test[0]), ("held_out", splits.validation[0]))}


def evaluate(model: ServedModel, splits: Splits, classify, settings: Settings = Settings(),
             log=print, real: dict[str, np.ndarray] | None = None) -> tuple[dict, dict]:
    """(metrics, arrays): the figures of one model, and the arrays the report's pictures need
    (samples and their labels, the confusion matrix). `real`: `real_features(splits,
    classify)`, computed here if not given (pass it when evaluating several models)."""
    from cvae.evaluation.classifier import predict

    started = time.perf_counter()
    gray_test = unit_images(splits.test[0])
    test_labels = splits.test[1].astype(np.int32)
    config = model.config["model"]
    results: dict = {"model": str(model.path), "likelihood": config["likelihood"],
                     "conditional": config.get("conditional", True),
                     "latent_dim": config["latent_dim"], "settings": dataclasses.asdict(settings)}
    n = settings.iwae_images or len(gray_test)
    own = model_images(model, gray_test, settings.seed)[:n]

    t = time.perf_counter()
    bounds = likelihood_bounds(model, own, test_labels[:n], settings.iwae_k, settings.seed,
                               first_k=settings.first_k)
    iwae, iwae_se = m.mean_and_standard_error(-bounds["iwae"])
    results["test"] = {
        "images": n,
        "neg_elbo": float(-bounds["elbo"].mean()),
        "recon": float(-bounds["recon"].mean()),
        "kl": float(bounds["kl"].mean()),
        "iwae_k": settings.iwae_k,
        "neg_iwae": iwae,
        "neg_iwae_standard_error": iwae_se,
        "seconds": round(time.perf_counter() - t, 1),
    }
    if "iwae_fitted_prior" in bounds:
        fitted, fitted_se = m.mean_and_standard_error(-bounds["iwae_fitted_prior"])
        results["test"]["fitted_prior"] = {"neg_iwae": fitted,
                                           "neg_iwae_standard_error": fitted_se}
        if config["likelihood"] == "discretized_logistic":
            results["test"]["fitted_prior"]["iwae_bits_per_dim"] = bits_per_dim(fitted)
    if settings.first_k is not None:
        first, first_se = m.mean_and_standard_error(-bounds["iwae_first"])
        results["test"]["first_k"] = {"k": settings.first_k, "neg_iwae": first,
                                      "neg_iwae_standard_error": first_se}
    if config["likelihood"] == "discretized_logistic":
        results["test"]["iwae_bits_per_dim"] = bits_per_dim(iwae)
        results["test"]["elbo_bits_per_dim"] = bits_per_dim(results["test"]["neg_elbo"])
    log(f"test: neg ELBO {results['test']['neg_elbo']:.2f} (recon {results['test']['recon']:.2f},"
        f" KL {results['test']['kl']:.2f}); -IWAE(k={settings.iwae_k}) {iwae:.2f} ± {iwae_se:.2f}"
        f" nats/image over {n} images in {results['test']['seconds']:.0f} s")

    # Every test image by default, whatever the IWAE's share (reconstructions cost one encoder
    # pass and `reconstruct_refine_steps` decoder passes forward and back an image).
    shown = settings.reconstruction_images or len(gray_test)
    reconstructed = batched(model.signatures["reconstruct"],
                            {"images": model_images(model, gray_test, settings.seed)[:shown],
                             "label": test_labels[:shown]})["images"]
    error = reconstructed - gray_test[:shown]
    recognised = predict(classify, reconstructed)
    results["reconstruction"] = {
        "mse": float((error ** 2).mean()), "mae": float(np.abs(error).mean()),
        "images": shown,
        # How often the classifier takes a reconstruction for its own garment's class.
        "classifier_accuracy": float((recognised["probabilities"].argmax(1)
                                      == test_labels[:shown]).mean()),
    }

    if results["conditional"]:
        results["label_control"] = label_control(
            model, gray_test, test_labels, classify, settings,
            reconstruction_mse=((error ** 2).mean(axis=(1, 2, 3)) if shown == len(gray_test)
                                else None))
        control = results["label_control"]
        log(f"restyle: target recognised {control['restyle']['target_accuracy']:.4f} (worst "
            f"pair {control['restyle']['worst_pair']['accuracy']:.2f}), still source "
            f"{control['restyle']['still_source']:.4f}, round trip MSE "
            f"{control['restyle']['round_trip_mse']:.5f}; N(0, I) codes "
            f"{control['prior_codes']['overall']:.4f}")

    samples, sample_labels = generate_per_class(model, settings.samples_per_class, settings.seed)
    sampled = predict(classify, samples)
    predicted = sampled["probabilities"].argmax(1)
    confusion = m.confusion_matrix(sample_labels, predicted, NUM_CLASSES)
    per_class = m.per_class_accuracy(confusion)
    names = model.class_names
    results["conditional_accuracy"] = {
        "overall": float((predicted == sample_labels).mean()),
        "per_class": {names[c]: float(per_class[c]) for c in range(NUM_CLASSES)},
        "samples_per_class": settings.samples_per_class,
    }

    real = real or real_features(splits, classify)
    held_out, real = real["held_out"], real["test"]
    size = min(settings.frechet_images, len(held_out), len(samples))
    # The same number of samples of every class (test and held-out images are near balanced).
    take = np.argsort(np.tile(np.arange(settings.samples_per_class), NUM_CLASSES),
                      kind="stable")[:size]
    results["frechet"] = {
        "samples": m.frechet_distance(sampled["features"][take], real),
        # Reconstructions of `size` test images (or all that were reconstructed) against the
        # test images' own features: what the decoder and the code can show at best (samples
        # cannot beat it).
        "reconstructions": m.frechet_distance(recognised["features"][:size], real),
        "held_out_real": m.frechet_distance(held_out[:size], real),
        "images": size,
    }

    # Within each class: the class asked for, or for an unconditional model (which ignores
    # the label) the classifier's verdict.
    groups = sample_labels if results["conditional"] else predicted
    diversity = {}
    for c in range(NUM_CLASSES):
        fake_c = sampled["features"][groups == c][:500]
        if len(fake_c) < 2:
            continue
        real_c = real[test_labels == c][:500]
        diversity[names[c]] = m.mean_pairwise_distance(fake_c) / m.mean_pairwise_distance(real_c)
    results["diversity"] = {"ratio_per_class": diversity,
                            "ratio_mean": float(np.mean(list(diversity.values()))),
                            "ratio_min": float(min(diversity.values()))}
    results["seconds"] = round(time.perf_counter() - started, 1)
    log(f"conditional accuracy {results['conditional_accuracy']['overall']:.4f}; Fréchet "
        f"{results['frechet']['samples']:.2f} (held-out real {results['frechet']['held_out_real']:.2f}); "
        f"diversity {results['diversity']['ratio_mean']:.3f} of real; "
        f"reconstruction MSE {results['reconstruction']['mse']:.4f}, Fréchet "
        f"{results['frechet']['reconstructions']:.2f}, recognised "
        f"{results['reconstruction']['classifier_accuracy']:.4f}")
    arrays = {"samples": samples, "sample_labels": sample_labels, "confusion": confusion}
    return results, arrays


def comparable_bound(model: ServedModel, splits: Splits, k: int, binarized: bool,
                     seed: int = 0, images: int | None = None) -> dict:
    """The k-sample IWAE bound on the test images' log-likelihood in nats per image, on the
    model's own representation or (`binarized`) of the images thresholded at 0.5, which any
    likelihood can score: what `--compare` ranks models by. For a conditional model the bound
    is on log p(x|y), and log p(x) >= log p(x|y) - log 10 (p(y|x) <= 1 and p(y) = 1/10) gives
    a bound comparable with unconditional models' log p(x): "neg_log_px_bound"."""
    gray = unit_images(splits.test[0])
    labels = splits.test[1].astype(np.int32)
    n = images or len(gray)
    t = time.perf_counter()
    own = model_images(model, gray, seed)[:n]
    bounds = likelihood_bounds(model, own, labels[:n], k, seed, binarized=binarized)
    neg, se = m.mean_and_standard_error(-bounds["iwae"])
    return bound_summary(model, k, n, neg, se, round(time.perf_counter() - t, 1))


def bound_summary(model: ServedModel, k: int, images: int, neg_iwae: float,
                  standard_error: float, seconds: float) -> dict:
    """A k-sample -IWAE over `images` test images as `comparable_bound` reports it, with
    "neg_log_px_bound" = -IWAE + log 10 for a conditional model (see there)."""
    conditional = model.config["model"].get("conditional", True)
    return {"k": k, "images": images, "neg_iwae_given_label": neg_iwae if conditional else None,
            "neg_log_px_bound": neg_iwae + (math.log(NUM_CLASSES) if conditional else 0.0),
            "standard_error": standard_error, "seconds": seconds}
