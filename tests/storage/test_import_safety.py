"""Importing into the project safely: names, damaged catalogs, restoring files, linked sources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytoreview.errors import ImageReadError, UnsafePathError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.types import Provenance
from tests.conftest import cell_image, write_rgb_png


def _import(project: Project, path: Path, *, copy: bool = True):
    return project.import_file(path, read_image(path).info, file_sha256(path), actor="t", copy=copy)


def _tamper(project: Project, sql: str, *args: object) -> None:
    """Change the catalog behind the project's back, as a damaged or hostile file would."""
    conn = sqlite3.connect(project.root / CATALOG_FILE)
    with conn:
        conn.execute(sql, args)
    conn.close()


def test_names_from_disk_are_made_safe(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    dots = write_rgb_png(tmp_path / "src" / "...png", rgb)
    outcome = _import(project, dots)
    assert outcome.status == "added" and outcome.record.name == "image"
    assert project.image_path(outcome.record) == project.root / "images" / "image.png"
    html = write_rgb_png(tmp_path / "src" / '<b onload="x">.png', rgb[::-1])
    assert _import(project, html).record.name == "_b onload=_x__"


def test_a_240_character_name_is_imported(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    path = write_rgb_png(tmp_path / ("n" * 240 + ".png"), rgb)
    record = _import(project, path).record
    assert record.name == "n" * 200 and project.load_image(record).rgb.shape == rgb.shape
    version = project.save_mask(record.id, np.zeros(rgb.shape[:2], np.uint8), "manual", actor="t")
    assert project.read_mask_version(version) is not None


def test_a_file_left_under_the_name_is_never_replaced(project: Project, tmp_path: Path) -> None:
    leftover = project.root / "images" / "cell.png"
    leftover.write_bytes(b"a crash left this; no row refers to it")
    rgb, _ = cell_image()
    record = _import(project, write_rgb_png(tmp_path / "cell.png", rgb)).record
    assert record.name == f"cell__{record.sha256[:8]}"
    assert leftover.read_bytes().startswith(b"a crash left")
    assert file_sha256(project.image_path(record)) == record.sha256


def test_a_source_that_changes_during_import_is_refused(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    path = write_rgb_png(tmp_path / "cell.png", rgb)
    info, sha = read_image(path).info, file_sha256(path)
    write_rgb_png(path, rgb[::-1])  # changed after it was hashed
    with pytest.raises(ImageReadError, match="changed while it was being imported"):
        project.import_file(path, info, sha, actor="t")
    assert project.images() == [] and not list((project.root / "images").iterdir())


@pytest.mark.parametrize("damage", ["delete", "overwrite"])
def test_reimport_restores_a_missing_or_damaged_copy(
    project: Project, tmp_path: Path, damage: str
) -> None:
    rgb, _ = cell_image()
    path = write_rgb_png(tmp_path / "cell.png", rgb)
    record = _import(project, path).record
    stored = project.image_path(record)
    if damage == "delete":
        stored.unlink()
    else:
        stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    problem = project.image_problem(record)
    assert problem is not None and ("missing" if damage == "delete" else "damaged") in problem
    with pytest.raises(ImageReadError, match="import its source again"):
        project.load_image(record)
    outcome = _import(project, path)
    assert outcome.status == "restored" and outcome.record.id == record.id
    assert project.image_problem(record) is None
    assert np.array_equal(project.load_image(record).rgb, rgb)
    assert project.audit_entries()[-1].action == "restore_image"
    assert _import(project, path).status == "present"  # intact now: nothing more to do


def test_linked_source_is_rechecked_and_relinked(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    path = write_rgb_png(tmp_path / "cell.png", rgb)
    record = _import(project, path, copy=False).record
    assert record.stored_path is None
    write_rgb_png(path, rgb[::-1])  # the source was edited after import
    with pytest.raises(ImageReadError, match="linked source file changed since it was imported"):
        project.load_image(record)
    moved = write_rgb_png(tmp_path / "moved" / "cell.png", rgb)  # the original, elsewhere
    path.unlink()
    assert "linked source file is missing" in (project.image_problem(record) or "")
    outcome = _import(project, moved, copy=False)
    assert outcome.status == "restored" and outcome.record.source_path == str(moved.resolve())
    assert np.array_equal(project.load_image(outcome.record).rgb, rgb)


def test_hostile_image_name_never_leads_outside(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    record = _import(project, write_rgb_png(tmp_path / "cell.png", rgb)).record
    _tamper(project, "UPDATE images SET name = ? WHERE id = ?", "../../escaped", record.id)
    hostile = project.image(record.id)
    with pytest.raises(UnsafePathError, match="not a plain file name"):
        project.save_mask(hostile.id, np.zeros(rgb.shape[:2], np.uint8), "auto", actor="t")
    with pytest.raises(UnsafePathError):
        PredictionStore(project).save_heatmap(
            hostile.id, "cls-1", "gradcam", "NILM", np.zeros(rgb.shape[:2]), {}
        )
    assert not (tmp_path / "escaped").exists() and not (project.root / "escaped").exists()
    assert project.mask_versions(hostile.id) == []


def test_hostile_stored_path_is_not_read(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    record = _import(project, write_rgb_png(tmp_path / "cell.png", rgb)).record
    outside = write_rgb_png(tmp_path / "outside.png", rgb)
    _tamper(project, "UPDATE images SET stored_path = ? WHERE id = ?", "../outside.png", record.id)
    with pytest.raises(ImageReadError, match="leads outside"):
        project.load_image(project.image(record.id))
    assert outside.exists()


def test_images_catalogued_before_orientation_keep_their_pixels(
    project: Project, tmp_path: Path
) -> None:
    rgb, _ = cell_image(h=40, w=48)
    src = Image.fromarray(rgb)
    exif = src.getexif()
    exif[0x0112] = 6  # turned 90 degrees clockwise when shown
    path = tmp_path / "photo.jpg"
    src.save(path, quality=95, exif=exif.tobytes())
    record = _import(project, path).record
    assert (record.height, record.width, record.orientation) == (48, 40, 6)
    assert project.load_image(record).rgb.shape == (48, 40, 3)
    _tamper(project, "UPDATE images SET orientation = NULL, width = 48, height = 40")
    old = project.image(record.id)  # as an older CytoReview catalogued it
    assert project.load_image(old).rgb.shape == (40, 48, 3)
    project.save_mask(old.id, np.zeros((40, 48), np.uint8), Provenance.MANUAL, actor="t")
