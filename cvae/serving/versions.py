"""Versioned, atomic writing under a model base path, as TensorFlow Serving reads it: integer
version folders, written to a hidden temporary sibling and renamed into place; an existing
version is never touched, nothing is written through a symlink or outside the base path; and
`SHIPPED`, the version the project ships."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from cvae.files import require_writable
from cvae.serving.contract import VERSION_NAME


def versions(base_dir: str | os.PathLike) -> list[int]:
    """The integer version directories under a model base path, ascending."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


# `<base>/SHIPPED` holds the number of the version the project ships (the one its README, report
# and tests describe), which need not be the newest: every `make train` exports a newer one.
# TF Serving ignores it, as it ignores every name that is not an integer (it serves the newest).
SHIPPED_FILE = "SHIPPED"


def shipped_version(base_dir: str | os.PathLike) -> int:
    """The version number that `<base_dir>/SHIPPED` names; raises ValueError if the file is
    missing, holds anything but one integer, or names a version that is not there."""
    file = Path(base_dir) / SHIPPED_FILE
    try:
        text = file.read_text().strip()
    except OSError as e:
        raise ValueError(f"{file}: cannot read the shipped version ({e.strerror})") from None
    if not VERSION_NAME.fullmatch(text):
        raise ValueError(f"{file}: expected one version number, got {text[:40]!r}")
    if int(text) not in versions(base_dir):
        raise ValueError(f"{file} names version {int(text)}, which is not among "
                         f"{versions(base_dir)}")
    return int(text)


def shipped_path(base_dir: str | os.PathLike) -> Path:
    """`<base_dir>/<shipped_version(base_dir)>`."""
    return Path(base_dir) / str(shipped_version(base_dir))


def _refuse_unsafe_base(base: Path) -> Path:
    """The resolved base path; raises ValueError if `base` looks like a version directory itself
    or holds a version directory that is a symlink (writing beside it, or TF Serving loading it,
    would reach outside the base path)."""
    root = base.resolve()
    for name in (base.name, root.name):
        if VERSION_NAME.fullmatch(name):
            raise ValueError(
                f"model base path {base} looks like a version directory ({name!r} is an "
                f"integer); give the folder that holds the versions, e.g. {root.parent}")
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if VERSION_NAME.fullmatch(entry.name) and entry.is_symlink():
                raise ValueError(
                    f"version directory {entry} is a symlink (to {os.readlink(entry)}); versions "
                    f"under {base} must be real directories inside it")
    return root


def _own_child(root: Path, path: Path) -> Path:
    """`path` if it is a direct child of the resolved base path `root` and not a symlink; raises
    ValueError otherwise (e.g. a symlink planted while the export was running)."""
    if path.is_symlink() or path.resolve().parent != root:
        raise ValueError(f"refusing to write {path}: it is a symlink or resolves outside the "
                         f"model base path {root}")
    return path


def write_version(base_dir: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Has `fill` write a complete version into a temporary sibling folder, then renames it to
    the next integer version under `base_dir` and returns that path. Nothing is left behind if
    `fill` fails.

    The version number is taken when the finished folder is renamed into place; if another
    writer took it first (the rename finds a non-empty directory), the next one is tried.
    A base path named like a version (`saved_models/cvae/3`) or holding a symlinked version is
    refused with ValueError before anything is written.
    """
    base = Path(base_dir)
    root = _refuse_unsafe_base(base)
    require_writable(base, "a version")
    created_base = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-export-{uuid.uuid4().hex}"
    try:
        fill(tmp)
        for _ in range(100):
            final = _own_child(root, base / str((versions(base) or [0])[-1] + 1))
            try:
                os.rename(tmp, final)  # fails on a non-empty directory: never overwrites
                return final
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise RuntimeError(f"could not claim a version number under {base}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if created_base and not any(base.iterdir()):
            base.rmdir()
