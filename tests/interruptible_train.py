"""`python -m pipelines.train` that stops at a given optimiser step, for the fault tests.

    python tests/interruptible_train.py STEP MARKER [pipelines.train flags...]

When training reaches STEP it writes the file MARKER and waits; the test then kills the process
(SIGKILL) or presses Ctrl-C (SIGINT) at that exact point. Everything else is the real command.
"""

import functools
import signal
import sys
import time
from pathlib import Path

import keras

from cvae import cli
from cvae.training import train as cvae_train
from pipelines import train as train_pipeline


class PauseAt(keras.callbacks.Callback):
    def __init__(self, step: int, marker: Path):
        super().__init__()
        self.step, self.marker = step, marker

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            self.marker.write_text(str(self.step))
            time.sleep(600)  # until the test's signal arrives


if __name__ == "__main__":
    # Python raises KeyboardInterrupt on SIGINT only if SIGINT was not ignored when it started,
    # and a shell without job control starts background jobs (such as CI's) with it ignored.
    # Ctrl-C in a terminal reaches a foreground process, so give the test that situation.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    step, marker, *argv = sys.argv[1:]
    cvae_train.train = functools.partial(cvae_train.train,
                                         callbacks=[PauseAt(int(step), Path(marker))])
    sys.exit(cli.run(lambda: train_pipeline.main(argv)))
