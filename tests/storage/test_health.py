"""The file-system facts of ``cytoreview doctor``: a real write, a real lock, nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cytoreview.storage.health import catalog_facts, folder_facts, normal_name, read_constraints
from cytoreview.storage.project import CATALOG_FILE, Project


def test_folder_facts_write_and_leave_nothing(tmp_path: Path) -> None:
    facts = folder_facts(tmp_path)
    assert facts.exists and facts.write_error is None
    assert facts.free_bytes is not None and facts.free_bytes > 0
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_folder_facts_of_a_new_folder_probe_its_parent(tmp_path: Path) -> None:
    facts = folder_facts(tmp_path / "not" / "yet")
    assert not facts.exists and facts.write_error is None
    assert not (tmp_path / "not").exists()


def test_folder_facts_report_a_write_that_fails(tmp_path: Path) -> None:
    # A path under a regular file: the write fails for anyone, root included.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    facts = folder_facts(blocker / "project")
    assert facts.write_error is not None


def test_catalog_facts_free_locked_absent_and_damaged(tmp_path: Path) -> None:
    assert not catalog_facts(tmp_path).present
    Project.init(tmp_path / "p", actor="t").close()
    catalog = tmp_path / "p" / CATALOG_FILE
    before = catalog.read_bytes()
    free = catalog_facts(tmp_path / "p")
    assert free.present and free.error is None and not free.locked
    assert catalog.read_bytes() == before  # the probe wrote nothing
    other = sqlite3.connect(catalog, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        held = catalog_facts(tmp_path / "p", timeout_s=0.1)
        assert held.locked and "locked" in (held.error or "")
    finally:
        other.execute("ROLLBACK")
        other.close()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CATALOG_FILE).write_bytes(b"not a database at all" * 100)
    damaged = catalog_facts(tmp_path / "bad")
    assert damaged.error and not damaged.locked


def test_read_constraints(tmp_path: Path) -> None:
    pins = tmp_path / "constraints.txt"
    pins.write_text("# tested\nPySide6_Essentials==6.11.0\ntorch==2.14.1  # CUDA\n\nfoo>=1\n")
    assert read_constraints(pins) == {"pyside6-essentials": "6.11.0", "torch": "2.14.1"}
    assert read_constraints(tmp_path / "missing.txt") is None
    assert normal_name("Foo_Bar.baz") == "foo-bar-baz"


def test_the_repository_constraints_pin_the_key_packages() -> None:
    pins = read_constraints(Path(__file__).parents[2] / "installer" / "constraints.txt")
    assert pins is not None and {"torch", "numpy", "napari"} <= set(pins)
