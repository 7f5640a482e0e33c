"""The last step of the way training takes (config -> data -> model -> loop -> export): a trained
run exported as the next version, and the class grid of that version beside the run."""

from __future__ import annotations

import os
from pathlib import Path

from cvae import images
from cvae.files import atomic_write_bytes
from cvae.model import sampling
from cvae.serving import generate
from cvae.serving.export import export
from cvae.serving.field_export import export_fields, field_grid


def export_run(result, base_dir: str | os.PathLike | None = None,
               sampler: sampling.LatentSampler | None = None) -> Path:
    """Exports a `cvae.training.train.TrainResult` (to its config's export_dir by default;
    `sampler` as `cvae.serving.export.export` takes it) and writes the class grid of the
    exported version to <run dir>/class_grid.png: the report's picture
    (`cvae.serving.generate.class_grid`, a row per class named by its label)."""
    if result.model.fields:  # a model of metadata fields: its own signatures and grid
        path = export_fields(result.model, result.config, result.metrics,
                             base_dir or result.config.train.export_dir)
        print(f"exported {path}")
        grid_path = result.run_dir / "class_grid.png"
        atomic_write_bytes(grid_path, images.png_bytes(field_grid(path)))
        print(f"wrote {grid_path} (one row per value of {result.model.fields[0].name})")
        return path
    path = export(result.model, result.config, result.metrics,
                  base_dir or result.config.train.export_dir, logs_dir=result.run_dir / "logs",
                  sampler=sampler)
    print(f"exported {path}")
    grid_path = result.run_dir / "class_grid.png"
    atomic_write_bytes(grid_path, generate.class_grid(generate.load(path)))
    print(f"wrote {grid_path} (one row per class)")
    return path
