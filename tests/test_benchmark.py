"""`python -m pipelines.benchmark`: the report's figures and targets, the baseline's pipeline and
loop, and argument errors. Speed itself is judged by the benchmark's printed targets, not here."""

import json
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_python
from cvae.evaluation.benchmarks import common, training
from cvae.config import Config, resolve_precision
from cvae.training.train import compiled_model


def _figures(results: dict) -> dict[str, float]:
    """Every figure the report promises, by a readable path."""
    t, b, p = results["training"], results["baseline"], results["input_pipeline"]
    g, q = results["generation"], results["time_to_quality"]
    return {
        "training images/s": t["images_per_second"], "training step ms": t["step_ms"],
        "training peak RSS": t["peak_rss_mib"],
        "baseline images/s": b["images_per_second"], "baseline step ms": b["step_ms"],
        "baseline peak RSS": b["peak_rss_mib"],
        "pipeline images/s": p["images_per_second"],
        "baseline pipeline images/s": p["baseline"]["images_per_second"],
        "batch 1 p50": g["batch_1"]["p50_ms"], "batch 1 p99": g["batch_1"]["p99_ms"],
        "batch 64 p50": g["batch_64"]["p50_ms"], "batch 64 p99": g["batch_64"]["p99_ms"],
        "batch 1000 images/s": g["batch_1000"]["images_per_second"],
        "baseline export's batch 1000 images/s":
            results["generation_baseline"]["batch_1000"]["images_per_second"],
        "baseline seconds": q["baseline"]["seconds"], "default seconds": q["default"]["seconds"],
        "baseline neg_elbo": q["baseline"]["neg_elbo"], "default neg_elbo": q["default"]["neg_elbo"],
        "target neg_elbo": q["target_neg_elbo"], "time ratio": q["ratio"],
        "throughput speed-up": results["speedups"]["training_images_per_second"],
        "time speed-up": results["speedups"]["time_to_quality"],
        "total seconds": results["seconds"],
    }


