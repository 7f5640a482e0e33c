"""Shared fixtures: hand-made IDX files, and one small model trained on real data and exported."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from cvae.serving.versions import shipped_path  # noqa: E402 (TensorFlow reads the variable on import)

REPO = Path(__file__).resolve().parents[1]
# The version of saved_models/cvae/ that ships, as saved_models/cvae/SHIPPED names it: not the
# newest, which `make train` moves on.
SHIPPED = shipped_path(REPO / "saved_models" / "cvae")


def write_idx(path: Path, array: np.ndarray, magic: int, truncate_to: int | None = None) -> Path:
    """Writes `array` (uint8) as a gzip IDX file, optionally keeping only the first bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = gzip.compress(header + array.astype(np.uint8).tobytes())
    path.write_bytes(data[:truncate_to] if truncate_to else data)
    return path


def make_idx_dir(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """A folder with the four Fashion-MNIST IDX files holding random images and labels 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return folder


def run_python(*args: str, check: bool = False, env: dict | None = None,
               cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Runs `python *args` in a fresh process (the repo on the path), capturing its output."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small model trained for one epoch on 512 real Fashion-MNIST images, and its export."""
    from cvae.config import Config
    from cvae.serving.export import export
    from cvae.training.train import train

    root = tmp_path_factory.mktemp("trained")
    config = Config.small(runs_dir=str(root / "runs"), export_dir=str(root / "saved_models/cvae"))
    result = train(config, verbose=0)
    path = export(result.model, result.config, result.metrics, config.train.export_dir,
                  logs_dir=result.run_dir / "logs")
    return {"result": result, "config": config, "export": path, "root": root}


# With CVAE_NO_SKIPS=1 (.ci/run sets it) a skipped test fails the run, unless its reason names a
# GPU: CI installs the browser and the data itself, so a skip there is a missing install step.
ALLOWED_SKIP = "GPU"


def unexplained_skips(reports) -> list[str]:
    """The skipped tests' ids and reasons that CVAE_NO_SKIPS=1 does not allow."""
    found = []
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if ALLOWED_SKIP not in reason:
            found.append(f"{report.nodeid}: {reason}")
    return found


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CVAE_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    bad = unexplained_skips(reporter.stats.get("skipped", []) if reporter else [])
    session.config.cvae_unexplained_skips = bad
    if bad and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bad = getattr(config, "cvae_unexplained_skips", [])
    if bad:
        terminalreporter.write_line(
            f"CVAE_NO_SKIPS=1: {len(bad)} test(s) skipped for a reason other than a GPU:", red=True)
        for line in bad:
            terminalreporter.write_line(f"  {line}", red=True)
