"""`pipelines.evaluate`'s report: metrics.json, report.md and the figures, written to a
temporary folder and renamed to --out only when complete (an existing --out is refused)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from cvae.evaluation import evaluate as ev
from cvae.evaluation import figures
from cvae.config import Config
from cvae.serving.contract import ASSETS_EXTRA
from cvae.serving.export import TRAINING_LOGS
from cvae.serving.versions import versions
from cvae.files import require_writable
from cvae.serving.generate import ServedModel, load

# Targets of the shipped model (issues "Measured quality" and "Fidelity"). The reconstruction
# Fréchet target is half of version 7's (`FRECHET_RECONSTRUCTIONS_V7`, measured by this report
# on saved_models/cvae-fast: docs/experiments.md).
FRECHET_RECONSTRUCTIONS_V7 = 137.70
TARGETS = {"accuracy": 0.96, "accuracy_per_class": 0.85, "frechet_vs_tutorial": 0.5,
           "diversity": 0.9, "frechet_samples": 39.0, "frechet_reconstructions_vs_v7": 0.5,
           "frechet_reconstructions": 27.0, "reconstruction_mse": 0.0055,
           "reconstructions_recognised": 0.90, "iwae_bits_per_dim": 3.30,
           # The label steers the decoder (issue "The label steers the decoder").
           "restyle_target": 0.90, "restyle_pair": 0.60, "restyle_still_source": 0.05,
           "restyle_round_trip_vs_reconstruction": 2.0, "prior_codes": 0.90,
           "prior_codes_per_class": 0.75}
# fast: version 7's recipe, the previous shipped model (its own epochs and settings, as
# `Config.fast` gives them); unconditional, tutorial: with the main model's data, epochs, seed.
COMPARISONS = ("fast", "unconditional", "tutorial")
# Training fields that shape a comparison model's weights; the others (where it runs, how the
# steps are compiled, strategy) do not change what it learns.
RECIPE_FIELDS = ("epochs", "seed", "learning_rate", "lr_schedule", "beta", "kl_warmup_steps",
                 "precision")


class ReportError(ValueError):
    """The report cannot be written as asked (an existing --out, a missing comparison...)."""


def comparison_config(main: ServedModel, recipe: str) -> Config:
    """The comparison recipe with the main model's data: `Config.fast` with its own epochs
    and settings, the others with the main model's epochs and seed too."""
    config = Config.from_dict(main.config)
    if recipe == "fast":
        return Config(data=config.data).fast()
    return config.unconditional() if recipe == "unconditional" else config.tutorial()


def comparison_model(main: ServedModel, recipe: str, models_dir: Path, log=print) -> ServedModel:
    """The highest version under <models_dir>/cvae-<recipe>, trained and exported first if
    there is none; refuses one trained with another recipe than `comparison_config` gives
    (epochs, seed, optimisation, precision) or on other data than the main model."""
    wanted = comparison_config(main, recipe)
    base = models_dir / f"cvae-{recipe}"
    if not versions(base):
        from cvae import workflow
        from cvae.training import train

        name = f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        log(f"--compare: no model under {base}; training the {recipe} recipe "
            f"({wanted.train.epochs} epochs) as runs/{name}")
        result = train.train(wanted.replace(name=name, export_dir=str(base)), verbose=0)
        workflow.export_run(result, base)
    model = load(base)
    have = Config.from_dict(model.config)
    wanted = wanted.resolved()
    for field in RECIPE_FIELDS:
        if getattr(have.train, field) != getattr(wanted.train, field):
            raise ReportError(f"{model.path} was trained with {field}="
                              f"{getattr(have.train, field)}, the {recipe} recipe of the main "
                              f"model is {getattr(wanted.train, field)}; move it away to train "
                              f"a matching one")
    if dataclasses.replace(have.data, batch_size=1) != dataclasses.replace(wanted.data,
                                                                          batch_size=1):
        raise ReportError(f"{model.path} was trained on other data ({have.data}) than the main "
                          f"model ({wanted.data}); move it away to train a matching one")
    return model


