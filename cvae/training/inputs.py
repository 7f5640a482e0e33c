"""What training reads: the splits of a config's data (Fashion-MNIST's arrays or a folder's
rows) and the tf.data pipeline of one split."""

from __future__ import annotations

import tensorflow as tf

from cvae import data
from cvae.config import Config
from cvae.data import folder


def load_data(config: Config):
    """The splits of `config.data`: Fashion-MNIST's (`cvae.data.Splits`), or a folder's
    (`cvae.data.folder.FolderSplits`) when `images` is set."""
    if config.data.images or config.data.metadata:
        return folder.load_folder_splits(config.data)  # which refuses a CSV without a folder
    return data.load_splits(config.data)


def split_size(split) -> int:
    """Images in one split of `load_data`'s."""
    return len(split) if isinstance(split, folder.Rows) else len(split[0])


def make_dataset(config: Config, arrays, training: bool, start_step: int = 0) -> tf.data.Dataset:
    """The pipeline of one split for `config` (see `cvae.data.make_dataset`, and
    `cvae.data.folder.make_dataset` for a folder's)."""
    if isinstance(arrays, folder.Rows):
        return folder.make_dataset(arrays, batch_size=config.data.batch_size,
                                   likelihood=config.model.likelihood, seed=config.train.seed,
                                   training=training, latent_dim=config.model.latent_dim,
                                   start_step=start_step, binarization=config.model.binarization)
    return data.make_dataset(*arrays, batch_size=config.data.batch_size,
                             likelihood=config.model.likelihood, seed=config.train.seed,
                             training=training, latent_dim=config.model.latent_dim,
                             start_step=start_step, binarization=config.model.binarization)