def _printed_close(text: str, value: float) -> bool:
    """Whether `text` (as printed) is `value` rounded to the digits shown."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12


def test_quick_run_reports_every_figure_and_targets_that_match_them(tmp_path):
    out = tmp_path / "report.json"
    result = run_python("-m", "pipelines.benchmark", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left
    results = json.loads(out.read_text())

    machine = results["machine"]
    assert machine["tensorflow"] == tf.__version__ and machine["cores"] >= 1 and machine["cpu"]
    quick = common.quick_config()  # precision "auto", recorded as it resolved here
    assert Config.from_dict(results["config"]) == quick.replace(
        precision=resolve_precision(quick.train.precision))
    for name, value in _figures(results).items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)

    # The figures agree with each other.
    t, b, q = results["training"], results["baseline"], results["time_to_quality"]
    assert t["batch_size"] == 64 and b["batch_size"] == training.BASELINE_BATCH_SIZE
    for part in (t, b):
        assert part["images_per_second"] == pytest.approx(part["images"] / part["seconds"])
        assert part["step_ms"] == pytest.approx(1000 * part["seconds"] / part["steps"])
    assert q["ratio"] == pytest.approx(q["default"]["seconds"] / q["baseline"]["seconds"])
    assert results["speedups"]["time_to_quality"] == pytest.approx(1 / q["ratio"])
    assert results["speedups"]["training_images_per_second"] == pytest.approx(
        t["images_per_second"] / b["images_per_second"])
    assert len(q["baseline"]["validation_curve"]) == q["baseline"]["epochs"] == 1
    assert q["target_neg_elbo"] == q["baseline"]["validation_curve"][-1]
    curve = q["default"]["validation_curve"]
    # --quick's max_epochs is 2, but the cosine schedule of its 1-epoch config ends after one.
    assert quick.train.lr_schedule == "cosine" and quick.train.epochs == 1
    assert len(curve) == q["default"]["epochs"] <= q["default"]["max_epochs"] == 1
    assert q["default"]["reached"] == (curve[-1] <= q["target_neg_elbo"])
    assert all(v > q["target_neg_elbo"] for v in curve[:-1])  # it stopped at the first epoch there
    assert q["train_images"] == 256 and q["validation_images"] == 51

    # The targets: recomputed from the figures, and printed with the same values and verdicts.
    expected = [
        [(q["ratio"], "<=", 0.5)],
        [(results["input_pipeline"]["images_per_second"] / t["images_per_second"], ">=", 10)],
        [(results["generation"]["batch_1"]["p50_ms"], "<", 20),
         (results["generation"]["batch_1000"]["images_per_second"], ">=", 2_000),
         (results["generation"]["batch_1000"]["images_per_second"]
          / results["generation_baseline"]["batch_1000"]["images_per_second"], ">=", 1.0)],
    ]
    # Generation is compared, in the same run, with version 10's export.
    assert results["generation_baseline"]["model"].endswith("saved_models/cvae/10")
    assert results["generation"]["model"] != results["generation_baseline"]["model"]
    printed = [line.strip() for line in result.stdout.splitlines()
               if line.strip().startswith(("PASS ", "FAIL "))]
    assert len(results["targets"]) == len(printed) == 3
    for target, checks, line in zip(results["targets"], expected, printed):
        verdicts = [common.compare(v, op, threshold) for v, op, threshold in checks]
        assert [c["value"] for c in target["checks"]] == pytest.approx([c[0] for c in checks])
        assert [c["passed"] for c in target["checks"]] == verdicts
        passed = all(verdicts) and (target is not results["targets"][0] or q["default"]["reached"])
        assert target["passed"] == passed
        assert line.startswith("PASS" if passed else "FAIL"), line
        shown = re.findall(r" (\d+(?:\.\d+)?) (<=|>=|<) (\d+(?:\.\d+)?)", line)
        assert len(shown) == len(checks), line
        for (value, op, threshold), (v, o, th) in zip(shown, checks):
            assert op == o and float(threshold) == th and _printed_close(value, v), (line, v)

    # The table shows the JSON's throughputs.
    for label, figure in (("training: fit", t), ("baseline: tutorial", b),
                          ("input pipeline", results["input_pipeline"]),
                          ("baseline's pipeline", results["input_pipeline"]["baseline"]),
                          ("baseline export's generation",
                           results["generation_baseline"]["batch_1000"])):
        row = next(line for line in result.stdout.splitlines() if line.startswith(label))
        assert f" {figure['images_per_second']:.0f} " in row + " ", row
    assert f"wrote {out}" in result.stdout


def test_variants_measure_each_config_in_its_own_process_and_report_failures(tmp_path):
    out = tmp_path / "variants.json"
    result = run_python("-m", "pipelines.benchmark", "--quick", "--variants",
                        "batch_size=32,steps_per_execution=2", "batch_size=1000",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["variants"]
    assert [r["name"] for r in rows] == ["reference", "batch_size=32, steps_per_execution=2",
                                         "batch_size=1000"]
    reference, variant, broken = rows
    assert (reference["batch_size"], variant["batch_size"]) == (64, 32)
    assert variant["steps_per_execution"] == 2 and variant["steps"] % 2 == 0
    for row in (reference, variant):
        for key in ("images_per_second", "step_ms", "peak_rss_mib", "vs_reference"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key)
    assert reference["vs_reference"] == 1.0
    assert variant["vs_reference"] == pytest.approx(
        variant["images_per_second"] / reference["images_per_second"])
    assert "batch_size=1000 is larger than the 512 training images" in broken["error"]
    table = result.stdout.splitlines()
    assert any(line.startswith("batch_size=32, steps_per_execution=2 ")
               and f" {variant['images_per_second']:.0f} " in line for line in table)
    assert any(line.startswith("batch_size=1000 ") and "failed" in line for line in table)


def _chain(dataset: tf.data.Dataset) -> tuple[list, dict]:
    """The dataset's ops from the output back to the source (graph nodes), and every node."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = {n.name: n for n in graph.node}
    node = nodes[next(n for n in graph.node if n.op == "_Retval").input[0]]
    chain = []
    while True:
        chain.append(node)
        inputs = [nodes[i] for i in node.input if nodes[i].op.endswith(
            ("Dataset", "DatasetV2", "DatasetV3"))]
        if not inputs:
            return chain, nodes
        node = inputs[0]


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "bernoulli"])
def test_baseline_dataset_is_a_per_example_map_then_batches_of_32_without_prefetch(likelihood):
    images = np.arange(100, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    labels = (np.arange(100) % 10).astype(np.uint8)
    dataset = training.baseline_dataset(images, labels, likelihood, seed=0)

    chain, nodes = _chain(dataset)
    assert [n.op for n in chain] == ["OptionsDataset", "BatchDatasetV2", "MapDataset",
                                     "ShuffleDatasetV3", "TensorSliceDataset"]
    batch, shuffle = chain[1], chain[3]
    batch_size, drop_remainder = (tf.make_ndarray(nodes[i].attr["value"].tensor)
                                  for i in batch.input[1:3])
    assert batch_size == 32 and not drop_remainder
    assert tf.make_ndarray(nodes[shuffle.input[1]].attr["value"].tensor) == 100  # full buffer
    # The map sees one example: the shuffle's elements are a [28, 28] image and a scalar label.
    shapes = [[d.size for d in s.dim] for s in shuffle.attr["output_shapes"].list.shape]
    assert shapes == [[28, 28], []]
    optimisation = dataset.options().experimental_optimization
    assert optimisation.inject_prefetch is False and optimisation.map_parallelization is False
    assert optimisation.map_and_batch_fusion is False
    assert optimisation.apply_default_optimizations is False

    batches = list(dataset)
    assert [len(y) for x, y in batches] == [32, 32, 32, 4]
    x = np.concatenate([x.numpy() for x, _ in batches])
    y = np.concatenate([y.numpy() for _, y in batches])
    assert x.shape == (100, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    if likelihood == "bernoulli":
        assert set(np.unique(x)) <= {0.0, 1.0} and 0 < x.mean() < 1
    else:
        ids = np.round(x[:, 0, 0, 0] * 255).astype(int)
        assert sorted(ids) == list(range(100)) and list(ids) != list(range(100))  # shuffled
        np.testing.assert_allclose(x, ids[:, None, None, None] / 255.0 * np.ones_like(x))
        np.testing.assert_array_equal(y, ids % 10)


def test_baseline_trains_the_same_model_drawing_its_own_noise():
    config = common.quick_config()
    keras.utils.set_random_seed(config.train.seed)
    default = compiled_model(config, steps_per_epoch=None)
    baseline = training.Baseline(config)
    for a, b in zip(default.get_weights(), baseline.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same architecture and initialisation
    x = tf.random.stateless_uniform([32, 28, 28, 1], seed=[1, 2])
    labels = tf.range(32) % 10
    state = baseline.model.seed_generator.state.numpy()
    before = [v.numpy() for v in baseline.model.trainable_variables]
    terms = baseline.train_step(x, labels)
    assert int(baseline.optimizer.iterations) == 1
    assert terms["loss"].numpy() == pytest.approx(
        terms["recon"].numpy() + config.train.beta * terms["kl"].numpy(), rel=1e-6)
    assert any((a != b.numpy()).any() for a, b in zip(before, baseline.model.trainable_variables))
    # eps came from the model's own seed generator, which moved on
    assert (state != baseline.model.seed_generator.state.numpy()).any()
    # The tutorial's float32 loop: Keras' own Adam, a constant rate, the loss in a plain graph.
    assert type(baseline.optimizer) is keras.optimizers.Adam and not baseline.model.xla_loss
    assert baseline.model.decoder.out.compute_dtype == "float32"
    assert baseline.model.encoder.down1.compute_dtype == "float32"


@pytest.mark.parametrize("changes", [{}, {"learning_rate": 3e-3, "lr_schedule": "constant"},
                                     {"batch_size": 512}])
def test_baseline_rate_is_fixed_whatever_the_default_trains_with(changes):
    # One target for every variant of the default that the race compares.
    config = Config().replace(**changes)
    assert float(training.Baseline(config).optimizer.learning_rate) == pytest.approx(1e-3)


@pytest.mark.parametrize("flags,message", [
    (["--train-images", "0"], "--train-images must be >= 1, got 0"),
    (["--latency-calls", "-3"], "--latency-calls must be >= 1, got -3"),
    (["--quick", "--model", "MISSING"], "MISSING: no such model directory"),
    (["--quick", "--train-images", "10000"],
     "--train-images 10000 is more than the 512 training images"),
    (["--quick", "--train-images", "40"], "--train-images 40 is fewer than one batch (64 images)"),
    (["--quick", "--variants", "batch_size=abc"], "--variants: bad value in 'batch_size=abc'"),
    (["--quick", "--variants", "speed=11"], "--variants: 'speed=11' is not FIELD=VALUE"),
    (["--quick", "--batch-size", "0"], "config: batch_size=0 must be >= 1"),
    (["--quick", "--strategy", "mirrored"], "--strategy mirrored: the benchmark measures one"),
])
def test_bad_arguments_exit_2_with_a_message_and_write_no_report(tmp_path, flags, message):
    out = tmp_path / "reports" / "benchmark.json"
    flags = [str(tmp_path / "missing") if f == "MISSING" else f for f in flags]
    message = message.replace("MISSING", str(tmp_path / "missing"))
    result = run_python("-m", "pipelines.benchmark", *flags, "--out", str(out))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {message}" in result.stderr, result.stderr[-2000:]
    assert not out.parent.exists()
