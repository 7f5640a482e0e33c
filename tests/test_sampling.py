"""Where generated images take their codes from (cvae.model.sampling), and the export that uses it."""

import numpy as np
import pytest
import tensorflow as tf

from cvae.serving import export as export_lib, module as serving_module
from cvae.model import sampling
from cvae.config import Config
from cvae.data import load_splits
from cvae.labels import NUM_CLASSES
from cvae.model.vae import build_model


def _encode_first_pixels(x, labels):
    """A stand-in encoder whose posterior mean is the image's first two pixels and whose
    stddev (the same in both dimensions) is its third pixel."""
    flat = tf.reshape(x, [-1, 784])
    return {"mean": flat[:, :2], "stddev": tf.tile(flat[:, 2:3], [1, 2])}


def _images_with_means(means, stddev=0.5):
    x = np.zeros([len(means), 28, 28, 1], np.float32)
    x.reshape(len(means), -1)[:, :2] = means
    x.reshape(len(means), -1)[:, 2] = stddev
    return x


def test_one_gaussian_matches_the_moments_of_each_class_worked_by_hand():
    # Class c: posterior means (c, 0) and (c, 2), each with variance 0.25 per dimension. The
    # mixture of the two posteriors has mean (c, 1) and covariance that of the means, diag(0, 1)
    # (over n), plus the mean variance 0.25: diag(0.25, 1.25).
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    means = np.stack([labels, np.tile([0.0, 2.0], NUM_CLASSES)], axis=1)
    fitted = sampling.fit_class_mixtures(_encode_first_pixels, _images_with_means(means),
                                         labels, temperature=0.5, batch=3)
    assert fitted.components == 1 and fitted.loc.shape == (10, 1, 2)
    np.testing.assert_allclose(fitted.loc[:, 0], np.stack([np.arange(10), np.ones(10)], 1),
                               atol=1e-6)
    np.testing.assert_allclose(fitted.scale_tril[:, 0],
                               np.tile(np.diag([0.5, np.sqrt(1.25)]), [10, 1, 1]), atol=1e-5)
    np.testing.assert_allclose(fitted.weights, np.ones([10, 1]))
    assert fitted.temperature == 0.5


def test_fit_gives_a_full_covariance_for_correlated_codes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(NUM_CLASSES), 400)
    u = rng.normal(size=len(labels))
    means = np.stack([u + labels, 2 * u + 0.1 * rng.normal(size=len(labels))], 1)
    fitted = sampling.fit_class_mixtures(_encode_first_pixels, _images_with_means(means),
                                         labels, temperature=1.0)
    for c in range(NUM_CLASSES):
        mine = means[labels == c]
        want = np.cov(mine, rowvar=False, bias=True) + 0.25 * np.eye(2)
        cov = fitted.scale_tril[c, 0] @ fitted.scale_tril[c, 0].T
        np.testing.assert_allclose(cov, want, rtol=1e-4)
        assert cov[0, 1] > 1.5  # the two codes move together; a diagonal fit would lose it


def test_a_mixture_finds_each_class_s_clusters_and_their_posterior_variances():
    # Every class: 30% of its codes near (-4, 0) (spread 0.5, posterior stddev 0.2) and 70%
    # near (4, c) (spread 1 and 0.3, correlated; posterior stddev 1). EM with K = 2 finds both:
    # their weights, centres, and covariances plus the posterior variance of their own codes.
    rng = np.random.default_rng(3)
    per_class, labels, means, stddevs = 1000, [], [], []
    spread_b = np.array([[1.0, 0.0], [0.25, 0.3]])
    for c in range(NUM_CLASSES):
        a = rng.normal(size=(300, 2)) * 0.5 + [-4.0, 0.0]
        b = rng.normal(size=(700, 2)) @ spread_b.T + [4.0, c]
        means += [a, b]
        stddevs += [np.full(300, 0.2), np.full(700, 1.0)]
        labels.append(np.full(per_class, c))
    means, stddevs, labels = map(np.concatenate, (means, stddevs, labels))
    x = _images_with_means(means, stddevs)
    fitted = sampling.fit_class_mixtures(_encode_first_pixels, x, labels, 0.8, components=2)
    assert fitted.loc.shape == (10, 2, 2) and fitted.scale_tril.shape == (10, 2, 2, 2)
    for c in range(NUM_CLASSES):
        a, b = np.argsort(fitted.loc[c, :, 0])  # the component on the left is cluster a
        np.testing.assert_allclose(fitted.weights[c, [a, b]], [0.3, 0.7], atol=1e-6)
        mine = means[labels == c]
        np.testing.assert_allclose(fitted.loc[c, a], mine[:300].mean(0), atol=1e-4)
        np.testing.assert_allclose(fitted.loc[c, b], mine[300:].mean(0), atol=1e-4)
        for k, rows, variance in ((a, slice(0, 300), 0.04), (b, slice(300, None), 1.0)):
            cov = fitted.scale_tril[c, k] @ fitted.scale_tril[c, k].T
            want = np.cov(mine[rows], rowvar=False, bias=True) + variance * np.eye(2)
            np.testing.assert_allclose(cov, want, atol=1e-4)
    # Refitting the same codes gives the same numbers (seeded k-means++, fixed EM iterations).
    again = sampling.fit_class_mixtures(_encode_first_pixels, x, labels, 0.8, components=2)
    np.testing.assert_array_equal(again.loc, fitted.loc)


