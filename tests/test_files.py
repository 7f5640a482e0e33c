"""Atomic writes: all files or none, with ordinary permissions."""

import os

import pytest

from cvae.files import write_files


def test_files_appear_together_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        paths = write_files({tmp_path / "a.png": b"png", tmp_path / "sub" / "a.npy": b"npy"})
    finally:
        os.umask(old)
    assert [p.read_bytes() for p in paths] == [b"png", b"npy"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.npy", "a.png", "sub"]


def test_a_failure_leaves_no_file_and_no_temporary(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        write_files({tmp_path / "out.png": b"png", tmp_path / "blocker" / "out.npy": b"npy"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_an_existing_file_is_replaced_whole(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    write_files({target: b"new"})
    assert target.read_bytes() == b"new"
