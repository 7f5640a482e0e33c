"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Union

import numpy as np

# A file's contents for `write_files`: bytes, or a function that writes them to the open file
# (for contents too large to hold in memory at once, e.g. `npy_stream`).
Contents = Union[bytes, Callable[[BinaryIO], None]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(path: Path, error: OSError) -> OSError:
    """`error` (of the same class and errno) with a message naming the file the user asked for
    rather than the temporary beside it, e.g. "cannot write out/x.png: Permission denied"."""
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
    elif isinstance(error, IsADirectoryError) and path.is_dir():
        reason = "it is a folder"
    new = type(error)(f"cannot write {path}: {reason}")
    new.errno = error.errno
    return new


def _make_folder(folder: Path) -> list[Path]:
    """Creates `folder` and any missing parents; returns the folders created, deepest last."""
    created = []
    for parent in [*reversed(folder.parents), folder]:
        if not parent.exists():
            try:
                parent.mkdir()
            except FileExistsError:  # made meanwhile by someone else: theirs, not ours
                if parent.is_dir():
                    continue
                raise
            created.append(parent)
    return created


def write_files(files: dict[str | os.PathLike, Contents]) -> list[Path]:
    """Writes every file to a temporary name beside it, and only when all are written renames
    them into place: an error leaves none of them, no temporary and no folder it created
    behind, and names the file that could not be written. Files get the usual permissions
    (0666 less the umask). A file's contents are bytes or a function that writes them."""
    written: list[tuple[str, Path]] = []
    created: list[Path] = []
    try:
        for path, data in files.items():
            path = Path(path)
            try:
                if path.is_dir():
                    raise IsADirectoryError(21, "Is a directory", str(path))
                created += _make_folder(path.parent)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=".tmp")
                written.append((tmp, path))
                with os.fdopen(fd, "wb") as f:
                    os.fchmod(f.fileno(), 0o666 & ~_umask())
                    if callable(data):
                        data(f)
                    else:
                        f.write(data)
            except OSError as e:
                raise _cannot_write(path, e) from e
        for tmp, path in written:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise _cannot_write(path, e) from e
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else wrote there meanwhile
                pass
        raise
    return [path for _, path in written]


def npy_stream(batches: Iterable[np.ndarray], shape: tuple[int, ...],
               dtype: str = "float32") -> Callable[[BinaryIO], None]:
    """Contents for `write_files`: the array of `shape` that `batches` (C-ordered arrays of
    `dtype`, along the first axis) make when concatenated, as a .npy file (what np.save writes
    and np.load reads), written one batch at a time. Raises ValueError if the batches do not
    make that shape."""

    def write(f: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(
            np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
        rows = 0
        for batch in batches:
            batch = np.ascontiguousarray(batch, dtype=dtype)
            if batch.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"npy_stream: a batch of shape {batch.shape} for an array of "
                                 f"shape {tuple(shape)}")
            f.write(batch.tobytes())
            rows += len(batch)
        if rows != shape[0]:
            raise ValueError(f"npy_stream: {rows} rows for an array of shape {tuple(shape)}")

    return write


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    return write_files({path: data})[0]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def require_writable(folder: str | os.PathLike, what: str) -> None:
    """Raises ValueError ("cannot write <what> under <folder>: ...") unless `folder`, or the
    nearest folder above it that exists, can be written: a check made before long work starts."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {what} under {folder}: {existing} is "
                         + ("not a folder" if not existing.is_dir() else "not writable"))
