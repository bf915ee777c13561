"""One missing or damaged image is skipped and named; the rest of the job goes on.

Report, training data, predictions export and measurements each meet a project where one
image's file was deleted and another's was damaged on disk; re-importing the source puts both
back. (Auto-segmentation is checked with a trained model in ``test_segmentation.py``.)
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cytoreview.storage.project import Project
from cytoreview.workflows.export import export_predictions
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.report import write_report
from cytoreview.workflows.review_data import measure_project
from cytoreview.workflows.segmentation import _load_training_data
from tests.conftest import run_job


@pytest.fixture
def broken(project: Project, image_folder: Path) -> tuple[Project, Path]:
    """Six images with masks; ``hsil_0``'s file deleted, ``nilm_2``'s damaged."""
    run_job(
        import_images(project, image_folder, actor="t", masks_dir=image_folder.parent / "masks")
    )
    project.image_path(project.image("hsil_0")).unlink()
    damaged = project.image_path(project.image("nilm_2"))
    damaged.write_bytes(damaged.read_bytes()[:-8] + bytes(8))
    return project, image_folder


def _named_once(lines: list[str], name: str, words: str) -> None:
    hits = [line for line in lines if name in line]
    assert len(hits) == 1, (name, lines)
    assert words in hits[0] and "\n" not in hits[0]


def test_report_skips_and_names_them(broken: tuple[Project, Path], tmp_path: Path) -> None:
    project, _ = broken
    events, result = run_job(write_report(project, tmp_path / "report"))
    warnings = [e.message for e in events if e.level == "warning"]
    _named_once(warnings, "hsil_0", "missing")
    _named_once(warnings, "nilm_2", "damaged")
    page = (result.out / "report.html").read_text()
    assert "hsil_0" in page and "nilm_2" in page  # named in the report's notes too


def test_training_data_leaves_them_out(broken: tuple[Project, Path]) -> None:
    project, _ = broken
    names, _, images, masks, _, skipped = _load_training_data(project)
    assert sorted(names) == ["hsil_1", "hsil_2", "nilm_0", "nilm_1"]
    assert len(images) == len(masks) == 4 and len(skipped) == 2
    _named_once(skipped, "hsil_0", "left out of training")
    _named_once(skipped, "nilm_2", "left out of training")


def test_predictions_export_keeps_their_rows_without_measurements(
    broken: tuple[Project, Path], tmp_path: Path
) -> None:
    project, _ = broken
    out = tmp_path / "predictions.csv"
    events, result = run_job(export_predictions(project, out))
    rows = {row["image"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
    assert len(rows) == 6 and rows["hsil_0"]["nucleus_area_px"] == ""
    assert float(rows["hsil_1"]["nucleus_area_px"]) > 0
    assert len(result.problems) == 2
    _named_once([e.message for e in events if e.level == "warning"], "hsil_0", "missing")


def test_reimport_restores_both(broken: tuple[Project, Path]) -> None:
    project, folder = broken
    problems: list[str] = []
    assert len(measure_project(project, problems=problems)) == 4 and len(problems) == 2
    _, report = run_job(import_images(project, folder, actor="t"))
    assert sorted(report.restored) == ["hsil_0", "nilm_2"] and report.added == []
    problems.clear()
    assert len(measure_project(project, problems=problems)) == 6 and problems == []
    assert all(project.image_problem(im) is None for im in project.images())
