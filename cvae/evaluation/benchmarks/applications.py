"""Applications latency (`--applications`): the exported model's `classify`, `inpaint`,
`denoise` and (exports that have it) `upscale` signatures at batch 100, against their targets."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from cvae.evaluation.benchmarks.common import (Settings, _header, _log, _table, compare,
                                               format_target, machine)
from cvae.serving import generate

# The applications' signatures at the batch the issue times them, and the target (seconds a
# call, p50) that classify and inpaint must meet at the export's settings; denoise is timed too.
APPLICATIONS_BATCH = 100
TARGET_APPLICATION_SECONDS = 5.0
TIMED_APPLICATIONS = ("classify", "inpaint", "denoise")
# `upscale` (issue 25: a batch of 100 in under 2 s), timed at both input sizes on exports that
# have it (it came later than the others), the samples' block means as its inputs.
UPSCALE_SIZES = {"upscale 14x14": 2, "upscale 7x7": 4}  # name -> factor
TARGET_UPSCALE_SECONDS = 2.0


def timed_names(signatures) -> tuple[str, ...]:
    """The rows timed for an export with `signatures`: the three, then upscale's if it has it."""
    return TIMED_APPLICATIONS + (tuple(UPSCALE_SIZES) if "upscale" in signatures else ())


def applications_latency(model_dir: str, calls: int) -> dict:
    """Seconds per call (p50 and max over `calls`, after one untimed call) of the exported
    model's `classify`, `inpaint` (bottom half missing), `denoise` and `upscale` (of the 14x14
    and 7x7 block means, as their labels, if the export has it) at batch APPLICATIONS_BATCH,
    through `tf.saved_model.load`, on the model's own samples; with the settings the export
    recorded (its config.json's `applications` section)."""
    from cvae.applications import corruptions

    served = generate.load(model_dir)
    missing = [name for name in TIMED_APPLICATIONS if name not in served.signatures]
    if missing:
        raise ValueError(f"{served.path}: no {', '.join(missing)} signature(s); export the "
                         f"model with this version of the project")
    n = APPLICATIONS_BATCH
    label = tf.constant(np.arange(n) % 10, tf.int32)
    seed = tf.constant(np.arange(n), tf.int32)
    images = served.signatures["serving_default"](label=label, seed=seed)["images"]
    inputs = {"classify": {"images": images},
              "inpaint": {"images": images, "mask": tf.constant(corruptions.mask("bottom-half", n)),
                          "label": label, "seed": seed},
              "denoise": {"images": images, "label": label}}
    for name, factor in UPSCALE_SIZES.items():
        side = 28 // factor
        blocks = tf.reshape(images, [n, side, factor, side, factor, 1])
        inputs[name] = {"images": tf.reduce_mean(blocks, [2, 4]), "label": label, "seed": seed}
    result = {"model": str(served.path), "batch_size": n, "config": served.config,
              "settings": served.config.get("applications", {}),
              "timed": list(timed_names(served.signatures))}
    for name in result["timed"]:
        signature = served.signatures[name.split()[0]]
        seconds = []
        for _ in range(1 + calls):
            start = time.perf_counter()
            {k: v.numpy() for k, v in signature(**inputs[name]).items()}
            seconds.append(time.perf_counter() - start)
        timed = np.array(seconds[1:])
        result[name] = {"p50_seconds": float(np.percentile(timed, 50)),
                        "max_seconds": float(timed.max()), "calls": calls,
                        "first_call_seconds": seconds[0]}
    return result


def run_applications(settings: Settings) -> dict:
    """`applications_latency` of `settings.model_dir`'s newest version with its target."""
    started = time.perf_counter()
    generate.resolve_version(settings.model_dir)
    results = {"machine": machine(), "settings": dataclasses.asdict(settings)}
    _log(f"timing classify, inpaint, denoise and upscale (if exported) at batch "
         f"{APPLICATIONS_BATCH} ...")
    results["applications"] = applications_latency(settings.model_dir,
                                                   settings.application_calls)
    results["config"] = results["applications"].pop("config")  # the export's, for the header
    checks = [{"what": f"{name} p50 s", "value": results["applications"][name]["p50_seconds"],
               "op": "<=", "threshold": TARGET_APPLICATION_SECONDS}
              for name in ("classify", "inpaint")]
    checks += [{"what": f"{name} p50 s", "value": results["applications"][name]["p50_seconds"],
                "op": "<=", "threshold": TARGET_UPSCALE_SECONDS}
               for name in UPSCALE_SIZES if name in results["applications"]["timed"]]
    for c in checks:
        c["passed"] = compare(c["value"], c["op"], c["threshold"])
    results["targets"] = [{"name": f"applications at batch {APPLICATIONS_BATCH}",
                           "checks": checks, "passed": all(c["passed"] for c in checks)}]
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


def format_applications(results: dict) -> str:
    """The printed table of `run_applications`' results."""
    a = results["applications"]
    rows = [[f"{name}, batch {a['batch_size']}", f"{a[name]['p50_seconds']:.2f}",
             f"{a[name]['max_seconds']:.2f}", f"{a[name]['first_call_seconds']:.2f}"]
            for name in a.get("timed", TIMED_APPLICATIONS)]
    settings = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in sorted(a["settings"].items()))
    return "\n".join([*_header(results), "",
                      *_table(["signature", "p50 s", "max s", "first call s"], rows),
                      f"model: {a['model']} ({settings or 'settings not recorded'})", "",
                      "targets:", *("  " + format_target(t) for t in results["targets"]),
                      f"benchmark took {results['seconds']:.0f} s"])

