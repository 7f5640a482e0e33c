"""fashion-cvae: a label-controlled conditional VAE for Fashion-MNIST (Keras 3 + TFP)."""

__version__ = "0.1.0"
