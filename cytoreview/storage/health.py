"""What ``cytoreview doctor`` asks of the file system: write access, free disk, catalog locks.

Facts only, no verdicts: each function probes once and returns what it found (the workflow
:mod:`cytoreview.workflows.doctor` judges). Nothing here changes a project: the write probe
removes its own file, and the lock probe takes SQLite's write lock and releases it at once
without writing.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cytoreview.storage.project import CATALOG_FILE

#: How long the lock probe waits for another process's write lock: a normal write (a mask
#: saved, an audit row) holds it for milliseconds, so a lock held this long is a real one.
LOCK_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class FolderFacts:
    """Where a project lives: can this user write there, and how much room is left."""

    folder: Path
    exists: bool
    #: None when a file could be created, written, synced and removed; else the OS's reason.
    write_error: str | None
    #: Bytes free for this user (None when the folder does not exist).
    free_bytes: int | None


@dataclass(frozen=True)
class CatalogFacts:
    """The project's SQLite catalog, as a writer would find it."""

    path: Path
    #: False: the folder holds no catalog (not a project); the other fields are then empty.
    present: bool
    #: None when the write lock was taken and released; else SQLite's or the OS's reason.
    error: str | None = None
    #: True when the reason is another process holding the lock (not a permission or damage).
    locked: bool = False


def folder_facts(folder: str | Path) -> FolderFacts:
    """Probe ``folder``: write a small file there (then remove it) and read the free space.

    A folder that does not exist yet is probed at its nearest existing parent (``init`` would
    create it there).
    """
    folder = Path(folder)
    probe_at = folder
    while not probe_at.exists() and probe_at != probe_at.parent:
        probe_at = probe_at.parent
    error = None
    try:
        # A real write with fsync: a read-only mount, a full disk or a quota refuses here,
        # where os.access would still say yes (it checks permission bits only).
        fd, name = tempfile.mkstemp(prefix=".cytoreview-doctor-", dir=probe_at)
        try:
            os.write(fd, b"cytoreview doctor write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(name).unlink()
    except OSError as exc:
        error = exc.strerror or str(exc)
    try:
        free: int | None = shutil.disk_usage(probe_at).free
    except OSError:
        free = None
    return FolderFacts(folder, folder.exists(), error, free)


def catalog_facts(folder: str | Path, timeout_s: float = LOCK_PROBE_TIMEOUT_S) -> CatalogFacts:
    """Try to take the catalog's write lock in ``folder`` (``BEGIN IMMEDIATE``), then release it.

    Opened read-write without create (``mode=rw``) and without CytoReview's migration: the
    probe never creates or changes a catalog.
    """
    path = Path(folder) / CATALOG_FILE
    if not path.is_file():
        return CatalogFacts(path, present=False)
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s, isolation_level=None
        )
    except sqlite3.Error as exc:
        return CatalogFacts(path, True, f"cannot open it ({exc})")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        text = str(exc)
        locked = "locked" in text.lower() or "busy" in text.lower()
        return CatalogFacts(path, True, text, locked=locked)
    except sqlite3.Error as exc:
        return CatalogFacts(path, True, str(exc))
    finally:
        conn.close()
    return CatalogFacts(path, True)


def read_constraints(path: str | Path) -> dict[str, str] | None:
    """The pinned versions of a pip constraints file (``name==version`` lines), by lower name.

    Returns None when the file is missing (an installed wheel has no ``installer/`` folder).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            name = name.split("[", 1)[0].split(";", 1)[0].strip()
            pins[normal_name(name)] = version.split(";", 1)[0].strip()
    return pins


def normal_name(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar.baz``: ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()
