"""The SavedModel contract: loaded without cvae/TFP/Keras, every signature matches the model."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cvae.serving import contract, export as export_lib, module as serving_module
from cvae.model import sampling
from cvae.applications import importance, inpaint
from cvae.config import Config
from cvae.data import load_splits, unit_images
from cvae.model.vae import build_model
from conftest import REPO, run_python

LIKELIHOODS = ["discretized_logistic", "bernoulli", "continuous_bernoulli"]


def _inputs(latent_dims, n=6):
    rng = np.random.default_rng(0)
    inputs = {"label": np.arange(n, dtype=np.int32) % 10,
              "target_label": (np.arange(n, dtype=np.int32) + 3) % 10,
              "seed": rng.integers(-2**31, 2**31 - 1, n).astype(np.int32),
              "images": (rng.integers(0, 256, (n, 28, 28, 1)) / 255).astype(np.float32),
              "mask": (rng.random((n, 28, 28, 1)) < 0.5).astype(np.float32)}
    for i, d in enumerate(latent_dims):
        inputs[f"z{i}"] = rng.normal(size=(n, d)).astype(np.float32)
    return inputs


def test_every_signature_matches_the_model_in_a_process_without_cvae(tmp_path, trained):
    models, paths = [trained["result"].model], [trained["export"]]
    others = [k for k in LIKELIHOODS if k != trained["config"].model.likelihood]
    for kind in others:  # untrained models suffice to check the other mean functions
        config = Config.small().replace(likelihood=kind, latent_dim=3)
        model = build_model(config.model)
        models.append(model)
        paths.append(export_lib.export(model, config, {}, tmp_path / kind))
    inputs = _inputs([m.config.latent_dim for m in models])
    np.savez(tmp_path / "in.npz", **inputs)
    run_python(str(REPO / "tests" / "served_outputs.py"), str(tmp_path / "in.npz"),
               str(tmp_path / "out.npz"), *map(str, paths), check=True)
    served = dict(np.load(tmp_path / "out.npz"))
    label, target = inputs["label"], inputs["target_label"]
    for i, model in enumerate(models):
        def got(name):
            return served[f"{i}/{name}"]

        close = dict(rtol=1e-5, atol=1e-6)
        posterior = model.encode(inputs["images"], label)
        np.testing.assert_allclose(got("encode/mean"), posterior["mean"], **close)
        np.testing.assert_allclose(got("encode/stddev"), posterior["stddev"], **close)
        np.testing.assert_allclose(got("decode/images"), model.decode(inputs[f"z{i}"], label),
                                   **close)
        # reconstruct: the posterior mean moved up log p(x | z, y) + log N(z; 0, I) (each
        # pixel's likelihood robust in the config's share) by the config's Adam steps, decoded
        # without guidance.
        settings = Config().applications
        assert settings.reconstruct_refine_steps > 0
        refined = inpaint.refine(model, lambda z, y: model.prior().log_prob(z),
                                 posterior["mean"], tf.constant(inputs["images"]),
                                 tf.ones_like(inputs["images"]), label,
                                 settings.reconstruct_refine_steps,
                                 settings.reconstruct_refine_rate,
                                 settings.reconstruct_pixel_outlier)
        np.testing.assert_allclose(got("reconstruct/images"),
                                   model.decode(refined, label, guided=False),
                                   rtol=1e-4, atol=1e-4)
        # restyle: the same refined code decoded under the target label, with the config's
        # restyle guidance (1: the plain conditional decoder).
        assert settings.restyle_refine and settings.restyle_guidance == 1
        np.testing.assert_allclose(got("restyle/images"),
                                   model.decode(refined, target, guidance=1.0),
                                   rtol=1e-4, atol=1e-4)
        # z = loc[label, k] + T * L[label, k] @ eps, the mixtures fitted to the training images
        # (cvae.model.sampling), eps and the u that picks k from each row's seed.
        eps = np.stack([tf.random.stateless_normal([model.config.latent_dim], seed=[s, 0])
                        for s in inputs["seed"]])
        u = np.array([tf.random.stateless_uniform([], seed=[s, 1]) for s in inputs["seed"]])
        fitted = sampling.for_model(model, model.config,
                                    *load_splits(Config.small().data).train)
        k = (np.cumsum(fitted.weights[label], 1)[:, :-1] <= u[:, None]).sum(1)
        z = fitted.loc[label, k] + model.config.temperature * np.einsum(
            "bij,bj->bi", fitted.scale_tril[label, k], eps)
        np.testing.assert_allclose(got("serving_default/z"), z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got("serving_default/images"), model.decode(z, label), **close)
        images = got("serving_default/images")
        assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
        # Restyling to another label changes the picture (the label is used).
        assert not np.allclose(got("restyle/images"), got("reconstruct/images"))
        # The applications (tests/test_applications.py checks them against the model): known
        # pixels kept exactly, probabilities that sum to 1, images in [0, 1].
        mask = inputs["mask"]
        np.testing.assert_array_equal(got("inpaint/images") * mask, inputs["images"] * mask)
        np.testing.assert_allclose(got("classify/probabilities").sum(1), 1, rtol=1e-5)
        assert (got("classify/label") == got("classify/probabilities").argmax(1)).all()
        assert 0 <= got("denoise/images").min() and got("denoise/images").max() <= 1


def test_generation_is_bit_identical_across_processes_and_batches(tmp_path, trained):
    path = trained["export"]
    inputs = _inputs([trained["config"].model.latent_dim])
    np.savez(tmp_path / "in.npz", **inputs)
    run_python(str(REPO / "tests" / "served_outputs.py"), str(tmp_path / "in.npz"),
               str(tmp_path / "out.npz"), str(path), check=True)
    other_process = np.load(tmp_path / "out.npz")["0/serving_default/images"]
    generate = tf.saved_model.load(str(path)).signatures["serving_default"]
    here = generate(label=inputs["label"], seed=inputs["seed"])["images"].numpy()
    np.testing.assert_array_equal(here, other_process)
    alone = generate(label=inputs["label"][2:3], seed=inputs["seed"][2:3])["images"].numpy()
    np.testing.assert_allclose(alone[0], here[2], atol=1e-6)
    different_seed = generate(label=inputs["label"][2:3], seed=inputs["seed"][2:3] + 1)
    assert np.abs(different_seed["images"].numpy()[0] - here[2]).max() > 1e-3


@pytest.mark.parametrize("bad", [-1, 10])
def test_exported_model_rejects_labels_out_of_range(trained, bad):
    sig = tf.saved_model.load(str(trained["export"])).signatures
    latent = trained["config"].model.latent_dim
    images = tf.zeros([2, 28, 28, 1])
    good, wrong = tf.constant([1, 2]), tf.constant([1, bad])
    calls = {
        "serving_default": dict(label=wrong, seed=tf.constant([0, 1])),
        "decode": dict(z=tf.zeros([2, latent]), label=wrong),
        "encode": dict(images=images, label=wrong),
        "reconstruct": dict(images=images, label=wrong),
        "restyle": dict(images=images, label=wrong, target_label=good),
        "restyle_target": dict(images=images, label=good, target_label=wrong),
    }
    for name, kwargs in calls.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
            sig[name.replace("_target", "")](**kwargs)


def test_exported_model_rejects_inputs_of_different_batch_sizes(trained):
    sig = tf.saved_model.load(str(trained["export"])).signatures
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="label and seed must have the same batch size"):
        sig["serving_default"](label=tf.constant([1, 2]), seed=tf.constant([0, 1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="images and target_label must have the same batch size"):
        sig["restyle"](images=tf.zeros([2, 28, 28, 1]), label=tf.constant([1, 2]),
                       target_label=tf.constant([3]))


def test_reconstruct_fits_the_image_better_than_the_posterior_mean(trained):
    """The exported reconstruct's code (the refined one) explains the image better than the
    encoder's mean: a higher log p(x | z, y) + log N(z; 0, I), each pixel's likelihood robust in
    the config's share, for every image, and a lower squared error on most. An export with 0
    steps (what a config from before the refinement reads as) decodes the mean."""
    model = trained["result"].model
    settings = trained["config"].applications
    share = settings.reconstruct_pixel_outlier
    assert settings.reconstruct_refine_steps > 0 and share > 0
    splits = load_splits(trained["config"].data)
    images = tf.constant(unit_images(splits.test[0][:8]))
    label = tf.constant(splits.test[1][:8].astype(np.int32))
    mean = model.encode(images, label)["mean"]

    def objective(z):
        log_pixel = importance.robust_log_prob(model, importance.params_log_prob(
            model, model.decoder_params(z, label), images), share)
        return (tf.reduce_sum(log_pixel, [1, 2, 3]) + model.prior().log_prob(z)).numpy()

    refined = inpaint.refine(model, lambda z, y: model.prior().log_prob(z), mean, images,
                             tf.ones_like(images), label, settings.reconstruct_refine_steps,
                             settings.reconstruct_refine_rate, share)
    assert (objective(refined) > objective(mean)).all()
    served = tf.saved_model.load(str(trained["export"])).signatures["reconstruct"](
        images=images, label=label)["images"].numpy()
    error = [((model.decode(z, label, guided=False) - images) ** 2).numpy().mean((1, 2, 3))
             for z in (mean, refined)]
    np.testing.assert_allclose(((served - images.numpy()) ** 2).mean((1, 2, 3)), error[1],
                               rtol=1e-3, atol=1e-6)
    assert (error[1] < error[0]).mean() >= 0.75, error
    sampler = export_lib.exported_sampler(trained["export"])
    plain = serving_module.ServingModule(model, sampler, dataclasses.replace(
        settings, reconstruct_refine_steps=0))
    np.testing.assert_allclose(plain.reconstruct(images=images, label=label)["images"],
                               model.decode(mean, label, guided=False), rtol=1e-6, atol=1e-6)


def test_restyle_to_the_own_label_is_the_reconstruction(trained):
    """restyle decodes reconstruct's refined code under the target label without guidance, so
    restyling to the garment's own label is its reconstruction."""
    assert trained["config"].model.guidance != 1
    sig = tf.saved_model.load(str(trained["export"])).signatures
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[3, 4])
    label = tf.constant([0, 3, 7, 9])
    restyled = sig["restyle"](images=images, label=label, target_label=label)["images"]
    np.testing.assert_allclose(restyled, sig["reconstruct"](images=images, label=label)["images"],
                               rtol=1e-5, atol=1e-6)
    mean = sig["encode"](images=images, label=label)["mean"]
    assert not np.allclose(restyled, sig["decode"](z=mean, label=label)["images"])