def _fmt(value, digits=2):
    return "—" if value is None else f"{value:,.{digits}f}"


def _targets(main: dict, others: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) rows."""
    acc = main["conditional_accuracy"]
    worst = min(acc["per_class"].items(), key=lambda kv: kv[1])
    rows = [
        (f"conditional accuracy >= {TARGETS['accuracy']}", f"{acc['overall']:.4f}",
         acc["overall"] >= TARGETS["accuracy"]),
        (f"every class >= {TARGETS['accuracy_per_class']}", f"lowest {worst[0]} {worst[1]:.3f}",
         worst[1] >= TARGETS["accuracy_per_class"]),
        (f"diversity >= {TARGETS['diversity']} of real images' (mean over classes)",
         f"{main['diversity']['ratio_mean']:.3f} (lowest class "
         f"{main['diversity']['ratio_min']:.3f})",
         main["diversity"]["ratio_mean"] >= TARGETS["diversity"]),
        (f"Fréchet distance of samples <= {TARGETS['frechet_samples']}",
         f"{main['frechet']['samples']:.2f}",
         main["frechet"]["samples"] <= TARGETS["frechet_samples"]),
        (f"reconstruction MSE <= {TARGETS['reconstruction_mse']}",
         f"{main['reconstruction']['mse']:.4f}",
         main["reconstruction"]["mse"] <= TARGETS["reconstruction_mse"]),
        (f"classifier recognises reconstructions >= {TARGETS['reconstructions_recognised']}",
         f"{main['reconstruction']['classifier_accuracy']:.4f}",
         main["reconstruction"]["classifier_accuracy"] >= TARGETS["reconstructions_recognised"]),
    ]
    mine = main["frechet"]["reconstructions"]
    rows.append((f"Fréchet distance of reconstructions <= {TARGETS['frechet_reconstructions']}",
                 f"{mine:.2f}", mine <= TARGETS["frechet_reconstructions"]))
    control = main.get("label_control")
    if control:
        rs, prior = control["restyle"], control["prior_codes"]
        worst = rs["worst_pair"]
        ratio = rs["round_trip_mse"] / rs["reconstruction_mse"]
        lowest = min(prior["per_class"].items(), key=lambda kv: kv[1])
        rows += [
            (f"restyle recognised as the target class >= {TARGETS['restyle_target']}",
             f"{rs['target_accuracy']:.4f}", rs["target_accuracy"] >= TARGETS["restyle_target"]),
            (f"every (source, target) pair >= {TARGETS['restyle_pair']}",
             f"lowest {worst['source']} -> {worst['target']} {worst['accuracy']:.2f}",
             worst["accuracy"] >= TARGETS["restyle_pair"]),
            (f"restyle still recognised as the source class <= "
             f"{TARGETS['restyle_still_source']}", f"{rs['still_source']:.4f}",
             rs["still_source"] <= TARGETS["restyle_still_source"]),
            (f"round trip MSE <= {TARGETS['restyle_round_trip_vs_reconstruction']} x "
             f"reconstruct's", f"{rs['round_trip_mse']:.5f} vs {rs['reconstruction_mse']:.5f} "
             f"({ratio:.2f}x)", ratio <= TARGETS["restyle_round_trip_vs_reconstruction"]),
            (f"codes from N(0, I): conditional accuracy >= {TARGETS['prior_codes']}",
             f"{prior['overall']:.4f}", prior["overall"] >= TARGETS["prior_codes"]),
            (f"codes from N(0, I): every class >= {TARGETS['prior_codes_per_class']}",
             f"lowest {lowest[0]} {lowest[1]:.3f}",
             lowest[1] >= TARGETS["prior_codes_per_class"]),
        ]
    if FRECHET_RECONSTRUCTIONS_V7 is not None:
        rows.append((f"Fréchet distance of reconstructions <= "
                     f"{TARGETS['frechet_reconstructions_vs_v7']} x version 7's "
                     f"({FRECHET_RECONSTRUCTIONS_V7:.2f})", f"{mine:.2f}",
                     mine <= TARGETS["frechet_reconstructions_vs_v7"]
                     * FRECHET_RECONSTRUCTIONS_V7))
    # Of the generative model that ships: its fitted prior where the export has one.
    bound = main["test"].get("fitted_prior", main["test"])
    bits = bound.get("iwae_bits_per_dim")
    if bits is not None:
        rows.append((f"test -IWAE <= {TARGETS['iwae_bits_per_dim']} bits/dim"
                     + (" (fitted prior)" if "fitted_prior" in main["test"] else ""),
                     f"{bits:.4f} (k={main['test']['iwae_k']}, {main['test']['images']} "
                     f"images)", bits <= TARGETS["iwae_bits_per_dim"]))
    if "tutorial" in others:
        mine, theirs = main["frechet"]["samples"], others["tutorial"]["frechet"]["samples"]
        rows.append((f"Fréchet distance <= {TARGETS['frechet_vs_tutorial']} x the tutorial "
                     f"recipe's", f"{mine:.2f} vs {theirs:.2f} ({mine / theirs:.3f}x)",
                     mine <= TARGETS["frechet_vs_tutorial"] * theirs))
    for name, other in others.items():
        for key, what in (("gray", "gray levels"), ("binarized", "binarised images")):
            a, b = main["comparable"].get(key), other["comparable"].get(key)
            if a and b:
                rows.append((f"log-likelihood better than {name} ({what})",
                             f"-log p(x) <= {a['neg_log_px_bound']:.2f} vs "
                             f"{b['neg_log_px_bound']:.2f} nats",
                             a["neg_log_px_bound"] < b["neg_log_px_bound"]))
    return rows


def _markdown(main: dict, others: dict, figures_written: list[str], seconds: float) -> str:
    t = main["test"]
    lines = [f"# Evaluation of {main['model']}", "",
             f"Written by `python -m pipelines.evaluate` in {seconds:.0f} s. Classifier: "
             f"{main['classifier']['path']} (test accuracy "
             f"{main['classifier']['test_accuracy']:.4f}).", "",
             "## Likelihood (test set)", "",
             "| | nats/image | bits/dim |", "|---|---|---|",
             f"| negative ELBO | {_fmt(t['neg_elbo'])} | {_fmt(t.get('elbo_bits_per_dim'), 4)} |",
             f"| reconstruction | {_fmt(t['recon'])} | |",
             f"| KL | {_fmt(t['kl'])} | |",
             f"| -IWAE, k={t['iwae_k']} ({t['images']} images) | {_fmt(t['neg_iwae'])} ± "
             f"{_fmt(t['neg_iwae_standard_error'])} | {_fmt(t.get('iwae_bits_per_dim'), 4)} |",
             *([f"| -IWAE, k={t['iwae_k']}, the fitted prior p(z\\|y) generation draws "
                f"from | {_fmt(t['fitted_prior']['neg_iwae'])} ± "
                f"{_fmt(t['fitted_prior']['neg_iwae_standard_error'])} | "
                f"{_fmt(t['fitted_prior'].get('iwae_bits_per_dim'), 4)} |"]
               if "fitted_prior" in t else []),
             "", "## Samples", "",
             f"- conditional accuracy: **{main['conditional_accuracy']['overall']:.4f}** "
             f"({main['conditional_accuracy']['samples_per_class']} samples per class)",
             f"- Fréchet distance (classifier features, {main['frechet']['images']} images): "
             f"**{main['frechet']['samples']:.2f}**; held-out real images: "
             f"{main['frechet']['held_out_real']:.2f}; reconstructions of test images: "
             f"{main['frechet']['reconstructions']:.2f}",
             f"- diversity (mean pairwise feature distance, samples / real): "
             f"**{main['diversity']['ratio_mean']:.3f}** mean, "
             f"{main['diversity']['ratio_min']:.3f} lowest class",
             f"- reconstruction error of test images: MSE {main['reconstruction']['mse']:.4f}, "
             f"MAE {main['reconstruction']['mae']:.4f}; the classifier recognises "
             f"{main['reconstruction']['classifier_accuracy']:.4f} of them", "",
             "| class | accuracy | diversity |", "|---|---|---|"]
    for name, acc in main["conditional_accuracy"]["per_class"].items():
        lines.append(f"| {name} | {acc:.3f} | {main['diversity']['ratio_per_class'][name]:.3f} |")
    control = main.get("label_control")
    if control:
        rs, prior = control["restyle"], control["prior_codes"]
        names = list(main["conditional_accuracy"]["per_class"])
        lines += ["", "## The label steers the decoder", "",
                  f"`restyle` of the first {rs['images'] // len(names)} test images of each class "
                  f"to each of the nine other classes, judged by the classifier: recognised as the "
                  f"target **{rs['target_accuracy']:.4f}**, still as the source "
                  f"{rs['still_source']:.4f}; the round trip (to the target and back) "
                  f"MSE {rs['round_trip_mse']:.5f} against reconstruct's "
                  f"{rs['reconstruction_mse']:.5f} on the same images. Codes drawn from N(0, I) "
                  f"and decoded under each label ({prior['samples_per_class']} a class): "
                  f"recognised as the label **{prior['overall']:.4f}**.", "",
                  "| source \\ target | " + " | ".join(names) + " | N(0, I) codes |",
                  "|---" * (len(names) + 2) + "|"]
        for s in names:
            row = [("—" if t == s else f"{rs['pairs'][s][t]:.2f}") for t in names]
            lines.append(f"| {s} | " + " | ".join(row) + f" | {prior['per_class'][s]:.3f} |")
    if others:
        k = main["comparable"]["k"]
        lines += ["", "## Comparison", "",
                  f"Same data and epochs; log-likelihoods are k={k} IWAE bounds on the whole test "
                  f"set, as -log p(x) in nats per image (for the conditional model "
                  f"-log p(x|y) + log 10, an upper bound on -log p(x)). \"binarised\" scores "
                  f"the test images thresholded at 0.5 under every model."
                  + (f" This model's bound on its own representation is that of the first {k} "
                     f"of its IWAE pass's {main['test']['iwae_k']} samples per image."
                     if main["test"].get("first_k", {}).get("k") == k else ""), "",
                  "| model | cond. accuracy | Fréchet | Fréchet, recon. | diversity | "
                  "-log p(x), gray | -log p(x), binarised | recon. MSE | epochs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in {"this model": main, **others}.items():
            gray = r["comparable"].get("gray")
            binary = r["comparable"].get("binarized")
            accuracy = (f"{r['conditional_accuracy']['overall']:.4f}" if r["conditional"]
                        else "—")
            lines.append(
                f"| {name} | {accuracy} | {r['frechet']['samples']:.2f} | "
                f"{_fmt(r['frechet'].get('reconstructions'))} | "
                f"{r['diversity']['ratio_mean']:.3f} | "
                f"{_fmt(gray and gray['neg_log_px_bound'])} | "
                f"{_fmt(binary and binary['neg_log_px_bound'])} | "
                f"{r['reconstruction']['mse']:.4f} | {r['epochs']} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in _targets(main, others):
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures_written]
    return "\n".join(lines) + "\n"


def _comparable(model: ServedModel, splits, k: int, seed: int, images: int | None, log,
                evaluated: dict | None = None) -> dict:
    """The k-sample bounds of `cvae.evaluation.evaluate.comparable_bound`, on gray levels (models of gray
    levels) and on binarised images. `evaluated`, the model's `cvae.evaluation.evaluate.evaluate` results,
    is reused where it already holds the same bound on the model's own representation (which
    is the binarised one for statically binarised models): its IWAE at the same k, or the
    bound of the first k of its IWAE's samples (`Settings.first_k`)."""
    config = model.config["model"]
    gray = config["likelihood"] == "discretized_logistic"
    static = config["likelihood"] == "bernoulli" and config.get("binarization") == "static"
    out = {"k": k}
    t = evaluated["test"] if evaluated is not None else {}
    same = (t if t.get("iwae_k") == k else
            t["first_k"] if t.get("first_k", {}).get("k") == k else None)
    if same is not None and (gray or static):
        out["gray" if gray else "binarized"] = ev.bound_summary(
            model, k, t["images"], same["neg_iwae"], same["neg_iwae_standard_error"], 0.0)
    if "binarized" not in out:
        out["binarized"] = ev.comparable_bound(model, splits, k, True, seed, images)
    if gray and "gray" not in out:
        out["gray"] = ev.comparable_bound(model, splits, k, False, seed, images)
    log(f"  {model.path}: k={k} -log p(x) bounds: " + ", ".join(
        f"{key} {v['neg_log_px_bound']:.2f}" for key, v in out.items() if key != "k"))
    return out


