"""The terms that make the decoder take the garment type from the label (`CVAE.label_terms`):
the swap loss's judge and the code adversary train on their own losses only, their weights
reach the encoder and decoder, the export leaves their networks out, and `init_from` starts a
run from an export's weights (the shipped recipe starts from version 10's)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cvae.config import Config
from cvae.serving import check
from cvae.serving.export import export
from cvae.training.train import RunError, compiled_model, copy_exported_weights, train
from conftest import REPO

BATCH = 64


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.integers(0, 256, [BATCH, 28, 28, 1]).astype(np.float32) / 255)
    y = tf.constant(np.arange(BATCH) % 10, tf.int32)
    eps = tf.constant(rng.standard_normal([BATCH, 4]).astype(np.float32))
    return x, y, eps


def _one_step(**train):
    """The weights of a small model before and after one train step on a fixed batch, by
    network, from the same initialisation whatever the label terms' weights."""
    tf.keras.utils.set_random_seed(0)
    model = compiled_model(Config.small(**train), steps_per_epoch=10)
    nets = {"encoder": model.encoder, "decoder": model.decoder, "judge": model.label_judge,
            "adversary": model.code_adversary}
    before = {k: [v.numpy() for v in n.trainable_variables] for k, n in nets.items() if n}
    logs = model.train_step(_batch())
    after = {k: [v.numpy() for v in n.trainable_variables] for k, n in nets.items() if n}
    return before, after, {k: float(v) for k, v in logs.items()}


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_judge_learns_from_real_images_only_and_the_swap_term_reaches_the_decoder():
    before1, after1, logs = _one_step(swap_weight=1.0)
    before2, after2, _ = _one_step(swap_weight=100.0)
    assert all(_same(before1[k], before2[k]) for k in before1)  # one initialisation
    assert not _same(before1["judge"], after1["judge"])  # the judge trains...
    # ... on the real images' labels alone: the swap term's weight does not move it.
    assert _same(after1["judge"], after2["judge"])
    # The swap term's weight changes the decoder's step (the encoder's is its ELBO's and the
    # swapped codes' gradients).
    assert not _same(after1["decoder"], after2["decoder"])
    for name in ("swap_ce", "judge_ce", "loss"):
        assert np.isfinite(logs[name])
    assert "adversary_ce" not in logs


def test_the_adversary_learns_the_label_from_codes_and_its_weight_reaches_the_encoder():
    before1, after1, logs = _one_step(code_adversary_weight=1.0)
    _, after2, _ = _one_step(code_adversary_weight=100.0)
    assert not _same(before1["adversary"], after1["adversary"])
    # Its own loss is on the codes with their gradient stopped: the same for both weights at
    # the first step (the codes are the same).
    assert _same(after1["adversary"], after2["adversary"])
    assert not _same(after1["encoder"], after2["encoder"])
    assert np.isfinite(logs["adversary_ce"]) and "swap_ce" not in logs


def test_the_adversary_weight_ramps_up_linearly():
    model = compiled_model(Config.small(code_adversary_weight=8.0, code_adversary_ramp_steps=100),
                           steps_per_epoch=10)
    for step, expected in ((0, 0.0), (25, 2.0), (100, 8.0), (400, 8.0)):
        model.optimizer.iterations.assign(step)
        assert float(model.adversary_weight()) == pytest.approx(expected)


def test_a_model_trained_with_label_terms_exports_without_their_networks(tmp_path):
    config = Config.small(swap_weight=30.0, code_adversary_weight=2.0, runs_dir=str(tmp_path),
                          epochs=2)
    result = train(config, verbose=0)
    history = json.loads((result.run_dir / "metrics.json").read_text())
    assert "swap_ce" not in history["test"]  # evaluation reports the ELBO's terms
    plain = compiled_model(Config.small(), steps_per_epoch=None)
    path = export(result.model, config, result.metrics, tmp_path / "saved")
    loaded = tf.saved_model.load(str(path))
    assert [tuple(v.shape) for v in loaded.model_variables] == \
        [tuple(v.shape) for v in plain.variables]
    check.check_version(path)  # signatures, ops, and a clean load in a fresh process


def test_init_from_copies_an_exports_weights_and_refuses_another_architecture(trained):
    model = compiled_model(Config.small(seed=7, swap_weight=30.0), steps_per_epoch=None)
    copy_exported_weights(model, trained["export"])
    ours = [v.numpy() for v in model.encoder.variables + model.decoder.variables]
    theirs = [v.numpy() for v in trained["result"].model.encoder.variables
              + trained["result"].model.decoder.variables]
    assert _same(ours, theirs) and len(ours) > 4
    wider = compiled_model(Config.small().replace(latent_dim=6), steps_per_epoch=None)
    with pytest.raises(RunError, match="shapes are not this model's"):
        copy_exported_weights(wider, trained["export"])
    with pytest.raises(RunError, match="not an exported version"):
        copy_exported_weights(wider, REPO / "saved_models")


def test_the_shipped_recipe_starts_from_version_10_and_the_others_from_scratch():
    defaults = Config()
    assert (REPO / defaults.train.init_from / "saved_model.pb").is_file()
    assert defaults.train.swap_weight > 0
    for variant in (defaults.from_scratch(), defaults.quick(), defaults.fast(),
                    defaults.unconditional(), defaults.tutorial(), Config.small()):
        assert variant.train.init_from is None
    assert defaults.quick().train.swap_weight == defaults.train.swap_weight
    for variant in (defaults.fast(), defaults.unconditional(), defaults.tutorial()):
        assert variant.train.swap_weight == 0  # the earlier recipes, as they were trained
    # Configs written before these fields read as what they did then.
    old = json.loads((REPO / "saved_models/cvae/10/assets.extra/config.json").read_text())
    assert Config.from_dict(old).train.swap_weight == 0
    assert Config.from_dict(old).train.init_from is None


def test_vae_weights_move_a_model_with_label_terms_into_one_without():
    """What the time-to-quality benchmark's scorer does with the shipped recipe's model."""
    tf.keras.utils.set_random_seed(1)
    # No KL warm-up: its weight follows the optimiser's step, which the copy does not carry.
    trained = compiled_model(Config.small(swap_weight=30.0, code_adversary_weight=1.0,
                                          kl_warmup_steps=0), steps_per_epoch=10)
    trained.train_step(_batch())
    plain = compiled_model(Config.small(kl_warmup_steps=0), steps_per_epoch=None)
    assert len(trained.weights) > len(plain.weights)
    with pytest.raises(ValueError):
        plain.set_weights(trained.get_weights())  # the judge's and adversary's are extra
    plain.set_weights(trained.vae_weights())
    x, y, eps = _batch()
    trained.reset_metrics()  # its running means still hold the train step's
    ours = plain.test_step((x, y, eps))
    theirs = trained.test_step((x, y, eps))
    assert float(ours["neg_elbo"]) == pytest.approx(float(theirs["neg_elbo"]), rel=1e-6)
    for mine, source in zip(plain.encoder.weights + plain.decoder.weights,
                            trained.encoder.weights + trained.decoder.weights):
        np.testing.assert_array_equal(mine.numpy(), source.numpy())
