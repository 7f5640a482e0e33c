"""The encoder and decoder networks, one module per architecture; `ModelConfig.architecture`
picks a pair from `NETWORKS`. Every encoder maps (x [B, 28, 28, 1], one-hot y [B, 10]) to the
posterior's mean and stddev [B, latent_dim]; every decoder maps (z, one-hot y) to the
likelihood's parameters [B, 28, 28, channels]. A new architecture is a new module and a line
here."""

from cvae.model.networks.conv import Decoder, Encoder
from cvae.model.networks.dense import MLPDecoder
from cvae.model.networks.resnet import ResidualDecoder, ResidualEncoder
from cvae.model.networks.tutorial import TutorialDecoder, TutorialEncoder

NETWORKS = {"conv": (Encoder, Decoder), "mlp": (Encoder, MLPDecoder),
            "resnet": (ResidualEncoder, ResidualDecoder),
            "tutorial": (TutorialEncoder, TutorialDecoder)}