def test_an_older_config_restyles_the_guided_posterior_mean(trained, tmp_path):
    """A config written before restyle refined its code (version 10's) reads as the encoder's
    mean decoded with the model's guidance, which an export of it serves."""
    old = json.loads((REPO / "saved_models/cvae/10/assets.extra/config.json").read_text())
    settings = Config.from_dict(old).applications
    assert settings.restyle_refine is False and settings.restyle_guidance is None
    config = dataclasses.replace(trained["config"], applications=dataclasses.replace(
        trained["config"].applications, restyle_refine=False, restyle_guidance=None))
    path = export_lib.export(trained["result"].model, config, {}, tmp_path / "m")
    sig = tf.saved_model.load(str(path)).signatures
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[3, 4])
    label, target = tf.constant([0, 3, 7, 9]), tf.constant([1, 1, 2, 0])
    mean = sig["encode"](images=images, label=label)["mean"]
    np.testing.assert_array_equal(
        sig["restyle"](images=images, label=label, target_label=target)["images"],
        sig["decode"](z=mean, label=target)["images"])


def test_exported_model_rejects_pixels_outside_0_1(trained):
    sig = tf.saved_model.load(str(trained["export"])).signatures
    label = tf.constant([0])
    for value in (255.0, -0.5, float("nan")):
        images = tf.fill([1, 28, 28, 1], value)
        for name, kwargs in (("encode", {}), ("reconstruct", {}),
                             ("restyle", {"target_label": label})):
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixels in \[0, 1\]"):
                sig[name](images=images, label=label, **kwargs)


