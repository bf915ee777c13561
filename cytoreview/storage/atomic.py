"""Crash-safe file writes: temp file + fsync + rename, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Suffix of temporary files; a crash can leave them behind and :func:`remove_stale_temps`
#: clears them.
TEMP_SUFFIX = ".partial"
#: Temp names are "." + 8 random characters + TEMP_SUFFIX whatever the target's name: a temp name
#: built from a long target name (240 characters is a valid file name) would exceed the 255-byte
#: limit of the file system and refuse a file that can be stored.
_TEMP_PREFIX = "."
_CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _current_umask()

#: A temp file younger than this may belong to a writer in another process that is still
#: running (two windows on one project); only older ones are treated as crash leftovers.
STALE_TEMP_AGE_S = 600.0


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut (no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old content or all of the new.

    Parameters
    ----------
    path
        Destination file; its folder is created if needed.
    data
        The full new content.
    overwrite
        With False, refuse (FileExistsError) when ``path`` exists: versioned files are never
        replaced in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: refusing to overwrite an existing version")
    fd, tmp = make_temp(path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path, overwrite=overwrite)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:
            # write() and fsync() name no file (a full disk: "[Errno 28] No space left on
            # device"); the person needs to know which file could not be written.
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise


def copy_to_temp(source: Path, directory: Path) -> tuple[Path, str]:
    """Copy a file to a new temp file in ``directory``, flushed to disk; hash it on the way.

    The copy is published later with :func:`publish`, once the caller has decided its name
    (for an image: inside the catalog's write transaction).

    Parameters
    ----------
    source
        File to copy (a regular file: the caller has checked it).
    directory
        Folder of the final file, created if needed; the temp file is made there so that
        publishing it is a rename within one file system.

    Returns
    -------
    tuple of (Path, str)
        The temp file (the caller removes it if it is not published) and the hex SHA-256 of
        the bytes copied, which may differ from an earlier hash if the source changed since.
    """
    digest = hashlib.sha256()

    def copy(out: BinaryIO) -> None:
        with open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)

    return fill_temp(directory, copy), digest.hexdigest()


def fill_temp(directory: Path, fill: Callable[[BinaryIO], object]) -> Path:
    """A new temp file in ``directory`` written by ``fill``, flushed to disk; return its path.

    The caller publishes it with :func:`publish` once it has chosen its name, or removes it;
    if ``fill`` fails, the temp file is removed here and the error goes on.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(directory)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def write_temp(directory: Path, data: bytes) -> Path:
    """Write ``data`` to a new temp file in ``directory`` (see :func:`fill_temp`)."""
    return fill_temp(directory, lambda out: out.write(data))


def publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Give a complete temp file its final name, atomically, and flush the folder entry.

    Parameters
    ----------
    tmp
        A flushed temp file in the same folder as ``path`` (it is gone afterwards).
    path
        The final name.
    overwrite
        With False, refuse (FileExistsError, ``tmp`` left in place) when ``path`` exists.
    """
    if overwrite:
        os.replace(tmp, path)
    else:
        _publish_without_overwrite(tmp, path)
    fsync_dir(path.parent)


def make_temp(directory: Path) -> tuple[int, Path]:
    """A new, empty temp file in ``directory`` with the usual permissions: (descriptor, path)."""
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
    # mkstemp makes the file private (0600); the result should have the permissions of any
    # file the user creates (a report shared with a colleague must be readable).
    if os.name != "nt":
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
        except BaseException:
            os.close(fd)
            Path(tmp_name).unlink()
            raise
    return fd, Path(tmp_name)


def _publish_without_overwrite(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists."""
    try:
        # link() fails if the target exists, closing the race between exists() and rename.
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: refusing to overwrite an existing version") from None
    except OSError:
        # Some file systems (FAT, some network shares) have no hard links; the catalog's
        # write lock already serialises writers of one project, so a plain rename is safe.
        if path.exists():
            raise FileExistsError(f"{path}: refusing to overwrite an existing version") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def remove_stale_temps(
    directory: Path, *, min_age_s: float = STALE_TEMP_AGE_S, recursive: bool = True
) -> int:
    """Delete temp files that a crashed writer left under ``directory``; return how many.

    Parameters
    ----------
    directory
        Folder searched recursively for ``.*.partial`` files.
    min_age_s
        Only files whose last change is at least this old are removed: a younger one may be
        being written right now by another process that has the same project open.
    recursive
        Search sub-folders too (False for a folder whose sub-folders hold thousands of files
        written otherwise, such as a slide's label pyramid).
    """
    removed = 0
    if not directory.is_dir():
        return 0
    now = time.time()
    pattern = f".*{TEMP_SUFFIX}"
    for tmp in directory.rglob(pattern) if recursive else directory.glob(pattern):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime < min_age_s:
                continue
            tmp.unlink()
            removed += 1
    return removed