def write_report(model_dir: str, version: int | None, out: str, settings: ev.Settings,
                 classifier_dir: str, data_config, compare: bool | list[str] | None = None,
                 compare_k: int = 100, models_dir: str = "saved_models",
                 manifold_model: str | None = None, log=print,
                 application_settings=None) -> Path:
    """Evaluates the model (and the comparison models `compare` names, every one of
    `COMPARISONS` for True or an empty list), writes the report
    folder `out` and returns it. `application_settings`: `cvae.evaluation.applications.Settings`
    of the applications' sections (the defaults if None; skipped for an export without them)."""
    from cvae.evaluation import classifier
    from cvae import data
    from cvae.evaluation import applications as apps
    from cvae.evaluation import application_figures as app_figures

    started = time.perf_counter()
    recipes = (COMPARISONS if compare is True or compare == [] else
               tuple(compare) if compare else ())
    unknown = sorted(set(recipes) - set(COMPARISONS))
    if unknown:
        raise ReportError(f"--compare {' '.join(unknown)}: no such recipe; the comparisons are "
                          f"{', '.join(COMPARISONS)}")
    compare = bool(recipes)
    out_dir = Path(out)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ReportError(f"--out {out_dir} already exists; give a new folder (nothing was "
                          f"written)")
    require_writable(out_dir.parent, "the report")
    main = load(model_dir, version)
    manifold_path = Path(manifold_model) if manifold_model else None
    if manifold_path is not None and not manifold_path.exists():
        raise ReportError(f"--manifold-model {manifold_path}: no such model")
    classify, classifier_metrics, classifier_path = classifier.load(classifier_dir)
    splits = data.load_splits(data_config)
    gray_test = data.unit_images(splits.test[0])
    test_labels = splits.test[1].astype(np.int32)

    log(f"evaluating {main.path}")
    real = ev.real_features(splits, classify)  # the same for every model evaluated here
    if compare and compare_k <= settings.iwae_k:  # --compare's bound from the same samples
        settings = dataclasses.replace(settings, first_k=compare_k)
    results, arrays = ev.evaluate(main, splits, classify, settings, log, real)
    results["epochs"] = main.config["train"]["epochs"]
    results["classifier"] = {"path": str(classifier_path),
                             "test_accuracy": classifier_metrics["test_accuracy"]}
    app_results = app_arrays = None
    if apps.available(main):
        app_results, app_arrays = apps.evaluate(main, classify, splits,
                                                application_settings or apps.Settings(), log)
        results["applications"] = app_results
    else:
        log(f"no application sections: {main.path} has no {', '.join(apps.SIGNATURES)} "
            f"signatures (exported before them)")
    others, other_models = {}, {}
    if compare:
        comparison_settings = dataclasses.replace(settings, iwae_k=compare_k, first_k=None)
        results["comparable"] = _comparable(main, splits, compare_k, settings.seed,
                                            settings.iwae_images, log, results)
        for recipe in recipes:
            model = comparison_model(main, recipe, Path(models_dir), log)
            log(f"evaluating {model.path} (--compare, k={compare_k})")
            other, other_arrays = ev.evaluate(model, splits, classify, comparison_settings, log,
                                              real)
            other["epochs"] = model.config["train"]["epochs"]
            other["comparable"] = _comparable(model, splits, compare_k, settings.seed,
                                              settings.iwae_images, log, other)
            others[recipe], other_models[recipe] = other, (model, other_arrays)

    pictures = {
        "class_grid.png": lambda: figures.class_grid(main),
        "reconstructions.png": lambda: figures.reconstructions(main, gray_test, test_labels),
        "interpolation.png": lambda: figures.interpolations(main, gray_test, test_labels),
        "restyle.png": lambda: figures.restyle(main, gray_test, test_labels),
        "confusion.png": lambda: figures.confusion(
            arrays["confusion"], main.class_names,
            "conditional samples: label asked for vs the classifier's verdict"),
    }
    if app_results is not None:
        pictures.update({
            "inpainting.png": lambda: app_figures.inpainting(app_arrays["inpainting"]),
            "denoising.png": lambda: app_figures.denoising(app_arrays["denoising"]),
            "classify_confusion.png": lambda: figures.confusion(
                app_arrays["classification"]["confusion"], main.class_names,
                "classify: true class vs Bayes' rule's verdict (test images)"),
            "reliability.png": lambda: app_figures.reliability(app_arrays["classification"]),
            "scores.png": lambda: app_figures.score_histograms(app_arrays["scores"]),
        })
        if "upscaling" in app_arrays:  # exports with the upscale signature
            pictures["upscaling.png"] = lambda: app_figures.upscaling(app_arrays["upscaling"])
    logs = main.path / ASSETS_EXTRA / TRAINING_LOGS
    if logs.is_dir():
        pictures["training_curves.png"] = lambda: figures.training_curves(logs)
    else:
        log(f"no training curves: {logs} is missing (the version was exported without its "
            f"TensorBoard logs)")
    # The 2-D latent figures: --manifold-model, or else the tutorial recipe's (latent 2).
    manifold_model = (load(manifold_path) if manifold_path is not None
                      else other_models["tutorial"][0] if "tutorial" in other_models else None)
    if manifold_model is not None:
        pictures["manifold.png"] = lambda: figures.manifold(manifold_model)
        pictures["latent_scatter.png"] = lambda: figures.latent_scatter(
            manifold_model, ev.model_images(manifold_model, gray_test, settings.seed),
            test_labels)
    else:
        log("no manifold figures: give --manifold-model (a latent_dim=2 model) or --compare")
    if "tutorial" in other_models:
        model = other_models["tutorial"][0]
        pictures["samples_tutorial.png"] = lambda: figures.image_table(
            other_models["tutorial"][1]["samples"][:100], 10, 10,
            title=f"100 samples of {model.path} (unconditional)")

    tmp = out_dir.parent / f".tmp-report-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for name, make in pictures.items():
            (tmp / name).write_bytes(make())
        results["seconds"] = round(time.perf_counter() - started, 1)
        rows = _targets(results, others) + (apps.targets(app_results) if app_results else [])
        everything = {"model": results, "comparisons": others,
                      "targets": [{"target": t, "measured": v, "met": ok} for t, v, ok in rows],
                      "figures": list(pictures)}
        (tmp / "metrics.json").write_text(json.dumps(everything, indent=2))
        text = _markdown(results, others, list(pictures), results["seconds"])
        if app_results is not None:  # its own section, before the figures
            text = text.replace("\n## Figures\n",
                                "\n" + "\n".join(apps.markdown(app_results)) + "\n## Figures\n", 1)
        (tmp / "report.md").write_text(text)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked above
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"wrote {out_dir}/ (report.md, metrics.json, {len(pictures)} figures) in "
        f"{results['seconds']:.0f} s")
    return out_dir
