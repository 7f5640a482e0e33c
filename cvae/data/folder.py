"""Your own images: a folder of PNG or JPEG files of one size, grey or RGB, with their metadata
from a CSV (a `file` column and a column per field; an empty cell is an unknown value) or from
class sub-folders, as Keras' `image_dataset_from_directory` reads them.

`read_catalogue` checks everything before anything trains: every file the CSV lists exists once
and decodes to the same height, width and channels, every cell parses for its field. Each error
names the file, the row and the field. The images themselves are read later, streamed through
tf.data (`image_dataset`); `split` cuts the catalogue into train, validation and test by a seed.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cvae import limits
from cvae.data.fields import Field, FieldError, check_fields, encode

FILE_COLUMN = "file"
LABEL_FIELD = "label"  # the field class sub-folders give
SUFFIXES = (".png", ".jpg", ".jpeg")
CHANNELS = {"L": 1, "RGB": 3}  # PIL modes taken, and their channels
MAX_SIDE = 256  # pixels; the networks halve the side twice, so it must be a multiple of 4


class CatalogueError(ValueError):
    """The folder or its metadata is not what a training run can take; the message names the
    file, the row and the field."""


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """Images and their metadata, checked. `files`: absolute paths; `values` float64
    [N, len(fields)] (a categorical value's index or a continuous value; NaN unknown);
    `shape` (height, width, channels), the same for every image."""

    files: tuple[str, ...]
    values: np.ndarray
    fields: tuple[Field, ...]
    shape: tuple[int, int, int]
    source: str  # what was read, for the run's log: "DIR with FILE.csv" or "DIR's sub-folders"

    def __len__(self) -> int:
        return len(self.files)

    def conditions(self, rows=None) -> np.ndarray:
        """The encoded metadata y float32 [N, width] of the rows (all by default)."""
        values = self.values if rows is None else self.values[rows]
        return encode(self.fields, values)


def read_catalogue(images: str | os.PathLike, metadata: str | os.PathLike | None = None, *,
                   continuous: dict[str, tuple[float, float]] | None = None,
                   values: dict[str, tuple[str, ...]] | None = None) -> Catalogue:
    """The catalogue of `images` (a folder) with `metadata` (a CSV), or, without a CSV, with
    one categorical field `label` whose values are the sub-folders' names (sorted, as Keras
    does; their files at any depth). `continuous`: fields of the CSV that are numbers in a
    range (low, high); every other column is categorical, its values `values[name]` if given
    (then any other value is an error) or else the column's distinct values, sorted. Raises
    CatalogueError naming the problem; reads no pixel data beyond what checking takes."""
    root = Path(images)
    if not root.is_dir():
        raise CatalogueError(f"--images {root}: no such folder")
    continuous, values = dict(continuous or {}), dict(values or {})
    if metadata is None:
        for name in (*continuous, *values):
            if name != LABEL_FIELD or name in continuous:
                raise CatalogueError(f"field {name}: without --metadata the only field is "
                                     f"{LABEL_FIELD!r}, the sub-folders' names")
        files, field_values, fields = _from_sub_folders(root, values.get(LABEL_FIELD))
        source = f"{root}'s sub-folders"
    else:
        files, field_values, fields = _from_csv(root, Path(metadata), continuous, values)
        source = f"{root} with {metadata}"
    if len(files) > limits.MAX_CATALOGUE_IMAGES:
        raise CatalogueError(f"{source}: {len(files)} images is more than "
                             f"{limits.MAX_CATALOGUE_IMAGES}")
    shape = _check_images(files, root)
    return Catalogue(files=tuple(str(f) for f in files), values=field_values,
                     fields=check_fields(fields), shape=shape, source=source)


def _from_sub_folders(root: Path, declared: tuple[str, ...] | None):
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise CatalogueError(f"--images {root}: no class sub-folders and no --metadata CSV; "
                             f"give one of them")
    if declared is not None:
        unknown = sorted(set(classes) - set(declared))
        if unknown:
            raise CatalogueError(f"{root}: sub-folder(s) {', '.join(unknown)} are not among "
                                 f"the values of field {LABEL_FIELD}: {', '.join(declared)}")
        classes = list(declared)
    field = Field(LABEL_FIELD, "categorical", tuple(classes))
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in SUFFIXES) if (root / name).is_dir() else []
        files += found
        labels += [index] * len(found)
    if not files:
        raise CatalogueError(f"--images {root}: its sub-folders hold no "
                             f"{', '.join(SUFFIXES)} files")
    return files, np.asarray(labels, np.float64)[:, None], [field]


def _from_csv(root: Path, path: Path, continuous: dict, declared: dict):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise CatalogueError(f"--metadata {path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise CatalogueError(f"{path}: not a UTF-8 CSV file ({e})") from None
    if not rows:
        raise CatalogueError(f"{path}: empty; the first row names the columns "
                             f"({FILE_COLUMN!r} and one per field)")
    header = [h.strip() for h in rows[0]]
    if FILE_COLUMN not in header:
        raise CatalogueError(f"{path}: no {FILE_COLUMN!r} column (its columns: "
                             f"{', '.join(header) or 'none'})")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise CatalogueError(f"{path}: column(s) {', '.join(repeated)} appear twice")
    names = [h for h in header if h != FILE_COLUMN]
    if not names:
        raise CatalogueError(f"{path}: no field columns besides {FILE_COLUMN!r}")
    for name in (*continuous, *declared):
        if name not in names:
            raise CatalogueError(f"{path}: no column for field {name!r} (its columns: "
                                 f"{', '.join(header)})")
    body = [(i + 2, row) for i, row in enumerate(rows[1:]) if any(c.strip() for c in row)]
    if not body:
        raise CatalogueError(f"{path}: no rows below the header")
    for line, row in body:
        if len(row) != len(header):
            raise CatalogueError(f"{path} row {line}: {len(row)} cells, the header has "
                                 f"{len(header)}")
    cells = {name: [row[header.index(name)].strip() for _, row in body] for name in header}
    fields = []
    for name in names:
        try:
            if name in continuous:
                low, high = continuous[name]
                fields.append(Field(name, "continuous", low=float(low), high=float(high)))
            else:
                found = tuple(sorted({c for c in cells[name] if c}))
                if not found and name not in declared:
                    raise CatalogueError(f"{path}: field {name!r} has no value in any row")
                fields.append(Field(name, "categorical", tuple(declared.get(name, found))))
        except FieldError as e:
            raise CatalogueError(f"{path}: {e}") from None
    files, seen = [], {}
    values = np.full([len(body), len(fields)], np.nan)
    for r, (line, row) in enumerate(body):
        name = cells[FILE_COLUMN][r]
        where = f"{path} row {line}"
        if not name:
            raise CatalogueError(f"{where}: the {FILE_COLUMN!r} cell is empty")
        file = (root / name).resolve()
        if not file.is_relative_to(root.resolve()):
            raise CatalogueError(f"{where}: {name!r} is outside {root}")
        if file in seen:
            raise CatalogueError(f"{where}: {name!r} is listed again (first on row {seen[file]})")
        seen[file] = line
        if not file.is_file():
            raise CatalogueError(f"{where}: {name!r} is not in {root}")
        if file.suffix.lower() not in SUFFIXES:
            raise CatalogueError(f"{where}: {name!r} is not a {', '.join(SUFFIXES)} file")
        files.append(file)
        for c, field in enumerate(fields):
            try:
                values[r, c] = field.parse(cells[field.name][r])
            except FieldError as e:
                raise CatalogueError(f"{where}: {e}") from None
    return files, values, fields


def _image_shape(file: Path) -> tuple[int, int, int]:
    from PIL import Image, UnidentifiedImageError

    if file.stat().st_size == 0:
        raise CatalogueError(f"{file}: empty file")
    try:
        with Image.open(file) as image:
            if image.format not in ("PNG", "JPEG"):
                raise CatalogueError(f"{file}: a {image.format} image; PNG and JPEG are read")
            width, height = image.size
            if max(width, height) > MAX_SIDE:  # before decoding a huge image's pixels
                raise CatalogueError(f"{file}: {height}x{width}; the networks take a side of at "
                                     f"most {MAX_SIDE}")
            image.load()  # decodes every pixel: a truncated or corrupt file fails here
            mode = image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as e:
        if isinstance(e, CatalogueError):
            raise
        raise CatalogueError(f"{file}: not a readable PNG or JPEG image ({e})") from None
    if mode not in CHANNELS:
        raise CatalogueError(f"{file}: colour mode {mode}; grey (L) and RGB images are read "
                             f"(save it without alpha or a palette)")
    return height, width, CHANNELS[mode]


def _check_images(files: list[Path], root: Path) -> tuple[int, int, int]:
    """The one (height, width, channels) of every image; raises naming the first that
    differs, or cannot be read."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        shapes = list(pool.map(_image_shape, files))
    first = shapes[0]
    for file, shape in zip(files, shapes):
        if shape != first:
            raise CatalogueError(
                f"{file}: {shape[0]}x{shape[1]} with {shape[2]} channel(s), but {files[0]} is "
                f"{first[0]}x{first[1]} with {first[2]}; every image must have one size and "
                f"channel count")
    height, width, _ = first
    if height != width or height % 4 or not 8 <= height <= MAX_SIDE:
        raise CatalogueError(f"{root}: images are {height}x{width}; the networks take square "
                             f"images whose side is a multiple of 4 from 8 to {MAX_SIDE}")
    return first