def test_layout_assets_and_no_python_ops(trained):
    path = trained["export"]
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    extra = path / "assets.extra"
    # The run's config, with precision "auto" as training resolved it and classify's
    # calibration fitted by the export (cvae.applications.classify.fit_calibration).
    recorded = Config.from_json((extra / "config.json").read_text())
    assert trained["result"].config.applications.classify_temperature is None
    assert recorded.applications.classify_temperature > 0
    assert recorded.replace(classify_temperature=None) == trained["result"].config
    assert recorded.train.precision != "auto"
    assert json.loads((extra / "classes.json").read_text())[7] == "Sneaker"
    metrics = json.loads((extra / "metrics.json").read_text())
    assert metrics["test"] == trained["result"].metrics["test"]
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}, ops
    signature = proto.meta_graphs[0].signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert sorted(signature.inputs) == ["label", "seed"]
    assert sorted(signature.outputs) == ["images", "z"]


def test_saved_model_cli_runs_the_export(trained, tmp_path):
    import subprocess

    cli = os.path.join(os.path.dirname(os.sys.executable), "saved_model_cli")
    latent = trained["config"].model.latent_dim
    np.save(tmp_path / "z.npy", np.zeros((2, latent), np.float32))
    np.save(tmp_path / "label.npy", np.array([7, 8], np.int32))
    np.save(tmp_path / "bad.npy", np.array([7, 10], np.int32))

    def run(label_file):
        return subprocess.run(
            [cli, "run", "--dir", str(trained["export"]), "--tag_set", "serve",
             "--signature_def", "decode", "--outdir", str(tmp_path / label_file[:-4]),
             "--inputs", f"z={tmp_path / 'z.npy'};label={tmp_path / label_file}"],
            capture_output=True, text=True, timeout=300)

    ok = run("label.npy")
    assert ok.returncode == 0, ok.stderr
    # The TF1-style loader (the one TF Serving uses) must restore every weight it reads.
    expected = trained["result"].model.decode(np.zeros((2, latent), np.float32), [7, 8])
    np.testing.assert_allclose(np.load(tmp_path / "label" / "images.npy"), expected,
                               rtol=1e-5, atol=1e-6)
    bad = run("bad.npy")
    assert bad.returncode != 0 and "label out of range" in bad.stderr


