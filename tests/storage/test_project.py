"""Project folder, mask versions, provenance, audit log and crash safety."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import (
    ProjectError,
    ProjectExistsError,
    ProjectNotFoundError,
    SchemaVersionError,
    UnknownClassError,
)
from cytoreview.storage.catalog import Catalog
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.storage.schema import SCHEMA_VERSION
from cytoreview.types import Provenance
from tests.conftest import PATIENCE_S, cell_image, write_rgb_png


def _add(project: Project, tmp_path: Path, name: str = "cell", label: str | None = "NILM"):
    rgb, mask = cell_image(seed=len(name))
    path = write_rgb_png(tmp_path / "src" / f"{name}.png", rgb)
    loaded = read_image(path)
    record = project.add_image(
        path, loaded.info, file_sha256(path), actor="tester", class_label=label
    )
    return record, mask


def test_init_creates_layout_and_refuses_existing(tmp_path: Path, project: Project) -> None:
    assert (project.root / CATALOG_FILE).is_file()
    assert (project.root / "images").is_dir() and (project.root / "masks").is_dir()
    assert "CytoReview project" in (project.root / "README.txt").read_text()
    assert project.catalog.schema_version() == SCHEMA_VERSION
    with pytest.raises(ProjectExistsError, match="already exists"):
        Project.init(project.root, actor="x")
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("someone's file")
    with pytest.raises(ProjectExistsError, match="not empty"):
        Project.init(other, actor="x")


def test_open_non_project_names_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFoundError, match=str(tmp_path)):
        Project.open(tmp_path)


def test_wal_mode_and_reopen_is_idempotent(project: Project) -> None:
    mode = project.catalog.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    project.close()
    with Project.open(project.root) as again:
        assert again.catalog.schema_version() == SCHEMA_VERSION
        rows = again.catalog.query("SELECT COUNT(*) FROM schema_version")
        assert rows[0][0] == SCHEMA_VERSION


def test_newer_schema_is_refused(project: Project) -> None:
    with project.catalog.write() as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'future')", (SCHEMA_VERSION + 1,))
    project.close()
    with pytest.raises(SchemaVersionError, match="newer CytoReview"):
        Project.open(project.root)


def test_image_copy_is_byte_identical(tmp_path: Path, project: Project) -> None:
    record, _ = _add(project, tmp_path)
    stored = project.image_path(record)
    assert stored.parent == project.root / "images"
    assert file_sha256(stored) == record.sha256
    assert project.find_by_sha(record.sha256) == record
    assert project.image("cell") == project.image(record.id)


def test_unknown_class_is_refused(tmp_path: Path, project: Project) -> None:
    with pytest.raises(UnknownClassError, match="valid: NILM, ASC-US, LSIL, HSIL"):
        _add(project, tmp_path, label="carcinoma")
    assert project.images() == []


def test_class_names_match_loosely(tmp_path: Path, project: Project) -> None:
    record, _ = _add(project, tmp_path, label="asc_us")
    assert record.class_label == "ASC-US"


def test_mask_versions_keep_history_and_provenance(tmp_path: Path, project: Project) -> None:
    record, mask = _add(project, tmp_path)
    v1 = project.save_mask(record.id, mask, Provenance.AUTO, actor="model", source_model="m1")
    edited = mask.copy()
    edited[0, 0] = 2
    v2 = project.save_mask(record.id, edited, "corrected", actor="dr_a")
    v3 = project.save_mask(record.id, edited, Provenance.APPROVED, actor="dr_b")
    assert [v.version for v in project.mask_versions(record.id)] == [1, 2, 3]
    assert (v1.provenance, v1.source_model, v1.author) == (Provenance.AUTO, "m1", "model")
    assert (v2.provenance, v3.provenance) == (Provenance.CORRECTED, Provenance.APPROVED)
    # Every version is its own file, still readable.
    assert np.array_equal(project.read_mask_version(v1), mask)
    assert np.array_equal(project.read_mask_version(v2), edited)
    current, pixels = project.current_mask(record.id)
    assert current.id == v3.id and np.array_equal(pixels, edited)
    assert project.current_versions()[record.id].id == v3.id
    actions = [(e.action, e.actor) for e in project.audit_entries()]
    assert ("save_mask", "dr_a") in actions and ("save_mask", "model") in actions
    assert actions[0] == ("init", "tester")


def test_auto_mask_never_replaces_human_work(tmp_path: Path, project: Project) -> None:
    record, mask = _add(project, tmp_path)
    project.save_mask(record.id, mask, Provenance.MANUAL, actor="dr_a")
    with pytest.raises(ProjectError, match="never replaces a person's work"):
        project.save_mask(record.id, np.zeros_like(mask), Provenance.AUTO, actor="model")
    assert len(project.mask_versions(record.id)) == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 3), np.uint8), "but its image is"),
        (np.full((40, 48), 3, np.uint8), "must be 0, 1 or 2"),
        (np.zeros((40, 48, 3), np.uint8), "must be 2-D"),
        (np.zeros((40, 48), np.float32), "integers"),
    ],
)
def test_bad_masks_are_refused(tmp_path: Path, project: Project, bad, message) -> None:
    record, _ = _add(project, tmp_path)
    with pytest.raises(ValueError, match=message):
        project.save_mask(record.id, bad, Provenance.MANUAL, actor="dr_a")
    assert project.mask_versions(record.id) == []


def test_audit_log_and_versions_are_append_only(tmp_path: Path, project: Project) -> None:
    record, mask = _add(project, tmp_path)
    project.save_mask(record.id, mask, Provenance.MANUAL, actor="dr_a")
    for sql in (
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "UPDATE mask_versions SET provenance = 'approved'",
        "DELETE FROM mask_versions",
    ):
        with pytest.raises(sqlite3.IntegrityError), project.catalog.write() as conn:
            conn.execute(sql)
    assert project.audit_entries()[-1].action == "save_mask"


def test_damaged_newest_version_falls_back(tmp_path: Path, project: Project) -> None:
    record, mask = _add(project, tmp_path)
    v1 = project.save_mask(record.id, mask, Provenance.MANUAL, actor="dr_a")
    v2 = project.save_mask(record.id, np.zeros_like(mask), Provenance.CORRECTED, actor="dr_a")
    (project.root / v2.path).write_bytes(b"\x89PNG garbage")
    current, pixels = project.current_mask(record.id)
    assert current.id == v1.id and np.array_equal(pixels, mask)


def test_seeds_and_class_changes_are_audited(tmp_path: Path, project: Project) -> None:
    a, _ = _add(project, tmp_path, "a")
    b, _ = _add(project, tmp_path, "bb")
    project.set_seeds([a.id], actor="dr_a")
    project.set_seeds([b.id], actor="dr_a")
    assert [im.name for im in project.images() if im.is_seed] == ["bb"]
    project.set_class(a.id, "hsil", actor="dr_b")
    assert project.image(a.id).class_label == "HSIL"
    last = project.audit_entries(limit=2)
    assert last[0].details["added"] == [b.id] and last[0].details["removed"] == [a.id]
    assert last[1].details == {"old": "NILM", "new": "HSIL"}


# -- crashes -------------------------------------------------------------------------------------
_CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from cytoreview.storage import atomic, catalog
    from cytoreview.storage.project import Project
    project = Project.open(sys.argv[1])
    image_id = int(sys.argv[2])
    where = sys.argv[3]
    if where == "mid-write":
        # Die after the temp file is written but before it is renamed into place.
        atomic.os.link = lambda *a, **k: os._exit(3)
        atomic.os.replace = lambda *a, **k: os._exit(3)
    else:
        # Die after the file is in place but before the catalog row is committed.
        catalog.Catalog.audit = staticmethod(lambda *a, **k: os._exit(3))
    mask = np.full((40, 48), 2, np.uint8)
    project.save_mask(image_id, mask, "corrected", actor="crasher")
    """
)


