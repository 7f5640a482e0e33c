"""Training end to end on a small real subset: metrics, run directory, resume, divergence."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cvae.model import losses
from cvae.model import vae as model_module
from cvae.config import Config, resolve_precision
from cvae.training.train import NonFiniteLossError, RunError, train


def test_one_epoch_run_writes_its_directory(trained):
    result, config = trained["result"], trained["config"]
    run = result.run_dir
    # The config as given, with precision "auto" recorded as what it resolved to here.
    assert config.train.precision == "auto"
    saved = Config.from_json((run / "config.json").read_text())
    assert saved == config.replace(precision=resolve_precision("auto"))
    assert saved.train.precision in ("float32", "mixed_bfloat16") and result.config == saved
    assert (run / "samples" / "epoch_001.png").is_file()
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((run / "logs" / "images").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "ckpt-8.index").is_file()  # numbered by step: 512 // 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["seconds_per_epoch"] > 0
    for split in ("validation", "test"):
        m = metrics[split]
        assert m["neg_elbo"] == pytest.approx(m["recon"] + m["kl"], rel=1e-5)
        assert m["kl"] > 0
        # Below the nats of a uniform guess (784 * ln 2 for binary pixels, 784 * ln 256 for 8-bit
        # ones), and above 0 (both likelihoods are discrete).
        levels = 2 if config.model.likelihood == "bernoulli" else 256
        assert 0 < m["neg_elbo"] < 784 * np.log(levels)


def test_training_improves_on_the_initial_model(tmp_path):
    config = Config.small(runs_dir=str(tmp_path), epochs=3)
    result = train(config, verbose=0)
    assert len(result.epoch_seconds) == 3
    untrained = train(config.replace(name="untrained", learning_rate=1e-12, epochs=1), verbose=0)
    assert (result.metrics["validation"]["neg_elbo"]
            < untrained.metrics["validation"]["neg_elbo"] - 50)


def test_same_seed_same_weights(tmp_path):
    a = train(Config.small(runs_dir=str(tmp_path), name="a"), verbose=0).model
    b = train(Config.small(runs_dir=str(tmp_path), name="b"), verbose=0).model
    c = train(Config.small(runs_dir=str(tmp_path), name="c", seed=1), verbose=0).model
    for va, vb in zip(a.trainable_variables, b.trainable_variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(va.numpy(), vc.numpy())
               for va, vc in zip(a.trainable_variables, c.trainable_variables))


def test_existing_run_needs_resume_and_resume_continues(tmp_path):
    # float32: the model returned is then the trained one, with its optimiser (a mixed-precision
    # run returns a float32 copy for evaluation and export).
    config = Config.small(runs_dir=str(tmp_path), lr_schedule="constant", precision="float32")
    first = train(config, verbose=0)
    with pytest.raises(RunError, match="already holds a run: pass --resume"):
        train(config, verbose=0)
    steps_per_epoch = 512 // 64
    assert int(first.model.optimizer.iterations) == steps_per_epoch
    resumed = train(config.replace(epochs=2, learning_rate=5e-4), resume=True, verbose=0)
    assert resumed.metrics["epochs"] == 2 and len(resumed.epoch_seconds) == 1
    assert (first.run_dir / "checkpoints" / "ckpt-16.index").is_file()
    # The optimiser's state came back (its step count goes on) and the new learning rate holds.
    assert int(resumed.model.optimizer.iterations) == 2 * steps_per_epoch
    assert float(resumed.model.optimizer.learning_rate) == pytest.approx(5e-4)
    assert Config.from_json((first.run_dir / "config.json").read_text()).train.learning_rate \
        == 5e-4
    with pytest.raises(RunError, match="no checkpoint"):
        train(config.replace(name="never-ran"), resume=True, verbose=0)
    with pytest.raises(RunError, match="data/model config differs"):
        train(config.replace(latent_dim=3, epochs=3), resume=True, verbose=0)
    with pytest.raises(RunError, match="was trained with lr_schedule 'constant', whose optimiser "
                                       "state does not restore into 'cosine': resume it with "
                                       "--lr-schedule constant"):
        train(config.replace(epochs=3, lr_schedule="cosine"), resume=True, verbose=0)


def test_cosine_schedule_spans_the_epochs_of_the_run(tmp_path):
    import keras

    class Rates(keras.callbacks.Callback):  # the rate each optimiser step used
        def __init__(self):
            super().__init__()
            self.rates = []

        def on_train_batch_begin(self, batch, logs=None):
            self.rates.append(float(self.model.optimizer.learning_rate))

    config = Config.small(runs_dir=str(tmp_path), learning_rate=1e-2, epochs=1)
    assert config.train.lr_schedule == "cosine"
    steps = 512 // 64
    first = Rates()
    train(config, verbose=0, callbacks=[first])
    half_cosine = lambda step, total: 0.5e-2 * (1 + np.cos(np.pi * step / total))  # noqa: E731
    np.testing.assert_allclose(first.rates, [half_cosine(s, steps) for s in range(steps)],
                               rtol=1e-5)
    # Resumed for a second epoch, the schedule spans both: step 8 is its middle.
    resumed = Rates()
    train(config.replace(epochs=2), resume=True, verbose=0, callbacks=[resumed])
    np.testing.assert_allclose(resumed.rates,
                               [half_cosine(s, 2 * steps) for s in range(steps, 2 * steps)],
                               rtol=1e-5)
    # A constant schedule is the rate itself throughout.
    constant = Rates()
    train(config.replace(name="constant", lr_schedule="constant"), verbose=0,
          callbacks=[constant])
    assert constant.rates == [pytest.approx(1e-2)] * steps


def test_a_run_that_never_checkpointed_can_start_again(tmp_path):
    config = Config.small(runs_dir=str(tmp_path))
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "config.json").write_text(config.to_json())
    assert train(config, verbose=0).metrics["epochs"] == 1


def test_load_run_recomputes_metrics_of_another_epoch(trained):
    from cvae.training.train import load_run

    run_dir = trained["result"].run_dir
    metrics_file = run_dir / "metrics.json"
    original = json.loads(metrics_file.read_text())
    loaded = load_run(run_dir)
    assert loaded.metrics == original  # current: taken as they are
    # Every variable is the trained one (the dense decoder's hidden layers, kept in a list,
    # are checkpointed only through the optimiser's list of what it trains).
    weights = trained["result"].model.get_weights()
    assert len(loaded.model.get_weights()) == len(weights)
    for a, b in zip(loaded.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    metrics_file.write_text(json.dumps({**original, "epochs": 0, "test": {"neg_elbo": 1.0}}))
    try:
        recomputed = load_run(run_dir).metrics
    finally:
        metrics_file.write_text(json.dumps(original))
    assert recomputed["epochs"] == 1
    # One reparameterised sample per image: close to, not equal to, the figure at training.
    assert recomputed["test"]["neg_elbo"] == pytest.approx(original["test"]["neg_elbo"], rel=0.01)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = Config.small(runs_dir=str(tmp_path))
    good = train(config, verbose=0)
    checkpoint = tf.train.latest_checkpoint(str(good.run_dir / "checkpoints"))
    saved = {name: tf.train.load_variable(checkpoint, name)
             for name, _ in tf.train.list_variables(checkpoint) if "kernel" in name}
    real = losses.negative_elbo

    def diverging(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {k: v * np.nan for k, v in terms.items()}

    monkeypatch.setattr(losses, "negative_elbo", diverging)
    # The XLA loss is a tf.function traced (with the real loss) by the run above: a fresh one
    # traces the patched loss.
    monkeypatch.setattr(model_module, "_xla_negative_elbo",
                        tf.function(model_module._negative_elbo, jit_compile=True))
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan at epoch 2.*ckpt-8"):
        train(config.replace(epochs=2), resume=True, verbose=0)
    assert tf.train.latest_checkpoint(str(good.run_dir / "checkpoints")) == checkpoint
    assert not (good.run_dir / "checkpoints" / "ckpt-16.index").exists()
    for name, value in saved.items():  # the good checkpoint itself is untouched
        np.testing.assert_array_equal(tf.train.load_variable(checkpoint, name), value)
    with pytest.raises(NonFiniteLossError, match="at epoch 1, batch 0.*No checkpoint was written"):
        train(config.replace(name="diverges"), verbose=0)


def test_jit_compile_trains_the_same_model(tmp_path):
    """The XLA path (--jit-compile, meant for GPUs) runs on CPU and agrees with plain graphs."""
    # float32: a mixed-precision run returns a float32 copy, compiled without XLA.
    small = Config.small(runs_dir=str(tmp_path), precision="float32")
    plain = train(small.replace(name="plain"), verbose=0)
    jit = train(small.replace(name="jit", jit_compile=True), verbose=0)
    assert jit.model.jit_compile is True
    assert jit.metrics["validation"]["neg_elbo"] == pytest.approx(
        plain.metrics["validation"]["neg_elbo"], rel=1e-3)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_16_bits_and_evaluates_in_float32(tmp_path, precision):
    import keras

    from cvae.training.train import compiled_model, load_run

    config = Config.small(runs_dir=str(tmp_path), name=precision, precision=precision, epochs=2)
    model = compiled_model(config, steps_per_epoch=None)
    assert model.decoder.hidden.compute_dtype == precision.removeprefix("mixed_")
    assert model.decoder.hidden.kernel.dtype == "float32"  # weights stay float32
    assert model.decoder.out.compute_dtype == "float32"  # and so do the likelihood's parameters
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "mixed_float16")
    mixed = train(config, verbose=0)
    assert mixed.model.decoder.hidden.compute_dtype == "float32"  # what is evaluated and exported
    # The run reloads (as `pipelines.export --run` does) with every trained weight.
    loaded = load_run(mixed.run_dir)
    assert loaded.model.decoder.hidden.compute_dtype == "float32"
    for a, b in zip(loaded.model.get_weights(), mixed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    plain = train(config.replace(name="plain", precision="float32"), verbose=0)
    # 16-bit arithmetic, the same training: close, not equal.
    assert mixed.metrics["validation"]["neg_elbo"] == pytest.approx(
        plain.metrics["validation"]["neg_elbo"], rel=2e-3)
    assert mixed.metrics["validation"]["neg_elbo"] != plain.metrics["validation"]["neg_elbo"]


def test_steps_per_execution_trains_the_same_model(tmp_path):
    # float32: the model returned is then the trained one, with its optimiser's step count.
    small = Config.small(runs_dir=str(tmp_path), epochs=2, precision="float32")
    one = train(small.replace(name="one"), verbose=0)
    four = train(small.replace(name="four", steps_per_execution=4), verbose=0)
    for a, b in zip(one.model.get_weights(), four.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(four.model.optimizer.iterations) == 16
