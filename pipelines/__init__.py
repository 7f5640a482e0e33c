"""Thin command-line scripts; the logic lives in `cvae`.

Importing the package, which `python -m pipelines.X` does first, keeps the libraries' own log
lines and warnings off stderr before any script loads TensorFlow (`cvae.cli.quiet_libraries`),
unless the command line has --verbose or the environment CVAE_VERBOSE=1. It happens again in the
processes the benchmark spawns, which import their script anew.
"""

import sys

from cvae import cli

if not cli.verbose_requested(sys.argv[1:]):
    cli.quiet_libraries()
