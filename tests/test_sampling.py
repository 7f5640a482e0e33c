"""Where generated images take their codes from (cvae.sampling), and the export that uses it."""

import numpy as np
import pytest
import tensorflow as tf

from cvae import export as export_lib, sampling
from cvae.config import Config
from cvae.data import load_splits
from cvae.labels import NUM_CLASSES
from cvae.model import build_model


def _encode_first_pixels(x, labels):
    """A stand-in encoder whose posterior mean is the image's first two pixels, stddev 0.5."""
    flat = tf.reshape(x, [-1, 784])
    return {"mean": flat[:, :2], "stddev": tf.fill([tf.shape(x)[0], 2], 0.5)}


def _images_with_means(means):
    x = np.zeros([len(means), 28, 28, 1], np.float32)
    x.reshape(len(means), -1)[:, :2] = means
    return x


def test_fit_matches_the_moments_of_each_class_worked_by_hand():
    # Class c: posterior means (c, 0) and (c, 2), each with variance 0.25 per dimension. The
    # mixture's mean is (c, 1); its covariance is that of the means, diag(0, 2) (n - 1 = 1),
    # plus the mean variance 0.25: diag(0.25, 2.25), whose Cholesky factor is diag(0.5, 1.5).
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    means = np.stack([labels, np.tile([0.0, 2.0], NUM_CLASSES)], axis=1)
    fitted = sampling.fit_class_gaussians(_encode_first_pixels, _images_with_means(means),
                                          labels, temperature=0.5, batch=3)
    np.testing.assert_allclose(fitted.loc, np.stack([np.arange(10), np.ones(10)], 1), atol=1e-6)
    np.testing.assert_allclose(fitted.scale_tril, np.tile(np.diag([0.5, 1.5]), [10, 1, 1]),
                               atol=1e-6)
    assert fitted.temperature == 0.5


def test_fit_gives_a_full_covariance_for_correlated_codes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(NUM_CLASSES), 400)
    u = rng.normal(size=len(labels))
    means = np.stack([u + labels, 2 * u + 0.1 * rng.normal(size=len(labels))], 1)
    fitted = sampling.fit_class_gaussians(_encode_first_pixels, _images_with_means(means),
                                          labels, temperature=1.0)
    for c in range(NUM_CLASSES):
        mine = means[labels == c]
        want = np.cov(mine, rowvar=False) + 0.25 * np.eye(2)
        cov = fitted.scale_tril[c] @ fitted.scale_tril[c].T
        np.testing.assert_allclose(cov, want, rtol=1e-4)
        assert cov[0, 1] > 1.5  # the two codes move together; a diagonal fit would lose it