def test_versions_are_never_overwritten_and_failures_leave_nothing(tmp_path, monkeypatch):
    config = Config.small()
    model = build_model(config.model)
    base = tmp_path / "cvae"
    first = export_lib.export(model, config, {}, base)
    pb = (first / "saved_model.pb").read_bytes()
    second = export_lib.export(model, config, {}, base)
    assert (first.name, second.name) == ("1", "2")
    assert (first / "saved_model.pb").read_bytes() == pb

    def broken(*args):
        raise RuntimeError("smoke test failed")

    monkeypatch.setattr(export_lib, "_smoke_test", broken)
    with pytest.raises(RuntimeError, match="smoke test failed"):
        export_lib.export(model, config, {}, base)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no "3", no temporary left
    with pytest.raises(RuntimeError, match="smoke test failed"):
        export_lib.export(model, config, {}, tmp_path / "new")
    assert not (tmp_path / "new").exists()  # a base path the export created goes too


def test_a_version_taken_during_export_is_left_alone(tmp_path, monkeypatch):
    config = Config.small()
    model = build_model(config.model)
    base = tmp_path / "cvae"
    export_lib.export(model, config, {}, base)
    real = export_lib._smoke_test

    def another_exporter_finishes_first(path, latent_dim):
        real(path, latent_dim)
        (base / "2").mkdir()
        (base / "2" / "saved_model.pb").write_bytes(b"theirs")

    monkeypatch.setattr(export_lib, "_smoke_test", another_exporter_finishes_first)
    ours = export_lib.export(model, config, {}, base)
    assert ours.name == "3" and (ours / "saved_model.pb").stat().st_size > 1000
    assert (base / "2" / "saved_model.pb").read_bytes() == b"theirs"


