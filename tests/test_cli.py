"""What every `python -m pipelines.*` command shares: help that shows each default once, and
stderr free of the libraries' own log lines unless asked for (`cvae.cli.quiet_libraries`)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, SHIPPED

COMMANDS = sorted(p.stem for p in (REPO / "pipelines").glob("*.py") if p.stem != "__init__")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python *args` in a fresh process with the environment of a user's shell: without the
    log settings of the tests (and of any command run in this process)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "CVAE_VERBOSE")}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**clean, "PYTHONPATH": str(REPO), **env})


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_default_once_and_offers_verbose(command):
    result = _run("-m", f"pipelines.{command}", "--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    for option in re.split(r"\n(?=  -)", result.stdout):  # an option with its wrapped lines
        assert option.count("(default") <= 1, option
    assert "--verbose" in result.stdout and "CVAE_VERBOSE=1" in result.stdout


def test_generate_writes_nothing_on_stderr_unless_asked(tmp_path):
    """On the shipped model, `pipelines.generate` prints its one line and stderr stays empty
    (TensorFlow 2.21 logs several lines while it loads on a machine without a GPU: oneDNN,
    CUDA drivers, cuInit); --verbose or CVAE_VERBOSE=1 brings them back, and the images are
    the same."""
    args = ["-m", "pipelines.generate", "--model", str(SHIPPED), "--label", "Sneaker",
            "--num", "4", "--seed", "1"]
    quiet = _run(*args, "--out", str(tmp_path / "quiet.png"))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    assert quiet.stdout == (f"wrote {tmp_path / 'quiet.png'}: 4 x Sneaker (seed 1), "
                            f"model {SHIPPED}\n")
    for name, extra, env in (("flag", ["--verbose"], {}), ("env", [], {"CVAE_VERBOSE": "1"})):
        loud = _run(*args, *extra, "--out", str(tmp_path / f"{name}.png"), **env)
        assert loud.returncode == 0 and loud.stderr.strip(), name
        assert not re.search(r"^error|Traceback", loud.stderr, re.MULTILINE), loud.stderr[-3000:]
        np.testing.assert_array_equal(
            tf.io.decode_png(tf.io.read_file(str(tmp_path / f"{name}.png"))).numpy(),
            tf.io.decode_png(tf.io.read_file(str(tmp_path / "quiet.png"))).numpy())


def test_an_import_that_fails_still_shows_what_it_printed(tmp_path):
    """stderr is caught while `import tensorflow` runs, and shown if the import fails: a broken
    installation is not hidden."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import sys\nprint('loading the C++ library failed', file=sys.stderr)\n"
        "raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n")
    result = _run("-m", "pipelines.generate", "--label", "Bag", "--out",
                  str(tmp_path / "bag.png"), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    assert result.returncode != 0
    assert "loading the C++ library failed" in result.stderr
    assert "libtensorflow_framework.so.2: cannot open shared object file" in result.stderr
    assert not (tmp_path / "bag.png").exists()
