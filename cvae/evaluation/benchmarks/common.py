"""What the benchmarks share: how much they measure (`Settings`), the `--quick` config, the
machine and its peak memory, child processes, seeding, logging, and the reports' comparisons,
headers, tables and target lines."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import platform
import sys
from pathlib import Path

import keras
import tensorflow as tf

from cvae.config import Config


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much the benchmark measures. With the defaults the whole run took 124 and 128 s on
    the project's 2-core CPU machine (docs/speed.md)."""

    model_dir: str = "saved_models/cvae"
    # Generation is timed again, in the same run, on this export (a version directory), and the
    # batch-1000 throughput compared with it: version 10, the model before the label steered
    # the decoder. None: no comparison.
    baseline_model: str | None = "saved_models/cvae/10"
    # Time to quality: training images (the first N of the training split) and validation
    # images (the first N // 5 of the validation split, as `--limit` does).
    train_images: int = 3000
    baseline_epochs: int = 10
    # The default training stops at the baseline's quality or after this many epochs.
    max_epochs: int = 30
    # Throughput: images timed after `warmup_steps` untimed steps (which trace the step).
    # (The baseline's 32-image steps are timed on as many images.)
    timed_images: int = 12_800
    warmup_steps: int = 10
    pipeline_images: int = 256_000
    # Generation: timed calls per latency batch size, and calls at batch 1000.
    latency_calls: int = 200
    throughput_calls: int = 20
    # Applications (`--applications`): timed calls of each signature at batch 100.
    application_calls: int = 3

    @classmethod
    def quick(cls, **overrides) -> "Settings":
        """Seconds-long settings for tests: a few steps, calls and epochs."""
        return cls(**{"train_images": 256, "baseline_epochs": 1, "max_epochs": 2,
                      "timed_images": 256, "warmup_steps": 2, "pipeline_images": 2560,
                      "latency_calls": 5, "throughput_calls": 2, "application_calls": 1,
                      **overrides})

    def __post_init__(self):
        for name in ("train_images", "baseline_epochs", "max_epochs", "timed_images",
                     "warmup_steps", "pipeline_images", "latency_calls", "throughput_calls",
                     "application_calls"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def quick_config() -> Config:
    """`Config.small()` without its KL warm-up: the tiny model of the `--quick` mode."""
    return Config.small(kl_warmup_steps=0)


# ----------------------------------------------------------------------------- the machine


def machine() -> dict:
    """CPU model, core counts, memory, load and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow_probability as tfp

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                                1),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "tensorflow": tf.__version__, "keras": keras.__version__, "tfp": tfp.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError("/proc/self/status has no VmHWM line")


def _in_child(function, *args):
    """`function(*args)` in a fresh spawned Python process (its own peak memory and TensorFlow
    state); returns its result or re-raises its exception."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


# ----------------------------------------------------------------------------- seeding and logging


def _seed(config: Config) -> None:
    """Seeds Python, NumPy and TensorFlow as `cvae.training.train.train` does (and, with
    `deterministic`, makes the ops deterministic), so every model starts from the same weights."""
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- reports


def compare(value: float, op: str, threshold: float) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">=": value >= threshold}[op]


def _describe(config: Config) -> str:
    t, m = config.train, config.model
    return (f"batch {config.data.batch_size}, {t.precision}, steps_per_execution "
            f"{t.steps_per_execution}, jit_compile {t.jit_compile}, xla_loss {t.xla_loss}, "
            f"{'fused ' if t.fused_adam else ''}Adam {t.learning_rate:g} {t.lr_schedule} over "
            f"{t.epochs} epochs, beta {t.beta:g}; latent {m.latent_dim}, encoder "
            f"{list(m.encoder_filters)} + {m.hidden_dim}, decoder {_decoder(m)}, "
            f"{m.likelihood}")


def _decoder(m) -> str:
    if m.architecture == "mlp":
        return f"mlp {list(m.decoder_hidden)}"
    if m.architecture == "conv":
        return f"conv {m.hidden_dim} + {list(m.decoder_filters)}"
    return m.architecture


def _header(results: dict) -> list[str]:
    m = results["machine"]
    return [f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']} GiB, {m['gpus']} GPU; load average {m['load_average'][0]} "
            f"-> {m['load_average_after'][0]}",
            f"software: TensorFlow {m['tensorflow']}, Keras {m['keras']}, TFP {m['tfp']}, "
            f"Python {m['python']}",
            f"training config: {_describe(Config.from_dict(results['config']))}"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def format_target(target: dict) -> str:
    """One line: "PASS  name: what 0.412 <= 0.5; ..." (values rounded as `format_value`)."""
    checks = "; ".join(f"{c['what']} {format_value(c['value'])} {c['op']} "
                       f"{format_value(c['threshold'])}" for c in target["checks"])
    return f"{'PASS' if target['passed'] else 'FAIL'}  {target['name']}: {checks}"


def format_value(value: float) -> str:
    """4 significant digits at most, no exponent: 0.4123, 12.35, 1235, 123457."""
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.2e}"
