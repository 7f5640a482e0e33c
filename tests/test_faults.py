"""Training that survives faults: SIGKILL and Ctrl-C mid-epoch, then --resume, give the weights
of an uninterrupted run; broken checkpoint state is an error, never a silent fresh start."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cvae.config import Config
from cvae.training.train import RunError, train
from conftest import REPO, run_python

# 1,024 images in batches of 64: 16 steps an epoch; small layers, deterministic kernels.
FLAGS = ["--recipe", "scratch", "--limit", "1024", "--batch-size", "64", "--validation-size", "128", "--latent-dim", "4",
         "--encoder-filters", "8", "16", "--decoder-filters", "16", "8", "--hidden-dim", "32",
         "--epochs", "2", "--deterministic", "--no-export"]
STEPS = 16


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    # Everything saved (weights, Adam's moments and step counter, the epoch) but the number of
    # saves, which an interruption adds to.
    return {name: tf.train.load_variable(checkpoint, name)
            for name, _ in tf.train.list_variables(checkpoint)
            if name not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")}


def _stopped_at(step: int, runs: Path, name: str, sig: int) -> subprocess.CompletedProcess:
    """Runs the real training command until optimiser step `step`, then sends `sig`."""
    marker = runs.parent / f"{name}.reached"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "interruptible_train.py"), str(step), str(marker),
         *FLAGS, "--runs-dir", str(runs), "--name", name],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never reached its step"
        time.sleep(0.1)
    child.send_signal(sig)
    out, err = child.communicate(timeout=120)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("faults") / "runs"
    run_python("-m", "pipelines.train", *FLAGS, "--runs-dir", str(runs), "--name", "whole",
               check=True)
    return runs, _weights(runs / "whole")


def _resume_and_compare(runs: Path, name: str, reference: dict) -> None:
    # --resume takes the run's own config: no --recipe.
    result = run_python("-m", "pipelines.train", *FLAGS[2:], "--runs-dir", str(runs), "--name",
                        name, "--resume", check=True)
    assert "resumed" in result.stdout
    weights = _weights(runs / name)
    assert weights.keys() == reference.keys() and len(weights) > 40
    assert weights["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 2 * STEPS
    for key, value in reference.items():
        np.testing.assert_allclose(weights[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(uninterrupted):
    runs, reference = uninterrupted
    killed = _stopped_at(STEPS + 5, runs, "killed", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    # Killed in epoch 2: only epoch 1's checkpoint exists, and resume starts from it.
    assert tf.train.latest_checkpoint(str(runs / "killed" / "checkpoints")).endswith(f"ckpt-{STEPS}")
    _resume_and_compare(runs, "killed", reference)


def test_ctrl_c_saves_the_step_reached_and_resume_continues_from_it(uninterrupted):
    runs, reference = uninterrupted
    stopped = _stopped_at(STEPS + 5, runs, "interrupted", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert f"interrupted: saved {runs / 'interrupted' / 'checkpoints'}/ckpt-{STEPS + 5}" \
        in stopped.stdout
    assert "continue with --resume" in stopped.stdout
    assert tf.train.latest_checkpoint(str(runs / "interrupted" / "checkpoints")).endswith(
        f"ckpt-{STEPS + 5}")
    # Mid-epoch: the resumed run trains the 11 remaining steps of epoch 2 on the very batches
    # the uninterrupted run saw, and ends with the same weights.
    _resume_and_compare(runs, "interrupted", reference)


@pytest.fixture
def finished_run(tmp_path):
    config = Config.small(runs_dir=str(tmp_path), epochs=2)
    result = train(config, verbose=0)
    return config, result.run_dir / "checkpoints"


def test_missing_checkpoint_state_is_an_error_not_a_fresh_start(finished_run):
    config, checkpoints = finished_run
    (checkpoints / "checkpoint").unlink()
    for resume in (True, False):
        with pytest.raises(RunError, match="'checkpoint' state file, which names the latest, is missing or unreadable"):
            train(config, resume=resume, verbose=0)
    assert sorted(p.name for p in checkpoints.glob("*.index")) == ["ckpt-16.index",
                                                                  "ckpt-8.index"]


def test_corrupt_checkpoint_state_is_an_error(finished_run):
    config, checkpoints = finished_run
    (checkpoints / "checkpoint").write_text("model_checkpoint_path: {{ not a checkpoint\n")
    for resume in (True, False):
        with pytest.raises(RunError, match="state file, which names the latest, is missing or un"):
            train(config, resume=resume, verbose=0)


def test_checkpoint_named_but_missing_is_an_error(finished_run):
    config, checkpoints = finished_run
    (checkpoints / "ckpt-16.index").unlink()
    with pytest.raises(RunError, match="names ckpt-16, whose files are missing"):
        train(config.replace(epochs=3), resume=True, verbose=0)


def test_corrupt_checkpoint_data_is_an_error(finished_run):
    config, checkpoints = finished_run
    data_file = next(checkpoints.glob("ckpt-16.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(RunError, match="cannot restore .*ckpt-16 \\(corrupt or incomplete"):
        train(config.replace(epochs=3), resume=True, verbose=0)