def test_latents_are_the_chosen_component_scaled_by_the_temperature():
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(10, 3, 2)).astype(np.float32)
    tril = np.tril(rng.normal(size=(10, 3, 2, 2))).astype(np.float32)
    weights = np.tile([0.2, 0.5, 0.3], [10, 1])
    sampler = sampling.LatentSampler(loc, tril, 0.7, weights)
    # u picks component k where cumsum(weights)[k - 1] <= u < cumsum(weights)[k].
    labels = np.array([3, 3, 9, 0, 9, 5], np.int32)
    u = np.array([0.1, 0.2, 0.69, 0.7, 0.99, 0.0], np.float32)
    component = np.array([0, 1, 1, 2, 2, 0])
    eps = rng.normal(size=(6, 2)).astype(np.float32)
    got = sampler.latents(tf.constant(labels), tf.constant(eps), tf.constant(u)).numpy()
    want = loc[labels, component] + 0.7 * np.einsum("bij,bj->bi", tril[labels, component], eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # int64 labels give the same codes.
    np.testing.assert_allclose(sampler.latents(tf.constant(labels, tf.int64), tf.constant(eps),
                                               tf.constant(u)), got)
    # A last component of weight 0 is never picked, even for the largest float32 u below 1,
    # which these weights' float32 sum (0.99999994 before the zero) does not exceed.
    weights0 = np.tile(np.array([0.34, 0.23, 0.43, 0.0], np.float32), [10, 1])
    weights0[:, 2] = np.float32(1) - weights0[:, 0] - weights0[:, 1]
    assert np.cumsum(weights0[0], dtype=np.float32)[2] < 1
    loc4, tril4 = np.concatenate([loc, loc[:, :1] + 100], 1), np.concatenate([tril, tril[:, :1]], 1)
    zero_last = sampling.LatentSampler(loc4, tril4, 0.7, weights0)
    top = np.float32(1) - np.finfo(np.float32).epsneg
    z = zero_last.latents(tf.constant([4]), tf.constant(eps[:1]), tf.constant([top])).numpy()
    np.testing.assert_allclose(z[0], loc[4, 2] + 0.7 * tril[4, 2] @ eps[0], rtol=1e-5)
    prior = sampling.standard_normal(2, temperature=0.5)
    np.testing.assert_allclose(prior.latents(tf.constant(labels), tf.constant(eps)), 0.5 * eps)
    with pytest.raises(ValueError, match="a mixture needs u"):
        sampler.latents(tf.constant(labels), tf.constant(eps))


def test_many_draws_have_the_mixture_s_weights_mean_and_covariance():
    rng = np.random.default_rng(2)
    loc = np.stack([np.full((10, 2), -10.0), rng.normal(size=(10, 2))], 1).astype(np.float32)
    tril = np.tile(np.array([[1.0, 0.0], [0.8, 0.6]], np.float32), [10, 2, 1, 1])
    sampler = sampling.LatentSampler(loc, tril, 0.5, np.tile([0.25, 0.75], [10, 1]))
    labels = np.full(40_000, 6, np.int32)
    z = sampler.latents(tf.constant(labels),
                        tf.random.stateless_normal([len(labels), 2], seed=[0, 1]),
                        tf.random.stateless_uniform([len(labels)], seed=[0, 2])).numpy()
    first = z[:, 0] < -5
    assert abs(first.mean() - 0.25) < 0.01
    for k, rows in ((0, first), (1, ~first)):
        np.testing.assert_allclose(z[rows].mean(0), loc[6, k], atol=0.02)
        np.testing.assert_allclose(np.cov(z[rows], rowvar=False), 0.25 * tril[6, k] @ tril[6, k].T,
                                   atol=0.02)


def test_bad_fits_and_samplers_are_refused():
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    labels[labels == 7] = 8  # no class 7 at all
    with pytest.raises(ValueError, match=r"class 7 has 0 training image\(s\)"):
        sampling.fit_class_mixtures(_encode_first_pixels,
                                    _images_with_means(np.zeros([20, 2])), labels, 1.0)
    three = np.repeat(np.arange(NUM_CLASSES), 3)
    sampling.check_fittable(three, components=3)
    with pytest.raises(ValueError, match=r"fits 4 Gaussian\(s\) to each class's training codes, "
                                         r"but class 0 has 3 training image\(s\) \(at least 4"):
        sampling.check_fittable(three, components=4)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampling.standard_normal(4, temperature=0.0)
    with pytest.raises(ValueError, match=r"must be \[10, K, d\], \[10, K, d, d\] and \[10, K\]"):
        sampling.LatentSampler(np.zeros([9, 4], np.float32), np.zeros([9, 4, 4], np.float32),
                               1.0)
    with pytest.raises(ValueError, match=r"must be \[10, K, d\]"):  # 3 components, 2 weights
        sampling.LatentSampler(np.zeros([10, 3, 2]), np.zeros([10, 3, 2, 2]), 1.0,
                               np.full([10, 2], 0.5))
    with pytest.raises(ValueError, match="must be finite"):
        sampling.LatentSampler(np.full([10, 2], np.nan, np.float32),
                               np.zeros([10, 2, 2], np.float32), 1.0)
    with pytest.raises(ValueError, match="weights must be >= 0 and sum to 1"):
        sampling.LatentSampler(np.zeros([10, 2, 2]), np.zeros([10, 2, 2, 2]), 1.0,
                               np.full([10, 2], 0.6))


def test_an_unconditional_model_gets_one_mixture_of_all_codes():
    # Per-class regions would bring the label back in through z.
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    means = np.stack([labels, np.tile([0.0, 2.0], NUM_CLASSES)], axis=1)
    x = _images_with_means(means)
    pooled = sampling.fit_class_mixtures(_encode_first_pixels, x, labels, 1.0, pooled=True)
    want_cov = np.cov(means, rowvar=False, bias=True) + 0.25 * np.eye(2)
    for c in range(NUM_CLASSES):
        np.testing.assert_allclose(pooled.loc[c, 0], [4.5, 1.0], atol=1e-6)
        np.testing.assert_allclose(pooled.scale_tril[c, 0] @ pooled.scale_tril[c, 0].T, want_cov,
                                   rtol=1e-5, atol=1e-5)

    class Unconditional:
        encode = staticmethod(_encode_first_pixels)

    config = Config().replace(conditional=False, label_dropout=0.0, guidance=1.0,
                              sampling_components=2).model
    assert config.sampling == "class_posterior"
    fitted = sampling.for_model(Unconditional, config, x, labels)
    assert fitted.components == 2
    for c in range(1, NUM_CLASSES):
        np.testing.assert_array_equal(fitted.loc[c], fitted.loc[0])
        np.testing.assert_array_equal(fitted.scale_tril[c], fitted.scale_tril[0])
        np.testing.assert_array_equal(fitted.weights[c], fitted.weights[0])


def test_sampling_settings_and_old_configs():
    with pytest.raises(ValueError, match="temperature=0 must be > 0"):
        Config().replace(temperature=0)
    for recipe in (Config().unconditional(), Config().tutorial()):
        assert (recipe.model.sampling, recipe.model.temperature) == ("prior", 1.0)
    with pytest.raises(ValueError, match="sampling_components=0 must be >= 1"):
        Config().replace(sampling_components=0)
    # A config written before sampling existed meant prior codes at temperature 1, and one
    # written before sampling_components one Gaussian per class (version 5).
    old = Config().to_dict()
    del old["model"]["sampling"], old["model"]["temperature"], old["model"]["sampling_components"]
    loaded = Config.from_dict(old).model
    assert (loaded.sampling, loaded.temperature, loaded.sampling_components) == ("prior", 1.0, 1)
    version5 = Config().replace(temperature=0.7).to_dict()
    del version5["model"]["sampling_components"]
    loaded = Config.from_dict(version5).model
    assert (loaded.sampling, loaded.temperature, loaded.sampling_components) == (
        "class_posterior", 0.7, 1)


def test_export_serves_codes_from_the_sampler_it_was_given(tmp_path):
    config = Config.small().replace(temperature=0.5, sampling_components=2)
    model = build_model(config.model)
    loc = np.arange(10 * 2 * 4, dtype=np.float32).reshape(10, 2, 4)
    tril = np.tile(np.diag([1.0, 2.0, 3.0, 4.0]).astype(np.float32), [10, 2, 1, 1])
    tril[:, 1] *= 10
    weights = np.tile(np.array([0.4, 0.6], np.float32), [10, 1])
    path = export_lib.export(model, config, {}, tmp_path / "m",
                             sampler=sampling.LatentSampler(loc, tril, 0.5, weights))
    loaded = tf.saved_model.load(str(path))
    seeds = np.arange(40, dtype=np.int32)
    labels = np.tile([2, 9], 20).astype(np.int32)
    out = loaded.signatures["serving_default"](label=labels, seed=seeds)
    # Row b: eps from seed [s, 0]; u from seed [s, 1] picks component 0 below 0.4, else 1.
    eps = np.stack([tf.random.stateless_normal([4], seed=[s, 0]) for s in seeds])
    u = np.array([tf.random.stateless_uniform([], seed=[s, 1]) for s in seeds])
    component = (u >= 0.4).astype(int)
    assert 0 < component.sum() < len(seeds)  # both components are used
    want = loc[labels, component] + 0.5 * eps * np.array([1.0, 2.0, 3.0, 4.0]) * np.where(
        component == 1, 10.0, 1.0)[:, None]
    np.testing.assert_allclose(out["z"].numpy(), want, rtol=1e-5, atol=1e-4)
    # The images are the decoder's for those codes, as `decode` returns them.
    decoded = loaded.signatures["decode"](z=out["z"], label=labels)["images"]
    np.testing.assert_allclose(out["images"], decoded, atol=1e-6)
    np.testing.assert_allclose(loaded.sampling_loc.numpy(), loc)
    np.testing.assert_allclose(loaded.sampling_weights.numpy(), weights)


def test_exports_that_would_misdescribe_themselves_are_refused(tmp_path):
    config = Config.small()
    model = build_model(config.model)
    other = sampling.standard_normal(4, temperature=0.3)
    assert config.model.temperature != 0.3
    with pytest.raises(ValueError, match=f"sampler's temperature 0.3 is not the config's "
                                         f"{config.model.temperature:g}"):
        export_lib.export(model, config, {}, tmp_path / "a", sampler=other)
    with pytest.raises(ValueError, match="the model's config differs from the config"):
        export_lib.export(model, config.replace(guidance=3.0), {}, tmp_path / "b")
    # One Gaussian at the config's temperature; the config says 16 Gaussians.
    one = sampling.standard_normal(4, temperature=config.model.temperature)
    with pytest.raises(ValueError, match="the sampler has 1 Gaussian.s. per class, the "
                                         "config's sampling_components is 16"):
        export_lib.export(model, config, {}, tmp_path / "c", sampler=one)
    with pytest.raises(ValueError, match="sampling='class_posterior' needs the fitted sampler"):
        serving_module.ServingModule(model)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_too_few_images_of_a_class_is_caught_before_training():
    labels = np.repeat(np.arange(NUM_CLASSES), 3)
    sampling.check_fittable(labels)
    with pytest.raises(ValueError, match=r"class 4 has 1 training image\(s\)"):
        sampling.check_fittable(np.concatenate([labels[labels != 4], [4]]))


def test_samplers_are_float32_and_bernoulli_models_are_fitted_on_binary_pixels():
    sampler = sampling.LatentSampler(np.zeros([10, 2]), np.tile(np.eye(2), [10, 1, 1]), 1.0)
    assert sampler.loc.dtype == sampler.scale_tril.dtype == sampler.weights.dtype == np.float32
    seen = []

    class Recorder:
        @staticmethod
        def encode(x, labels):
            seen.append(x.numpy())
            return _encode_first_pixels(x, labels)

    gray = np.full([20, 28, 28], 100, np.uint8)  # 0.39: never above 0.5, sometimes drawn as 1
    labels = np.repeat(np.arange(NUM_CLASSES), 2)
    for binarization in ("static", "dynamic"):
        config = Config().replace(likelihood="bernoulli", binarization=binarization,
                                  sampling_components=1).model
        seen.clear()
        sampling.for_model(Recorder, config, gray, labels)
        x = np.concatenate(seen)
        assert set(np.unique(x)) <= {0.0, 1.0}
        assert x.mean() == 0.0 if binarization == "static" else 0.3 < x.mean() < 0.48
    seen.clear()
    sampling.for_model(Recorder, Config().replace(sampling_components=1).model, gray,
                       labels)  # gray levels as they are
    np.testing.assert_allclose(np.concatenate(seen), 100 / 255, rtol=1e-6)


def test_export_fits_the_configured_sampler_on_the_training_images(tmp_path, trained):
    model, config = trained["result"].model, trained["config"]
    assert config.model.sampling == "class_posterior"
    loaded = tf.saved_model.load(str(trained["export"]))
    images, labels = load_splits(config.data).train
    posterior = model.encode(images.astype(np.float32)[..., None] / 255.0, labels)
    means, variances = posterior["mean"].numpy(), posterior["stddev"].numpy() ** 2
    k = config.model.sampling_components
    loc, tril = loaded.sampling_loc.numpy(), loaded.sampling_scale_tril.numpy()
    weights = loaded.sampling_weights.numpy()
    assert loc.shape == (10, k, 4) and weights.shape == (10, k) and (weights > 0).all()
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-6)
    for c in (0, 5, 9):
        # The mixture as a whole has the moments of the class's posteriors, computed here from
        # its training images' codes: their mean, and the covariance of the means (over n)
        # plus the mean posterior variance.
        mine = labels == c
        w = weights[c][:, None]
        mean = (w * loc[c]).sum(0)
        cov = sum(weights[c, j] * (tril[c, j] @ tril[c, j].T + np.outer(loc[c, j], loc[c, j]))
                  for j in range(k)) - np.outer(mean, mean)
        np.testing.assert_allclose(mean, means[mine].mean(0), rtol=1e-4, atol=1e-5)
        want = np.cov(means[mine], rowvar=False, bias=True) + np.diag(variances[mine].mean(0))
        np.testing.assert_allclose(cov, want, rtol=1e-3, atol=1e-5)
        # ... and its components are apart (not k copies of one Gaussian): by at least a tenth
        # of the codes' own spread.
        spread = np.sqrt(np.trace(np.cov(means[mine], rowvar=False)))
        assert np.linalg.norm(loc[c] - mean, axis=1).max() > 0.1 * spread
    seeds = np.arange(20, dtype=np.int32)
    z = loaded.signatures["serving_default"](label=np.full(20, 5, np.int32), seed=seeds)["z"]
    eps = np.stack([tf.random.stateless_normal([4], seed=[s, 0]) for s in seeds])
    u = np.array([tf.random.stateless_uniform([], seed=[s, 1]) for s in seeds])
    component = (np.cumsum(weights[5])[None, :-1] <= u[:, None]).sum(1)
    want = loc[5, component] + config.model.temperature * np.einsum(
        "bij,bj->bi", tril[5, component], eps)
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-5, atol=1e-5)
    # A prior export serves N(0, I) codes at its temperature.
    prior = config.replace(sampling="prior", temperature=0.5)
    path = export_lib.export(build_model(prior.model), prior, {}, tmp_path / "prior")
    z = tf.saved_model.load(str(path)).signatures["serving_default"](
        label=tf.constant([4]), seed=tf.constant([11]))["z"].numpy()
    np.testing.assert_allclose(z[0], 0.5 * tf.random.stateless_normal([4], seed=[11, 0]),
                               rtol=1e-6)


def test_class_log_densities_are_each_class_mixtures_density():
    """`class_log_densities` (the exported log_prior) against TFP's mixture of full-covariance
    Gaussians, for every class at once, including a component of weight 0."""
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    rng = np.random.default_rng(0)
    classes, k, d = 10, 3, 5
    loc = rng.normal(size=(classes, k, d)).astype(np.float32)
    a = rng.normal(size=(classes, k, d, d))
    tril = np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) + np.eye(d)).astype(np.float32)
    weights = rng.dirichlet(np.ones(k), size=classes).astype(np.float32)
    weights[0] = [0.0, 0.25, 0.75]
    z = rng.normal(size=(7, d)).astype(np.float32)
    got = sampling.class_log_densities(tf.constant(z), loc, tril, weights).numpy()
    want = np.stack([tfd.MixtureSameFamily(
        tfd.Categorical(probs=weights[c]),
        tfd.MultivariateNormalTriL(loc[c], tril[c])).log_prob(z).numpy()
        for c in range(classes)], axis=1)
    assert got.shape == (7, classes)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
