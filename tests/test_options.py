"""The options `pipelines.generate`, `pipelines.client` and the demo page share (`cvae.options`):
one behaviour each, refused before TensorFlow loads. Test names `test_defect_N_...` are the
defects of the project's issue 28."""

import subprocess
import sys

import pytest

from cvae import options
from conftest import REPO, SHIPPED, run_python

COMMANDS = ["benchmark", "classify", "client", "demo", "evaluate", "export", "generate", "train",
            "train_classifier"]


def _without_tensorflow(module: str, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    """`python -m pipelines.MODULE ARGS` in a fresh process that prints, last, whether
    TensorFlow was imported when it exited."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['{module}.py', *sys.argv[1:]]\n"
            "try:\n"
            f"    runpy.run_module('pipelines.{module}', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    status = e.code\n"
            "print('tensorflow' in sys.modules, status)\n")
    return run_python("-c", code, *args, cwd=cwd)


# ------------------------------------------------------------------------ 4: the mask names


def test_defect_4_every_command_and_the_page_take_the_same_mask_names(tmp_path):
    from cvae import demo
    from cvae.applications import corruptions
    from cvae.serving import applications as served

    assert demo.INPAINT_MASKS == options.MASK_NAMES == corruptions.MASKS[:5]
    for name in options.MASK_NAMES:
        assert served.read_mask(name).shape == (28, 28, 1)
        assert f"`{name}`" in (REPO / "docs" / "demo.md").read_text()
    garment = REPO / "docs" / "examples" / "dress.png"
    for module in ("generate", "client"):
        help_text = run_python("-m", f"pipelines.{module}", "--help").stdout
        assert ", ".join(options.MASK_NAMES) in " ".join(help_text.split())
        server = ["--url", "http://localhost:1"] if module == "client" else []
        for name in ("top-half", "left-half"):  # accepted: on to the label, which is refused
            args = server + ["--inpaint", str(garment), "--mask", name, "--label", "Dresses",
                             "--out", str(tmp_path / "o.png")]
            result = _without_tensorflow(module, *args)
            assert result.stdout.strip() == "False 2"
            assert "unknown class 'Dresses'" in result.stderr and "--mask" not in result.stderr
        unknown = _without_tensorflow(module, *server, "--inpaint", str(garment), "--mask",
                                      "top-halves", "--label", "Dress", "--out",
                                      str(tmp_path / "o.png"))
        assert unknown.stdout.strip() == "False 2"
        assert ("--mask top-halves: not a mask name: choose one of bottom-half, top-half, "
                "right-half, left-half, centre, or a 28x28 mask PNG") in unknown.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------- 5: outputs and seeds, alike


@pytest.mark.parametrize("module", ["generate", "client"])
@pytest.mark.parametrize("args,message", [
    (["--label", "Bag", "--out", "x.png", "--npy", "x.txt"],
     "--npy must name a .npy file, got x.txt"),
    (["--label", "Bag", "--out", "x.jpg"], "--out must name a .png file, got x.jpg"),
    (["--label", "Bag", "--seed", "99999999999", "--out", "x.png"],
     "--seed must be <= 2147483647 (an int32 of the signatures), got 99999999999"),
    (["--label", "Bag", "--seed", "-1", "--out", "x.png"], "--seed must be >= 0, got -1"),
    (["--denoise", "docs/examples/noisy-dress.png", "--label", "Dress", "--seed", "3", "--out",
      "x.png"], "--denoise cleans one image and draws nothing at random; it takes no --seed"),
    (["--denoise", "docs/examples/noisy-dress.png", "--label", "Dress", "--num", "2", "--out",
      "x.png"], "--denoise cleans one image and draws nothing at random; it takes no --num"),
], ids=["npy-txt", "out-jpg", "seed-over-int32", "seed-negative", "denoise-seed", "denoise-num"])
def test_defect_5_generate_and_the_client_refuse_alike(tmp_path, module, args, message):
    server = ["--url", "http://localhost:1"] if module == "client" else []
    result = _without_tensorflow(module, *server, *args, cwd=tmp_path)
    assert result.stdout.strip() == "False 2" and f"{module}.py: error: {message}" in \
        result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_defect_5_restyle_takes_no_seed_and_the_page_has_the_same_bound(tmp_path):
    from cvae import demo

    result = _without_tensorflow("generate", "--restyle", "docs/examples/shirt.png", "--from",
                                 "Shirt", "--to", "Dress", "--seed", "1", "--out",
                                 str(tmp_path / "x.png"))
    assert "--restyle redraws one image and draws nothing at random; it takes no --seed" in \
        result.stderr
    assert demo.MAX_SEED == options.MAX_SEED == 2**31 - 1
    assert options.seed_problem(options.MAX_SEED) is None
    assert options.seed_problem(options.MAX_SEED + 1) is not None


def test_defect_5_the_success_line_names_every_file(tmp_path):
    out, npy = tmp_path / "bag.png", tmp_path / "bag.npy"
    result = run_python("-m", "pipelines.generate", "--model", str(SHIPPED), "--label", "Bag",
                        "--num", "2", "--out", str(out), "--npy", str(npy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {out} and {npy}: 2 x Bag (seed 0), model ")
    assert out.is_file() and npy.is_file()


# ------------------------------------------------------------------------------ 6: --help


@pytest.mark.parametrize("command", COMMANDS)
def test_defect_6_help_describes_the_command_in_whole_sentences(command):
    import importlib

    result = run_python("-m", f"pipelines.{command}", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    doc = importlib.import_module(f"pipelines.{command}").__doc__
    first = " ".join(doc.split("\n\n")[0].split())
    assert first.endswith(".") and first in " ".join(result.stdout.split())


def test_defect_6_demo_help_names_every_tab():
    from cvae import demo

    text = " ".join(run_python("-m", "pipelines.demo", "--help").stdout.split()).lower()
    for app in demo.APPLICATIONS:
        assert app.title.lower().removesuffix("ing") in text, app.title


# ------------------------------------------------- 7: usage errors before TensorFlow loads


@pytest.mark.parametrize("module,args,message", [
    ("generate", ["--label", "Sneakers", "--out", "x.png"], "error: unknown class 'Sneakers'"),
    ("generate", ["--restyle", "docs/examples/shirt.png", "--from", "Shirts", "--to", "Dress",
                  "--out", "x.png"], "error: unknown class 'Shirts'"),
    ("generate", ["--model", "nowhere", "--label", "Bag", "--out", "x.png"],
     "error: nowhere: no such model directory"),
    ("generate", ["--model", "MODEL", "--version", "7", "--label", "Bag", "--out", "x.png"],
     "/7: no SavedModel there (versions present: ["),
    ("generate", ["--restyle", "gone.png", "--from", "Shirt", "--to", "Dress", "--out", "x.png"],
     "error: gone.png: cannot read (No such file or directory)"),
    ("generate", ["--inpaint", "docs/examples/dress.png", "--mask", "gone.png", "--label",
                  "Dress", "--out", "x.png"], "--mask gone.png: no such file"),
    ("classify", ["gone.png"], "error: gone.png: cannot read (No such file or directory)"),
    ("classify", ["docs/examples/dress.png", "--model", "nowhere"],
     "error: nowhere: no such model directory"),
    ("client", ["--url", "http://localhost:1", "--label", "Sneakers", "--out", "x.png"],
     "error: unknown class 'Sneakers'"),
    ("client", ["--url", "http://localhost:1", "--classify", "gone.png"],
     "error: gone.png: cannot read (No such file or directory)"),
    ("evaluate", ["--iwae-k", "0", "--out", "r"], "--iwae-k must be >= 1, got 0"),
    ("evaluate", ["--frechet-images", "1", "--out", "r"], "--frechet-images must be >= 2, got 1"),
    ("evaluate", ["--model", "nowhere", "--out", "r"], "error: nowhere: no such model directory"),
    ("demo", ["--model", "nowhere", "--port", "47913"], "error: nowhere: no such model directory"),
], ids=["label", "restyle-from", "model-dir", "version", "restyle-file", "mask-file",
        "classify-file", "classify-model", "client-label", "client-classify-file",
        "evaluate-iwae-k-0", "evaluate-frechet-1", "evaluate-model", "demo-model"])
def test_defect_7_usage_errors_come_before_tensorflow(tmp_path, module, args, message):
    """Argument errors that need no model are refused with TensorFlow not imported, and leave
    no file."""
    if module == "demo":
        pytest.importorskip("gradio")
    args = [str(SHIPPED.parent) if a == "MODEL" else a for a in args]
    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "examples").symlink_to(REPO / "docs" / "examples")
    # A label is checked against the model's own classes.json, read without TensorFlow.
    (work / "saved_models").symlink_to(REPO / "saved_models")
    result = _without_tensorflow(module, *args, cwd=work)
    assert result.stdout.strip().splitlines()[-1] == "False 2", (result.stdout, result.stderr)
    assert message in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["docs", "saved_models"]


def test_input_file_and_output_rules():
    assert options.output_problem("--out", "a.PNG") is None
    assert options.output_problem("--npy", "a.npy") is None
    assert options.output_problem("--npy", "a.png") == "--npy must name a .npy file, got a.png"
    assert options.mask_problem("centre") is None
    assert options.mask_problem(str(REPO / "docs" / "examples" / "sides-mask.png")) is None
    with pytest.raises(OSError, match=r"^nowhere\.png: cannot read \(No such file"):
        options.check_input_file("nowhere.png")
    with pytest.raises(options.ModelNotFoundError, match="no such model directory"):
        options.resolve_version(REPO / "nowhere")
    assert options.resolve_version(SHIPPED.parent, int(SHIPPED.name)) == SHIPPED
    assert "tensorflow" not in subprocess.run(
        [sys.executable, "-c", "import sys, cvae.options, cvae.cli; print(sorted(sys.modules))"],
        cwd=REPO, capture_output=True, text=True).stdout


def test_the_demo_inpaints_as_generate_does(tmp_path):
    """The In-painting tab's picture is the PNG `pipelines.generate --inpaint --num 3` writes
    for the same seed: the same request seeds, mask names and grid (docs/demo.md)."""
    from cvae import demo
    from cvae.serving import generate

    garment = REPO / "docs" / "examples" / "dress.png"
    out = tmp_path / "completed.png"
    result = run_python("-m", "pipelines.generate", "--model", str(SHIPPED), "--inpaint",
                        str(garment), "--mask", "left-half", "--label", "Dress", "--num", "3",
                        "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    png, caption = demo.inpaint_png(generate.load(SHIPPED), garment.read_bytes(), "dress.png",
                                    "Dress", "left-half", 5)
    assert png == out.read_bytes() and caption.endswith("as Dress (seed 5)")