def test_warmup_file_holds_real_requests_for_every_signature(trained):
    from collections import Counter

    from tensorflow_serving.apis import prediction_log_pb2

    path = trained["export"]
    records = tf.data.TFRecordDataset(str(path / "assets.extra" / contract.WARMUP_FILE))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    requests = [log.predict_log.request for log in logs]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    assert {r.model_spec.name for r in requests} == {"cvae"}  # the base path's name
    assert Counter(r.model_spec.signature_name for r in requests) == {
        name: len(contract.WARMUP_BATCH_SIZES) for name in contract.SIGNATURES}
    served = tf.saved_model.load(str(path)).signatures
    batch_sizes = set()
    for request in requests:
        name = request.model_spec.signature_name
        spec = contract.SIGNATURES[name]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert sorted(inputs) == sorted(spec["inputs"]), name
        assert {k: v.dtype.name for k, v in inputs.items()} == {
            k: t.dtype for k, t in spec["inputs"].items()}, name
        batch_sizes |= {v.shape[0] for v in inputs.values()}
        out = served[name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert sorted(out) == sorted(spec["outputs"]), name
        assert all(np.isfinite(v.numpy()).all() for v in out.values()), name
    assert batch_sizes == set(contract.WARMUP_BATCH_SIZES)


def test_serving_functions_take_the_contract_inputs_in_order(monkeypatch):
    prior = Config.small().replace(sampling="prior").model
    module = serving_module.ServingModule(build_model(prior))
    for name, function in module.signatures().items():
        specs = function.input_signature
        assert [s.name for s in specs] == list(contract.SIGNATURES[name]["inputs"]), name
    swapped = dict(contract.SIGNATURES)
    inputs = swapped["restyle"]["inputs"]
    swapped["restyle"] = {**swapped["restyle"], "inputs": {
        "images": inputs["images"], "target_label": inputs["target_label"],
        "label": inputs["label"]}}
    monkeypatch.setattr(serving_module, "SIGNATURES", swapped)
    with pytest.raises(RuntimeError, match=r"_restyle takes \['images', 'label', 'target_label'\]"):
        serving_module.ServingModule(build_model(prior))


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_export_refuses_a_base_path_that_looks_like_a_version(tmp_path):
    config = Config.small()
    model = build_model(config.model)
    (tmp_path / "models" / "7").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "models" / "7")
    before = _listing(tmp_path)
    for base in (tmp_path / "cvae" / "3", tmp_path / "models" / "7", tmp_path / "current"):
        with pytest.raises(ValueError, match="looks like a version directory"):
            export_lib.export(model, config, {}, base)
    assert _listing(tmp_path) == before  # no base path, version or temporary was created


@pytest.mark.parametrize("dangling", [False, True])
def test_export_refuses_a_symlinked_version(tmp_path, dangling):
    config = Config.small()
    model = build_model(config.model)
    base, outside = tmp_path / "cvae", tmp_path / "outside"
    base.mkdir()
    if not dangling:
        outside.mkdir()
    (base / "1").symlink_to(outside)
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match=r"version directory .*/cvae/1 is a symlink"):
        export_lib.export(model, config, {}, base)
    assert _listing(tmp_path) == before


def test_a_symlink_planted_during_export_is_not_written_through(tmp_path, monkeypatch):
    config = Config.small()
    model = build_model(config.model)
    base, outside = tmp_path / "cvae", tmp_path / "outside"
    export_lib.export(model, config, {}, base)
    real = export_lib._smoke_test

    def plant_a_symlink(path, latent_dim):
        real(path, latent_dim)
        (base / "2").symlink_to(outside)  # dangling: not a version, so "2" is the next number

    monkeypatch.setattr(export_lib, "_smoke_test", plant_a_symlink)
    with pytest.raises(ValueError, match=r"refusing to write .*/cvae/2: it is a symlink"):
        export_lib.export(model, config, {}, base)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no temporary left
    assert not outside.exists()
