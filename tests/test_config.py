"""Config: defaults, validation, JSON round trip, and one CLI flag per field."""

import argparse
import dataclasses

import pytest

from cvae.config import (Config, DataConfig, ModelConfig, TrainConfig, add_config_arguments,
                         config_from_arguments)


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_arguments(parser.parse_args(list(argv)))


def test_every_field_has_a_flag_that_sets_it():
    config = _parse("--latent-dim", "2", "--encoder-filters", "8", "16", "--likelihood",
                    "bernoulli", "--no-decoder-label-planes", "--epochs", "3", "--learning-rate",
                    "0.01", "--limit", "100", "--data-dir", "/x", "--jit-compile")
    assert config.model.latent_dim == 2 and config.model.encoder_filters == (8, 16)
    assert config.model.likelihood == "bernoulli" and config.model.decoder_label_planes is False
    assert config.train.epochs == 3 and config.train.learning_rate == 0.01
    assert config.train.jit_compile is True
    assert config.data.limit == 100 and config.data.data_dir == "/x"
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    dests = {a.dest for a in parser._actions}
    for section in (DataConfig, ModelConfig, TrainConfig):
        for field in dataclasses.fields(section):
            assert field.name in dests, field.name


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
