"""Atomic writes: whole files, ordinary permissions, crash leftovers swept only when old."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from cytoreview.storage.atomic import atomic_write_bytes, remove_stale_temps


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_written_files_get_the_users_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    atomic_write_bytes(path, b"<html></html>")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_refuses_to_overwrite_a_version(tmp_path: Path) -> None:
    path = tmp_path / "v0001.png"
    atomic_write_bytes(path, b"one", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"two", overwrite=False)
    assert path.read_bytes() == b"one" and not list(tmp_path.glob("*.partial"))


def test_only_old_temp_files_are_swept(tmp_path: Path) -> None:
    old, young = tmp_path / ".a.png.x1.partial", tmp_path / ".b.png.x2.partial"
    old.write_bytes(b"crash leftover")
    young.write_bytes(b"another process is writing this")
    then = time.time() - 3600
    os.utime(old, (then, then))
    assert remove_stale_temps(tmp_path) == 1
    assert not old.exists() and young.exists()