@pytest.mark.parametrize("where", ["mid-write", "before-commit"])
def test_crash_while_saving_keeps_previous_version(
    tmp_path: Path, project: Project, where: str
) -> None:
    record, mask = _add(project, tmp_path)
    good = project.save_mask(record.id, mask, Provenance.MANUAL, actor="dr_a")
    project.close()
    result = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(project.root), str(record.id), where],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )
    assert result.returncode == 3, result.stderr
    # A crash leftover is only swept once it is old enough not to be a live writer's file.
    for leftover in (project.root / "masks").rglob("*.partial"):
        old = time.time() - 3600
        os.utime(leftover, (old, old))
    with Project.open(project.root) as reopened:
        current, pixels = reopened.current_mask(record.id)
        assert current.id == good.id and np.array_equal(pixels, mask)
        assert not list((reopened.root / "masks").rglob("*.partial"))
        # Work goes on normally after the crash.
        again = reopened.save_mask(record.id, mask, Provenance.CORRECTED, actor="dr_a")
        assert again.version == 2
        assert reopened.current_mask(record.id)[0].id == again.id
        actions = [e.action for e in reopened.audit_entries()]
        assert actions.count("save_mask") == 2


def test_catalog_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="catalog file is missing"):
        Catalog(tmp_path / "nothing.sqlite")


def test_opening_keeps_a_young_temp_file_of_another_writer(project: Project) -> None:
    # Another process that has the project open may be half-way through writing this file.
    folder = project.root / "masks" / "x"
    folder.mkdir(parents=True)
    live = folder / ".v0001-manual-abcd.png.k3j2.partial"
    live.write_bytes(b"being written")
    project.close()
    with Project.open(project.root):
        assert live.exists()
