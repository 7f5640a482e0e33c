"""Speed and scale on the current machine: training throughput through the project's `fit`
path, the input pipeline alone, SavedModel generation latency, peak training memory, and time
to quality against a tutorial-style baseline loop on the same model. The
measurements are under `benchmarks/`, one module each; this module runs them (`run`, the
training variants in `run_variants`), checks their targets and formats and writes the report."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from cvae import data
from cvae.config import Config
from cvae.evaluation.benchmarks.common import (Settings, _header, _in_child, _log, _table,
                                               compare, format_target, machine)
from cvae.evaluation.benchmarks.generation import (GENERATION_LATENCY_BATCHES,
                                                   GENERATION_THROUGHPUT_BATCH,
                                                   TARGET_BATCH1000_IMAGES_PER_SECOND,
                                                   TARGET_BATCH1_P50_MS,
                                                   TARGET_GENERATION_VS_BASELINE,
                                                   generation_latency)
from cvae.evaluation.benchmarks.quality import TARGET_TIME_RATIO, time_to_quality
from cvae.evaluation.benchmarks.training import (BASELINE_BATCH_SIZE, TARGET_PIPELINE_FACTOR,
                                                 _baseline_child, _training_child,
                                                 input_pipeline_throughput)
from cvae.files import atomic_write_text
from cvae.serving import generate

# --variants without a list: alternatives to the configuration given, one field at a time.
STANDARD_VARIANTS = ("batch_size=64", "batch_size=128", "batch_size=256", "batch_size=512",
                     "steps_per_execution=1", "steps_per_execution=8",
                     "precision=float32", "precision=mixed_bfloat16", "xla_loss=true",
                     "fused_adam=false", "precision=float32,fused_adam=false",
                     "jit_compile=true")


# ----------------------------------------------------------------------------- the whole run


def check(config: Config, settings: Settings, splits: data.Splits) -> None:
    """Raises ValueError for settings that cannot run on `splits`, before anything is measured."""
    if config.train.strategy != "default":
        raise ValueError(f"--strategy {config.train.strategy}: the benchmark measures one "
                         f"device (strategy default)")
    available = len(splits.train[0])
    if settings.train_images > available:
        raise ValueError(f"--train-images {settings.train_images} is more than the {available} "
                         f"training images")
    smallest = max(config.data.batch_size, BASELINE_BATCH_SIZE)
    if settings.train_images < smallest:
        raise ValueError(f"--train-images {settings.train_images} is fewer than one batch "
                         f"({smallest} images)")


def targets(results: dict) -> list[dict]:
    """The issue's three targets, each with its checks (measured value, comparison, threshold)
    and whether every check passes."""
    quality = results["time_to_quality"]
    pipeline_factor = (results["input_pipeline"]["images_per_second"]
                       / results["training"]["images_per_second"])
    generation = results["generation"]
    throughput = f"batch_{GENERATION_THROUGHPUT_BATCH}"
    against = ([("batch-1000 images/s over the baseline export's",
                 generation[throughput]["images_per_second"]
                 / results["generation_baseline"][throughput]["images_per_second"],
                 ">=", TARGET_GENERATION_VS_BASELINE)]
               if "generation_baseline" in results else [])
    rows = [
        ("time to quality, default / baseline seconds",
         [("ratio", quality["ratio"], "<=", TARGET_TIME_RATIO)],
         quality["default"]["reached"]),
        ("input pipeline images/s over training images/s",
         [("factor", pipeline_factor, ">=", TARGET_PIPELINE_FACTOR)], True),
        ("SavedModel generation",
         [("batch-1 p50 ms", generation["batch_1"]["p50_ms"], "<", TARGET_BATCH1_P50_MS),
          ("batch-1000 images/s", generation["batch_1000"]["images_per_second"], ">=",
           TARGET_BATCH1000_IMAGES_PER_SECOND), *against], True),
    ]
    out = []
    for name, checks, valid in rows:
        checks = [{"what": what, "value": value, "op": op, "threshold": threshold,
                   "passed": compare(value, op, threshold)}
                  for what, value, op, threshold in checks]
        out.append({"name": name, "checks": checks,
                    "passed": valid and all(c["passed"] for c in checks)})
    return out


def run(config: Config, settings: Settings) -> dict:
    """Every measurement (see the module docstring), as one JSON-ready dict."""
    started = time.perf_counter()
    generate.resolve_version(settings.model_dir)  # a missing model fails before any work
    config = config.resolved()
    splits = data.load_splits(config.data)
    check(config, settings, splits)
    results = {"machine": machine(), "config": config.to_dict(),
               "settings": dataclasses.asdict(settings)}
    _log("measuring the input pipeline ...")
    results["input_pipeline"] = input_pipeline_throughput(config, splits.train, settings)
    _log("measuring SavedModel generation ...")
    results["generation"] = generation_latency(settings.model_dir, settings)
    if settings.baseline_model:
        _log(f"measuring SavedModel generation of {settings.baseline_model} ...")
        results["generation_baseline"] = generation_latency(settings.baseline_model, settings)
    _log("measuring training throughput (child process) ...")
    results["training"] = _in_child(_training_child, config.to_json(), settings)
    _log("measuring the baseline's throughput (child process) ...")
    results["baseline"] = _in_child(_baseline_child, config.to_json(), settings)
    _log(f"time to quality: baseline {settings.baseline_epochs} epochs, then the default "
         f"(child processes) ...")
    results["time_to_quality"] = time_to_quality(config, settings)
    quality = results["time_to_quality"]
    results["speedups"] = {
        "training_images_per_second": (results["training"]["images_per_second"]
                                       / results["baseline"]["images_per_second"]),
        "time_to_quality": quality["baseline"]["seconds"] / quality["default"]["seconds"]}
    results["targets"] = targets(results)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


def _flat(config: Config) -> dict:
    """Every config field by its flat name (as `Config.replace` takes them)."""
    return {f.name: getattr(section, f.name)
            for section in (getattr(config, s.name) for s in dataclasses.fields(config))
            for f in dataclasses.fields(section)}


def parse_variant(spec: str, base: Config) -> Config:
    """`base` with the fields of `spec` ("batch_size=256" or "precision=mixed_bfloat16,
    jit_compile=true") changed; raises ValueError naming a bad field or value."""
    fields = _flat(base)
    changes = {}
    for item in spec.split(","):
        name, sep, text = item.strip().partition("=")
        name = name.replace("-", "_")
        if not sep or name not in fields:
            raise ValueError(f"--variants: {item!r} is not FIELD=VALUE with a config field")
        current = fields[name]
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError
                value = text.lower() == "true"
            elif isinstance(current, tuple):
                value = tuple(int(v) for v in text.split("x"))
            elif current is None:
                value = int(text) if text.isdigit() else text
            else:
                value = type(current)(text)
        except ValueError:
            raise ValueError(f"--variants: bad value in {item!r} (the field is "
                             f"{type(current).__name__})") from None
        changes[name] = value
    return base.replace(**changes)


def variant_name(config: Config, base: Config) -> str:
    """The fields where `config` differs from `base`, e.g. "batch_size=256" ("reference")."""
    fields, reference = _flat(config), _flat(base)
    return ", ".join(f"{k}={v}" for k, v in fields.items() if v != reference[k]) or "reference"


def run_variants(config: Config, variants: list[Config], settings: Settings) -> dict:
    """Training throughput (each in its own child process) of `config` and of every variant
    that differs from it. A variant that cannot run gets an "error" instead of figures."""
    started = time.perf_counter()
    # "auto" made concrete: a variant naming the same precision is then the same config, and
    # the JSON says what ran.
    config, variants = config.resolved(), [v.resolved() for v in variants]
    results = {"machine": machine(), "config": config.to_dict(),
               "settings": dataclasses.asdict(settings), "variants": []}
    data.load_splits(config.data)  # fails here, once, if the data cannot be read
    seen = []
    for variant in [config, *variants]:
        if variant in seen:
            continue
        seen.append(variant)
        name = variant_name(variant, config)
        _log(f"measuring training throughput: {name} ...")
        row = _in_child(_training_child, variant.to_json(), settings, True)
        results["variants"].append({"name": name, "batch_size": variant.data.batch_size,
                                    "steps_per_execution": variant.train.steps_per_execution,
                                    "precision": variant.train.precision,
                                    "jit_compile": variant.train.jit_compile, **row})
    reference = results["variants"][0]
    for row in results["variants"]:
        if "error" not in row and "error" not in reference:
            row["vs_reference"] = row["images_per_second"] / reference["images_per_second"]
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


# ----------------------------------------------------------------------------- reports


def format_report(results: dict) -> str:
    """The printed table of `run`'s results."""
    train, base, pipe = results["training"], results["baseline"], results["input_pipeline"]
    gen, quality = results["generation"], results["time_to_quality"]
    rows = [
        [f"training: fit + make_dataset, batch {train['batch_size']}",
         f"{train['images_per_second']:.0f}", f"{train['step_ms']:.1f} /step",
         f"{train['peak_rss_mib']:.0f}"],
        [f"baseline: tutorial loop, batch {base['batch_size']}",
         f"{base['images_per_second']:.0f}", f"{base['step_ms']:.1f} /step",
         f"{base['peak_rss_mib']:.0f}"],
        [f"input pipeline alone, batch {pipe['batch_size']}",
         f"{pipe['images_per_second']:.0f}", "", ""],
        [f"baseline's pipeline alone, batch {pipe['baseline']['batch_size']}",
         f"{pipe['baseline']['images_per_second']:.0f}", "", ""],
    ]
    for batch in GENERATION_LATENCY_BATCHES:
        g = gen[f"batch_{batch}"]
        rows.append([f"generation, batch {batch}", f"{batch * 1000 / g['p50_ms']:.0f}",
                     f"p50 {g['p50_ms']:.2f}, p99 {g['p99_ms']:.2f}", ""])
    g = gen[f"batch_{GENERATION_THROUGHPUT_BATCH}"]
    rows.append([f"generation, batch {GENERATION_THROUGHPUT_BATCH}",
                 f"{g['images_per_second']:.0f}", f"p50 {g['p50_ms']:.1f}", ""])
    baseline = results.get("generation_baseline")
    if baseline:
        b = baseline[f"batch_{GENERATION_THROUGHPUT_BATCH}"]
        rows.append([f"baseline export's generation, batch {GENERATION_THROUGHPUT_BATCH}",
                     f"{b['images_per_second']:.0f}", f"p50 {b['p50_ms']:.1f}", ""])
    b, d = quality["baseline"], quality["default"]
    lines = [*_header(results), "",
             *_table(["measurement", "images/s", "ms", "peak RSS MiB"], rows), "",
             f"time to quality ({quality['train_images']} training images, "
             f"{quality['validation_images']} validation images; validation neg_elbo, "
             f"nats/image):",
             f"  baseline: {b['epochs']} epochs at batch {b['batch_size']}: {b['seconds']:.1f} s "
             f"-> {b['neg_elbo']:.2f} (the target)",
             f"  default:  {d['epochs']} epochs at batch {d['batch_size']}: {d['seconds']:.1f} s "
             f"-> {d['neg_elbo']:.2f}" + ("" if d["reached"] else
                                          f" (target NOT reached in {d['max_epochs']} epochs)"),
             f"speed-up of the default over the baseline: "
             f"{results['speedups']['training_images_per_second']:.2f}x training images/s, "
             f"{results['speedups']['time_to_quality']:.2f}x time to quality",
             f"generation model: {gen['model']}" + (
                 f" (baseline: {baseline['model']})" if baseline else ""), "", "targets:",
             *("  " + format_target(t) for t in results["targets"]),
             f"benchmark took {results['seconds']:.0f} s"]
    return "\n".join(lines)


def format_variants(results: dict) -> str:
    """The printed table of `run_variants`' results."""
    rows = []
    for row in results["variants"]:
        if "error" in row:
            rows.append([row["name"], str(row["batch_size"]), "failed", "", "", ""])
            continue
        rows.append([row["name"], str(row["batch_size"]), f"{row['images_per_second']:.0f}",
                     f"{row['step_ms']:.1f}", f"{row['vs_reference']:.2f}x",
                     f"{row['peak_rss_mib']:.0f}"])
    errors = [f"  {row['name']}: {row['error']}" for row in results["variants"] if "error" in row]
    return "\n".join([*_header(results), "",
                      *_table(["training variant", "batch", "images/s", "ms/step", "vs reference",
                               "peak RSS MiB"], rows),
                      *(["failed:", *errors] if errors else []),
                      f"benchmark took {results['seconds']:.0f} s"])


def write_report(path: str | os.PathLike, results: dict) -> Path:
    """Writes `results` as JSON, atomically."""
    return atomic_write_text(path, json.dumps(results, indent=2) + "\n")
