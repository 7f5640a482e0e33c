"""Config: defaults, validation, JSON round trip, and one CLI flag per field."""

import argparse
import dataclasses
import typing

import pytest

from cvae import config as config_module
from cvae.config import (Config, DataConfig, ModelConfig, TrainConfig, add_config_arguments,
                         config_from_arguments)


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_arguments(parser.parse_args(list(argv)))


def _other_value(field, default):
    """A valid value different from the default, and the command-line words that give it."""
    choices = typing.get_args(config_module._resolved_type(field.type))
    if isinstance(default, bool):
        return (not default), [("--no-" if default else "--") + field.name.replace("_", "-")]
    flag = "--" + field.name.replace("_", "-")
    if isinstance(default, tuple):
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
