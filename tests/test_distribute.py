"""tf.distribute on CPU: MirroredStrategy over two logical CPU devices and a two-worker
MultiWorkerMirroredStrategy on loopback train the same model as one device does."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_python

# Label dropout and the swap loss off: the dropout mask and the swap loss's target labels and
# N(0, I) codes are drawn per replica (docs/training.md, on several GPUs), so a distributed run
# with them matches a one-device run only in distribution, not number for number.
# float32: in bfloat16 (what precision auto picks on this project's CPUs) one device rounds the
# gradient of 64 images once, two replicas round two of 32 each, 2^-9 apart, not 1e-7.
FLAGS = ["--recipe", "scratch", "--limit", "512", "--batch-size", "64", "--validation-size", "128", "--latent-dim", "4",
         "--encoder-filters", "8", "16", "--decoder-filters", "16", "8", "--hidden-dim", "32",
         "--decoder-hidden", "32", "--label-dropout", "0", "--swap-weight", "0", "--guidance", "1", "--epochs", "2",
         "--precision", "float32"]


def _train(runs: Path, name: str, *extra: str, env: dict | None = None) -> Path:
    run_python("-m", "pipelines.train", *FLAGS, "--runs-dir", str(runs), "--name", name,
               "--export-dir", str(runs.parent / f"models-{name}"), *extra, env=env, check=True)
    return runs / name


def _trained_state(run_dir: Path) -> dict[str, np.ndarray]:
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    return {name: tf.train.load_variable(checkpoint, name)
            for name, _ in tf.train.list_variables(checkpoint)
            if name.startswith("optimizer/_trainable_variables/")}


def _assert_same_training(run_dir: Path, reference: Path) -> None:
    """The same weights (to float rounding: the replicas sum their gradients in another order)
    and the same validation and test figures."""
    from cvae.config import Config
    from cvae.training.train import compiled_model

    ours, theirs = _trained_state(run_dir), _trained_state(reference)
    config = Config.from_json((run_dir / "config.json").read_text())
    assert ours.keys() == theirs.keys()
    # every one compared: the CVAE's and its label terms' (the swap loss's judge)
    assert len(ours) == len(compiled_model(config, steps_per_epoch=None).trainable_variables)
    # The residual blocks' convolution gradients are summed in another order across replicas:
    # a weight near 0 can move by 2e-5 (seen on 1 of 1,296); a wrong split of the batch or a
    # missing all-reduce moves every weight by far more.
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-3, atol=1e-4, err_msg=key)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference)]
    for split in ("validation", "test"):
        assert metrics[0][split]["neg_elbo"] == pytest.approx(metrics[1][split]["neg_elbo"],
                                                              rel=1e-5)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("single") / "runs", "single")


def test_mirrored_over_two_logical_cpus_matches_one_device(single_device, tmp_path):
    run_dir = _train(tmp_path / "runs", "mirrored", "--strategy", "mirrored", "--logical-cpus", "2")
    assert json.loads((run_dir / "config.json").read_text())["train"]["strategy"] == "mirrored"
    _assert_same_training(run_dir, single_device)
    assert (tmp_path / "models-mirrored" / "1" / "saved_model.pb").is_file()


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_loopback_train_and_the_chief_exports(single_device, tmp_path):
    runs = tmp_path / "runs"
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pipelines.train", *FLAGS, "--runs-dir", str(runs),
             "--name", "workers", "--export-dir", str(tmp_path / "models"),
             "--strategy", "multiworker"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                 "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    outputs = [w.communicate(timeout=280) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, out + err
        assert "2 replica(s) of batch 32" in out
    assert "exported" in outputs[0][0] and "exported" not in outputs[1][0]  # the chief only
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["1"]
    assert sorted(p.name for p in (runs / "workers").iterdir()) == [
        "checkpoints", "class_grid.png", "config.json", "logs", "metrics.json", "samples"]
    _assert_same_training(runs / "workers", single_device)


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *FLAGS, "--runs-dir", str(tmp_path),
         "--strategy", "multiworker"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**env, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2
    assert "error: strategy=multiworker needs the TF_CONFIG environment variable" in result.stderr
    assert not any(tmp_path.iterdir())


def test_global_batch_must_split_evenly_across_replicas(tmp_path):
    result = run_python("-m", "pipelines.train", *FLAGS, "--batch-size", "63", "--runs-dir",
                        str(tmp_path), "--strategy", "mirrored", "--logical-cpus", "2")
    assert result.returncode == 2
    assert "batch_size=63 (the global batch) must be a multiple of the 2 replicas" in result.stderr
    assert not any(tmp_path.iterdir())
