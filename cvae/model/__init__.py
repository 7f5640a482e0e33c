"""The model: the conditional VAE (`vae.py`), its networks (`networks/`, one module per
architecture), the likelihoods p(x|z,y), the loss as pure functions (`losses.py`: the KL and the
negative ELBO), and the samplers of generated images' codes (`sampling.py`)."""