def test_latents_are_the_label_gaussian_scaled_by_the_temperature():
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(10, 3)).astype(np.float32)
    tril = np.tril(rng.normal(size=(10, 3, 3))).astype(np.float32)
    sampler = sampling.LatentSampler(loc, tril, temperature=0.7)
    labels = np.array([3, 3, 9, 0], np.int32)
    eps = rng.normal(size=(4, 3)).astype(np.float32)
    got = sampler.latents(tf.constant(labels), tf.constant(eps)).numpy()
    want = loc[labels] + 0.7 * np.einsum("bij,bj->bi", tril[labels], eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    prior = sampling.standard_normal(3, temperature=0.5)
    np.testing.assert_allclose(prior.latents(tf.constant(labels), tf.constant(eps)), 0.5 * eps)


def test_many_draws_have_the_fitted_mean_and_covariance():
    rng = np.random.default_rng(2)
    loc = rng.normal(size=(10, 2)).astype(np.float32)
    tril = np.tile(np.array([[1.0, 0.0], [0.8, 0.6]], np.float32), [10, 1, 1])
    sampler = sampling.LatentSampler(loc, tril, temperature=0.5)
    labels = np.full(40_000, 6, np.int32)
    z = sampler.latents(tf.constant(labels),
                        tf.random.stateless_normal([len(labels), 2], seed=[0, 1])).numpy()
    np.testing.assert_allclose(z.mean(0), loc[6], atol=0.01)
    np.testing.assert_allclose(np.cov(z, rowvar=False), 0.25 * tril[6] @ tril[6].T, atol=0.01)


def test_bad_fits_and_samplers_are_refused():
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    labels[labels == 7] = 8  # no class 7 at all
    with pytest.raises(ValueError, match=r"class 7 has 0 training image\(s\)"):
        sampling.fit_class_gaussians(_encode_first_pixels,
                                     _images_with_means(np.zeros([20, 2])), labels, 1.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampling.standard_normal(4, temperature=0.0)
    with pytest.raises(ValueError, match=r"must be \[10, d\] and \[10, d, d\]"):
        sampling.LatentSampler(np.zeros([9, 4], np.float32), np.zeros([9, 4, 4], np.float32),
                               1.0)
    with pytest.raises(ValueError, match="must be finite"):
        sampling.LatentSampler(np.full([10, 2], np.nan, np.float32),
                               np.zeros([10, 2, 2], np.float32), 1.0)


def test_an_unconditional_model_gets_one_gaussian_of_all_codes():
    # Per-class regions would bring the label back in through z.
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    means = np.stack([labels, np.tile([0.0, 2.0], NUM_CLASSES)], axis=1)
    x = _images_with_means(means)
    pooled = sampling.fit_class_gaussians(_encode_first_pixels, x, labels, 1.0, pooled=True)
    want_cov = np.cov(means, rowvar=False) + 0.25 * np.eye(2)
    for c in range(NUM_CLASSES):
        np.testing.assert_allclose(pooled.loc[c], [4.5, 1.0], atol=1e-6)
        np.testing.assert_allclose(pooled.scale_tril[c] @ pooled.scale_tril[c].T, want_cov,
                                   rtol=1e-5)

    class Unconditional:
        encode = staticmethod(_encode_first_pixels)

    config = Config().replace(conditional=False, label_dropout=0.0, guidance=1.0).model
    assert config.sampling == "class_posterior"
    fitted = sampling.for_model(Unconditional, config, x, labels)
    np.testing.assert_allclose(fitted.loc, pooled.loc)
    np.testing.assert_allclose(fitted.scale_tril, pooled.scale_tril)


def test_sampling_settings_and_old_configs():
    with pytest.raises(ValueError, match="temperature=0 must be > 0"):
        Config().replace(temperature=0)
    for recipe in (Config().unconditional(), Config().tutorial()):
        assert (recipe.model.sampling, recipe.model.temperature) == ("prior", 1.0)
    # A config written before sampling existed meant prior codes at temperature 1.
    old = Config().to_dict()
    del old["model"]["sampling"], old["model"]["temperature"]
    loaded = Config.from_dict(old).model
    assert (loaded.sampling, loaded.temperature) == ("prior", 1.0)


def test_export_serves_codes_from_the_sampler_it_was_given(tmp_path):
    config = Config.small().replace(temperature=0.5)
    model = build_model(config.model)
    loc = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    tril = np.tile(np.diag([1.0, 2.0, 3.0, 4.0]).astype(np.float32), [10, 1, 1])
    path = export_lib.export(model, config, {}, tmp_path / "m",
                             sampler=sampling.LatentSampler(loc, tril, temperature=0.5))
    loaded = tf.saved_model.load(str(path))
    labels, seeds = tf.constant([2, 9, 2]), tf.constant([5, 5, 6])
    out = loaded.signatures["serving_default"](label=labels, seed=seeds)
    eps = np.stack([tf.random.stateless_normal([4], seed=[s, 0]) for s in (5, 5, 6)])
    want = loc[[2, 9, 2]] + 0.5 * eps * np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(out["z"].numpy(), want, rtol=1e-5, atol=1e-5)
    # The images are the decoder's for those codes, as `decode` returns them.
    decoded = loaded.signatures["decode"](z=out["z"], label=labels)["images"]
    np.testing.assert_allclose(out["images"], decoded, atol=1e-6)
    np.testing.assert_allclose(loaded.sampling_loc.numpy(), loc)


def test_exports_that_would_misdescribe_themselves_are_refused(tmp_path):
    config = Config.small()
    model = build_model(config.model)
    other = sampling.standard_normal(4, temperature=0.3)
    with pytest.raises(ValueError, match="sampler's temperature 0.3 is not the config's 0.7"):
        export_lib.export(model, config, {}, tmp_path / "a", sampler=other)
    with pytest.raises(ValueError, match="the model's config differs from the config"):
        export_lib.export(model, config.replace(guidance=3.0), {}, tmp_path / "b")
    with pytest.raises(ValueError, match="sampling='class_posterior' needs the fitted sampler"):
        export_lib.ServingModule(model)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_too_few_images_of_a_class_is_caught_before_training():
    labels = np.repeat(np.arange(NUM_CLASSES), 3)
    sampling.check_fittable(labels)
    with pytest.raises(ValueError, match=r"class 4 has 1 training image\(s\)"):
        sampling.check_fittable(np.concatenate([labels[labels != 4], [4]]))


def test_samplers_are_float32_and_bernoulli_models_are_fitted_on_binary_pixels():
    sampler = sampling.LatentSampler(np.zeros([10, 2]), np.tile(np.eye(2), [10, 1, 1]), 1.0)
    assert sampler.loc.dtype == sampler.scale_tril.dtype == np.float32
    seen = []

    class Recorder:
        @staticmethod
        def encode(x, labels):
            seen.append(x.numpy())
            return _encode_first_pixels(x, labels)

    gray = np.full([20, 28, 28], 100, np.uint8)  # 0.39: never above 0.5, sometimes drawn as 1
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    for binarization in ("static", "dynamic"):
        config = Config().replace(likelihood="bernoulli", binarization=binarization).model
        seen.clear()
        sampling.for_model(Recorder, config, gray, labels)
        x = np.concatenate(seen)
        assert set(np.unique(x)) <= {0.0, 1.0}
        assert x.mean() == 0.0 if binarization == "static" else 0.3 < x.mean() < 0.48
    seen.clear()
    sampling.for_model(Recorder, Config().model, gray, labels)  # gray levels as they are
    np.testing.assert_allclose(np.concatenate(seen), 100 / 255, rtol=1e-6)


def test_export_fits_the_configured_sampler_on_the_training_images(tmp_path, trained):
    model, config = trained["result"].model, trained["config"]
    assert config.model.sampling == "class_posterior"
    loaded = tf.saved_model.load(str(trained["export"]))
    images, labels = load_splits(config.data).train
    posterior = model.encode(images.astype(np.float32)[..., None] / 255.0, labels)
    means, variances = posterior["mean"].numpy(), posterior["stddev"].numpy() ** 2
    for c in (0, 5, 9):  # each class's moments, computed here from its training images' codes
        mine = labels == c
        np.testing.assert_allclose(loaded.sampling_loc.numpy()[c], means[mine].mean(0),
                                   rtol=1e-4, atol=1e-5)
        want = np.cov(means[mine], rowvar=False) + np.diag(variances[mine].mean(0))
        tril = loaded.sampling_scale_tril.numpy()[c]
        np.testing.assert_allclose(tril @ tril.T, want, rtol=1e-3, atol=1e-5)
    z = loaded.signatures["serving_default"](label=tf.constant([5]), seed=tf.constant([3]))["z"]
    eps = tf.random.stateless_normal([4], seed=[3, 0]).numpy()
    want = loaded.sampling_loc.numpy()[5] + config.model.temperature * (
        loaded.sampling_scale_tril.numpy()[5] @ eps)
    np.testing.assert_allclose(z.numpy()[0], want, rtol=1e-5, atol=1e-6)
    # A prior export serves N(0, I) codes at its temperature.
    prior = config.replace(sampling="prior", temperature=0.5)
    path = export_lib.export(build_model(prior.model), prior, {}, tmp_path / "prior")
    z = tf.saved_model.load(str(path)).signatures["serving_default"](
        label=tf.constant([4]), seed=tf.constant([11]))["z"].numpy()
    np.testing.assert_allclose(z[0], 0.5 * tf.random.stateless_normal([4], seed=[11, 0]),
                               rtol=1e-6)
