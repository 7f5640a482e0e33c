"""The rules of the options that `pipelines.generate`, `pipelines.client` and the demo page share,
written once: the mask names, the seed bounds, the output files' extensions, the input files and
the model's base path. Standard library only, so that every one of them is checked before
TensorFlow loads (a usage error takes a tenth of a second, not the five of an import).
"""

from __future__ import annotations

import os
from pathlib import Path

# The masks a name gives (`--mask`, the demo's In-painting tab): what each leaves missing.
# `cvae.applications.corruptions` draws them; a 28x28 mask PNG may be given instead.
MASK_NAMES = ("bottom-half", "top-half", "right-half", "left-half", "centre")
# A request's seed is an int32 of the signatures (`serving_default`, `inpaint`); a user's seed
# is turned into request seeds by `cvae.batches.seeds_for`, so it has the same bounds.
MAX_SEED = 2**31 - 1
# What each output option writes, by the extension its file must have.
OUTPUT_SUFFIXES = {"--out": ".png", "--npy": ".npy"}


class ModelNotFoundError(FileNotFoundError):
    """No usable SavedModel version at the given path."""


def seed_problem(seed: int, flag: str = "--seed") -> str | None:
    """What is wrong with a user's seed (outside 0..MAX_SEED), or None."""
    if seed < 0:
        return f"{flag} must be >= 0, got {seed}"
    if seed > MAX_SEED:
        return f"{flag} must be <= {MAX_SEED} (an int32 of the signatures), got {seed}"
    return None


def output_problem(flag: str, path: str) -> str | None:
    """What is wrong with the file an output option names (its extension), or None."""
    suffix = OUTPUT_SUFFIXES[flag]
    if not path.lower().endswith(suffix):
        return f"{flag} must name a {suffix} file, got {path}"
    return None


def check_input_file(path: str | os.PathLike) -> None:
    """Raises OSError "PATH: cannot read (REASON)" unless `path` is a file that can be opened."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise OSError(f"{path}: cannot read ({e.strerror})") from None


def mask_problem(spec: str) -> str | None:
    """What is wrong with a `--mask` value (a name in MASK_NAMES, or a file to read), or None."""
    if spec in MASK_NAMES or Path(spec).is_file():
        return None
    names = ", ".join(MASK_NAMES)
    if spec.lower().endswith(".png"):
        return f"--mask {spec}: no such file (give a 28x28 mask PNG, or one of {names})"
    return f"--mask {spec}: not a mask name: choose one of {names}, or a 28x28 mask PNG"


def resolve_version(model_dir: str | os.PathLike, version: int | None = None) -> Path:
    """`<model_dir>/<version>`, by default the highest integer version (as TF Serving serves);
    ModelNotFoundError naming the path and the versions present otherwise."""
    base = Path(model_dir)
    if (base / "saved_model.pb").is_file():  # a version directory given directly
        if version is not None:
            raise ModelNotFoundError(f"{base} is a version directory already; drop --version")
        return base
    if not base.is_dir():
        raise ModelNotFoundError(f"{base}: no such model directory")
    found = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
    if version is None:
        if not found:
            raise ModelNotFoundError(f"{base}: no version directories (expected {base}/1, ...)")
        version = found[-1]
    path = base / str(version)
    if not (path / "saved_model.pb").is_file():
        raise ModelNotFoundError(f"{path}: no SavedModel there (versions present: {found})")
    return path


def class_names(version_dir: str | os.PathLike) -> list[str] | None:
    """The class names an export lists (`assets.extra/classes.json`), read without TensorFlow so
    that a label can be checked against the model's own classes at once; None where the file
    is missing or not a list of names (loading the model then says what is wrong)."""
    import json

    try:
        names = json.loads((Path(version_dir) / "assets.extra" / "classes.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return names
    return None
