"""Two writers on one project (two windows, or a window and a CLI job): an edit saved on top of a
version it did not start from is kept as the newest version, the other stays, and it is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytoreview.storage.project import Project
from cytoreview.storage.records import MaskVersion
from cytoreview.types import Provenance
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.mask_edits import edit_provenance, save_edit
from tests.conftest import run_job, write_rgb_png


def _project(tmp_path: Path) -> int:
    rgb = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    write_rgb_png(tmp_path / "src" / "NILM" / "cell.png", rgb)
    with Project.init(tmp_path / "p", actor="t") as project:
        run_job(import_images(project, tmp_path / "src", actor="t"))
        return project.image("cell").id


def test_edits_from_two_windows_never_overwrite_each_other_silently(tmp_path: Path) -> None:
    image_id = _project(tmp_path)
    a_mask, b_mask = np.zeros((32, 40), np.uint8), np.zeros((32, 40), np.uint8)
    a_mask[2:8, 2:8], b_mask[20:30, 20:30] = 1, 2
    with Project.open(tmp_path / "p") as window_a, Project.open(tmp_path / "p") as window_b:
        # Both opened the image with no mask (version 0) and painted.
        first = save_edit(window_a, image_id, a_mask, Provenance.MANUAL, actor="anna", based_on=0)
        assert not first.conflict and first.version.version == 1 and first.warning("cell") == ""
        second = save_edit(window_b, image_id, b_mask, Provenance.MANUAL, actor="ben", based_on=0)
        assert second.conflict and second.version.version == 2
        assert second.overtaken is not None and second.overtaken.author == "anna"
        line = second.warning("cell")
        assert "cell" in line and "v1" in line and "anna" in line and "\n" not in line
        # Window B goes on from its own version: no conflict.
        third = save_edit(window_b, image_id, b_mask, Provenance.MANUAL, actor="ben", based_on=2)
        assert not third.conflict
    with Project.open(tmp_path / "p") as project:
        versions = project.mask_versions(image_id)
        assert [(v.version, v.author) for v in versions] == [(1, "anna"), (2, "ben"), (3, "ben")]
        assert np.array_equal(project.read_mask_version(versions[0]), a_mask)  # never replaced
        assert np.array_equal(project.read_mask_version(versions[1]), b_mask)
        assert "edited from v0; the current version was v1 by anna" in versions[1].note
        saves = [e for e in project.audit_entries() if e.action == "save_mask"]
        assert [e.details.get("conflict", False) for e in saves] == [False, True, False]
        assert saves[1].details["based_on"] == 0


def test_a_cli_auto_mask_saved_while_a_person_paints_is_reported(tmp_path: Path) -> None:
    image_id = _project(tmp_path)
    mask = np.ones((32, 40), np.uint8)
    with Project.open(tmp_path / "p") as job, Project.open(tmp_path / "p") as window:
        job.save_mask(image_id, mask * 0, Provenance.AUTO, actor="segment", source_model="m1")
        edit = save_edit(window, image_id, mask, Provenance.MANUAL, actor="anna", based_on=0)
    assert edit.conflict and edit.overtaken.provenance is Provenance.AUTO
    assert edit.version.provenance is Provenance.MANUAL


def test_edit_provenance_rule() -> None:
    """``corrected`` when the edited mask descends from a model's, else ``manual``; the one
    rule the Annotate dock applies (it has none of its own)."""

    def v(kind: str) -> MaskVersion:
        return MaskVersion(1, 1, 1, "p", "s", Provenance(kind), "a", "t", None, None, None)

    assert edit_provenance([]) is Provenance.MANUAL
    assert edit_provenance([v("manual")]) is Provenance.MANUAL
    assert edit_provenance([v("auto")]) is Provenance.CORRECTED
    assert edit_provenance([v("auto"), v("corrected")]) is Provenance.CORRECTED
    assert edit_provenance([v("auto"), v("approved")]) is Provenance.CORRECTED
    assert edit_provenance([v("manual"), v("approved")]) is Provenance.MANUAL
    assert edit_provenance([v("auto"), v("manual")]) is Provenance.MANUAL
