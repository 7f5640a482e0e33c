"""Training: the loop with checkpoints, resume and tf.distribute strategies (`train.py`), and
the optimiser (`optimizers.py`); the data it reads is `cvae.data`'s."""
