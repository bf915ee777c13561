"""A catalog file that is empty, foreign or damaged is refused with one typed error naming it,
and nothing is written into it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cytoreview.errors import CatalogDamagedError, NotACatalogError, ProjectError
from cytoreview.storage.catalog import Catalog
from cytoreview.storage.project import CATALOG_FILE, Project


def _closed_project(project: Project) -> Path:
    project.close()
    return project.root / CATALOG_FILE


def test_empty_catalog_is_refused_and_left_empty(project: Project) -> None:
    catalog = _closed_project(project)
    catalog.write_bytes(b"")
    for leftover in catalog.parent.glob(f"{CATALOG_FILE}-*"):
        leftover.unlink()
    with pytest.raises(NotACatalogError) as info:
        Project.open(project.root)
    assert str(catalog) in str(info.value) and "empty" in str(info.value)
    assert "\n" not in str(info.value)
    # Opening used to write a fresh schema into the empty file.
    assert catalog.stat().st_size == 0


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / CATALOG_FILE
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(NotACatalogError, match="without CytoReview's tables"):
        Project.open(tmp_path)
    assert foreign.read_bytes() == before  # not switched to WAL, no schema added
    assert not (tmp_path / f"{CATALOG_FILE}-wal").exists()


def test_non_sqlite_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / CATALOG_FILE).write_text("just some text, not a database\n")
    with pytest.raises(NotACatalogError, match="not an SQLite database"):
        Project.open(tmp_path)


def test_damaged_page_gives_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p", actor="t")
    # Only SQLite's "damaged file" codes get the new type; a program's own error keeps its type.
    with pytest.raises(sqlite3.IntegrityError), project.catalog.write() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('class_scheme', '1')")
    with project.catalog.write() as conn:  # enough rows that the middle of the file is theirs
        for i in range(1000):
            Catalog.audit(conn, "t", "filler", "project", None, text="x" * 200, i=i)
    catalog = _closed_project(project)
    size = catalog.stat().st_size
    with open(catalog, "r+b") as handle:  # scribble over pages past the schema
        handle.seek(size // 2)
        handle.write(b"\xa5" * 8192)
    with pytest.raises(CatalogDamagedError) as info, Project.open(project.root) as reopened:
        reopened.audit_entries()
    message = str(info.value)
    assert str(catalog) in message and "damaged" in message and "\n" not in message


def test_broken_meta_json_gives_a_typed_error(project: Project) -> None:
    with project.catalog.write() as conn:
        conn.execute("UPDATE meta SET value = '{\"classes\": [' WHERE key = 'class_scheme'")
    catalog = _closed_project(project)
    with pytest.raises(CatalogDamagedError, match="'class_scheme' is not valid JSON") as info:
        Project.open(project.root)
    assert str(catalog) in str(info.value)


def test_meta_of_the_wrong_shape_gives_a_typed_error(project: Project) -> None:
    with project.catalog.write() as conn:
        conn.execute("UPDATE meta SET value = '[1, 2]' WHERE key = 'class_scheme'")
    _closed_project(project)
    with pytest.raises(CatalogDamagedError, match="class scheme"):
        Project.open(project.root)


def test_error_after_sqlite_ended_the_transaction_is_not_hidden(project: Project) -> None:
    # SQLite ends a transaction itself after some errors (disk full); ROLLBACK then failed with
    # "no transaction is active" and hid the real error.
    with pytest.raises(ProjectError, match="the real error"), project.catalog.write() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('k', '1')")
        conn.execute("COMMIT")  # stands in for SQLite ending the transaction
        raise ProjectError("the real error")