def split(n: int, seed: int, validation_share: float, test_share: float
          ) -> dict[str, np.ndarray]:
    """Row indices of train, validation and test: a permutation of the n rows by `seed`, the
    last shares held out (at least one image each). The same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * validation_share))
    n_test = max(1, round(n * test_share))
    if n - n_val - n_test < 1:
        raise CatalogueError(f"{n} images cannot be split into train, validation "
                             f"({validation_share:g}) and test ({test_share:g})")
    return {"train": np.sort(order[:n - n_val - n_test]),
            "validation": np.sort(order[n - n_val - n_test:n - n_test]),
            "test": np.sort(order[n - n_test:])}


def _reader(catalogue: Catalogue):
    """A function from an image file's path to its pixels, uint8 [H, W, C] of the catalogue."""
    import tensorflow as tf

    height, width, channels = catalogue.shape

    def read(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                   expand_animations=False)
        return tf.ensure_shape(image, [height, width, channels])

    return read


def image_dataset(catalogue: Catalogue, rows, batch_size: int):
    """A tf.data pipeline of the images of `rows` (in that order), read from their files and
    decoded in parallel as they are needed, with their encoded metadata: (uint8 [B, H, W, C],
    float32 [B, width]) batches, the last one partial."""
    import tensorflow as tf

    rows = np.asarray(rows, np.int64)
    paths = tf.constant([catalogue.files[r] for r in rows])
    pixels = tf.data.Dataset.from_tensor_slices(paths).map(
        _reader(catalogue), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    conditions = tf.data.Dataset.from_tensor_slices(catalogue.conditions(rows))
    return (tf.data.Dataset.zip(pixels, conditions).batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def read_images(catalogue: Catalogue, rows) -> tuple[np.ndarray, np.ndarray]:
    """The images of `rows` and their encoded metadata as arrays, through `image_dataset`."""
    batches = list(image_dataset(catalogue, rows, 256).as_numpy_iterator())
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


@dataclasses.dataclass(frozen=True)
class Rows:
    """One split of a catalogue: its row indices."""

    catalogue: Catalogue
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclasses.dataclass(frozen=True)
class FolderSplits:
    """A catalogue cut into train, validation and test (`split`), as `cvae.data.Splits` holds
    Fashion-MNIST's."""

    train: Rows
    validation: Rows
    test: Rows
    source: str


def load_folder_splits(config) -> FolderSplits:
    """The catalogue of a `DataConfig` with `images` set, checked and split."""
    from cvae.config import continuous_range

    if config.metadata is not None and config.images is None:
        raise CatalogueError("--metadata needs --images, the folder its files are in")
    ranges = {}
    for spec in config.continuous:
        name, low, high = continuous_range(spec)
        ranges[name] = (low, high)
    catalogue = read_catalogue(config.images, config.metadata, continuous=ranges)
    cut = split(len(catalogue), config.split_seed, config.validation_share, config.test_share)
    if config.batch_size > len(cut["train"]):
        raise CatalogueError(f"batch_size={config.batch_size} is larger than the "
                             f"{len(cut['train'])} training images of {catalogue.source}")
    return FolderSplits(**{k: Rows(catalogue, v) for k, v in cut.items()},
                        source=catalogue.source)


def make_dataset(split: Rows, *, batch_size: int, likelihood: str, seed: int, training: bool,
                 latent_dim: int, start_step: int = 0, binarization: str = "dynamic"):
    """`cvae.data.make_dataset` for a folder: (x float32 [B, H, W, C] in [0, 1], the fields'
    values float32 [B, F] (NaN unknown), eps float32 [B, latent_dim]), the images read from
    their files batch by batch as training needs them. The same stateless draws as
    Fashion-MNIST's pipeline (order by (seed, epoch); binarisation and noise by (seed, step)),
    so a run repeats and resumes exactly."""
    import tensorflow as tf

    from cvae.data import _BINARISE, _NOISE, _stream, batch_indices, binarised

    read = _reader(split.catalogue)
    paths = tf.constant([split.catalogue.files[r] for r in split.rows])
    values = tf.constant(split.catalogue.values[split.rows], tf.float32)

    def batch(step, index):
        pixels = tf.map_fn(read, tf.gather(paths, index), fn_output_signature=tf.uint8,
                           parallel_iterations=16)
        x = binarised(tf.cast(pixels, tf.float32) / 255.0, likelihood,
                      _stream(seed, _BINARISE, step), binarization)
        eps = tf.random.stateless_normal([tf.shape(index)[0], latent_dim],
                                         _stream(seed, _NOISE, step))
        return x, tf.gather(values, index), eps

    ds = batch_indices(len(split), batch_size, seed, training, start_step)
    ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
