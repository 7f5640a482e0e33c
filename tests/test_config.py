"""Config: defaults, validation, JSON round trip, and one CLI flag per field."""

import argparse
import dataclasses
import os
import typing

import pytest

from cvae import config as config_module
from cvae.config import (Config, DataConfig, ModelConfig, TrainConfig, add_config_arguments,
                         config_from_arguments)


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_arguments(parser.parse_args(list(argv)))


def _flags() -> set[str]:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return {o for a in parser._actions for o in a.option_strings}


def _other_value(field, default):
    """A valid value different from the default, and the command-line words that give it."""
    choices = typing.get_args(config_module._resolved_type(field.type))
    if isinstance(default, bool):
        return (not default), [("--no-" if default else "--") + field.name.replace("_", "-")]
    flag = "--" + field.name.replace("_", "-")
    if field.name == "image_shape":  # doubled, it would have 2 channels
        value = (32, 32, 3)
    elif field.name == "continuous":
        value = ("fill=0:1",)
    elif isinstance(default, tuple):
        value = tuple(2 * v for v in default)
    elif typing.get_origin(config_module._resolved_type(field.type)) is typing.Literal:
        value = next(c for c in choices if c != default)
    elif isinstance(default, float):
        value = default / 2 if default else 0.5
    elif isinstance(default, int) or field.name == "limit":
        value = (default or 0) + 1
    else:
        value = "other"
    words = [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return value, [flag, *words]


def test_every_field_has_a_flag_that_sets_it():
    for name, section in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        for field in dataclasses.fields(section):
            if field.name in config_module.NOT_FLAGS:  # set from the data
                assert "--" + field.name not in _flags()
                continue
            default = getattr(section(), field.name)
            value, argv = _other_value(field, default)
            assert value != default
            config = _parse(*argv)
            assert getattr(getattr(config, name), field.name) == value, argv
            assert config == Config().replace(**{field.name: value}), argv


def test_no_flags_gives_the_defaults():
    assert _parse() == Config()


def test_json_round_trip():
    config = Config.small().replace(latent_dim=3, likelihood="continuous_bernoulli")
    assert Config.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown config field"):
        Config.from_dict({"model": {"latent_size": 3}})


@pytest.mark.parametrize("field,value,message", [
    ("epochs", -1, "epochs=-1 must be >= 1"),
    ("latent_dim", 0, "latent_dim=0 must be >= 1"),
    ("batch_size", 0, "batch_size=0 must be >= 1"),
    ("learning_rate", 0.0, "learning_rate=0.0 must be > 0"),
    ("likelihood", "gaussian", "likelihood='gaussian' must be one of"),
    ("name", "../x", "name='../x' must be a plain folder name"),
    ("encoder_filters", (8,), "must have 2 entries"),
])
def test_impossible_values_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config().replace(**{field: value})


def test_cli_rejects_bad_choice(capsys):
    with pytest.raises(SystemExit):
        _parse("--likelihood", "gaussian")
    assert "invalid choice: 'gaussian'" in capsys.readouterr().err


@pytest.mark.parametrize("flags,gpus,expected", [
    ({"avx2", "amx_bf16", "avx512_bf16"}, 0, "mixed_bfloat16"),  # the project's machines
    ({"avx2", "avx512_bf16"}, 0, "mixed_bfloat16"),
    ({"avx2", "avx512f"}, 0, "float32"),  # bfloat16 would be emulated: slower
    (set(), 0, "float32"),  # flags unknown (another OS)
    ({"amx_bf16"}, 1, "float32"),  # a GPU: float32 unless asked (--precision mixed_float16)
])
def test_auto_precision_follows_the_machine(flags, gpus, expected):
    assert config_module.resolve_precision("auto", cpu_flags=flags, gpus=gpus) == expected
    for concrete in ("float32", "mixed_bfloat16", "mixed_float16"):  # never overridden
        assert config_module.resolve_precision(concrete, cpu_flags=flags, gpus=gpus) == concrete


def test_auto_precision_reads_this_machines_cpu_flags():
    flags = set()  # none known without /proc/cpuinfo or its x86 "flags" line: float32
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f
                          if line.startswith("flags")), set())
    bf16 = bool(flags & {"amx_bf16", "avx512_bf16"})
    assert config_module.resolve_precision("auto", gpus=0) == (
        "mixed_bfloat16" if bf16 else "float32")


def test_training_configs_written_before_the_fast_path_keep_their_meaning():
    # Configs written before these fields existed trained at a constant rate with Keras' own
    # Adam and a plain-graph loss; their precision field was always written out.
    old = Config().to_dict()
    for name in ("lr_schedule", "xla_loss", "fused_adam"):
        del old["train"][name]
    train = Config.from_dict(old).train
    assert (train.lr_schedule, train.xla_loss, train.fused_adam) == ("constant", False, False)
    assert (Config().train.lr_schedule, Config().train.xla_loss,
            Config().train.fused_adam) == ("cosine", False, True)
    with pytest.raises(ValueError, match="lr_schedule='linear' must be one of"):
        Config().replace(lr_schedule="linear")


def test_recipes_differ_from_the_defaults_where_they_say():
    """The shipped recipe teaches version 10's weights the label in 30 epochs at 5e-4; from
    scratch it is 150 epochs at 2e-3 from random weights; the quick recipe (`make train`) is
    that in 12 epochs; everything else is the defaults'."""
    defaults, scratch, quick = Config(), Config().from_scratch(), Config().quick()
    assert (defaults.train.epochs, defaults.train.learning_rate, defaults.train.init_from,
            defaults.train.swap_weight) == (30, 5e-4, "saved_models/cvae/10", 30.0)
    assert (scratch.train.epochs, scratch.train.learning_rate, scratch.train.init_from) == (
        150, 2e-3, None)
    assert scratch.replace(epochs=30, learning_rate=5e-4, init_from="saved_models/cvae/10") \
        == defaults
    assert (quick.train.epochs, quick.train.name) == (12, "quick")
    assert quick.train.swap_weight == defaults.train.swap_weight  # trained the same way
    assert quick.replace(epochs=150, name=defaults.train.name) == scratch
