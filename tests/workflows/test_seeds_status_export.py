"""Seed set, status counts and mask export on a small project."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.export import export_masks
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.seeds import pick_seeds
from cytoreview.workflows.status import project_status
from tests.conftest import cell_image, run_job, write_rgb_png


def drain(job):
    return run_job(job)[1]


def _populate(project: Project, root: Path, sizes: dict[str, int]) -> None:
    k = 0
    for label, n in sizes.items():
        for i in range(n):
            rgb, _ = cell_image(seed=k)
            write_rgb_png(root / label / f"{label}_{i}.png", rgb)
            k += 1
    write_rgb_png(root / "loose.png", cell_image(seed=999)[0])
    drain(import_images(project, root, actor="t"))


def test_seeds_are_stratified_and_reproducible(project: Project, tmp_path: Path) -> None:
    _populate(project, tmp_path / "src", {"NILM": 6, "LSIL": 4, "HSIL": 2})
    report = pick_seeds(project, actor="t", per_class=3, seed=5)
    assert {k: len(v) for k, v in report.picked.items()} == {
        "NILM": 3, "ASC-US": 0, "LSIL": 3, "HSIL": 2,
    }  # fmt: skip
    assert report.unlabelled_skipped == 1
    assert any("ASC-US: no labelled images" in w for w in report.warnings)
    assert any("HSIL: only 2" in w for w in report.warnings)
    first = sorted(im.name for im in project.images() if im.is_seed)
    pick_seeds(project, actor="t", per_class=3, seed=5)
    assert sorted(im.name for im in project.images() if im.is_seed) == first


def test_reseeding_keeps_painted_images(project: Project, tmp_path: Path) -> None:
    _populate(project, tmp_path / "src", {"NILM": 8})
    pick_seeds(project, actor="t", per_class=2, seed=0)
    painted = next(im for im in project.images() if im.is_seed)
    _, mask = cell_image()
    project.save_mask(painted.id, mask, Provenance.MANUAL, actor="dr_a")
    for seed in range(1, 6):
        pick_seeds(project, actor="t", per_class=2, seed=seed)
        seeds = [im.name for im in project.images() if im.is_seed]
        assert painted.name in seeds and len(seeds) == 2


def test_status_counts_quota_and_provenance(project: Project, tmp_path: Path) -> None:
    _populate(project, tmp_path / "src", {"NILM": 3, "HSIL": 2})
    pick_seeds(project, actor="t", per_class=2)
    seeds = [im for im in project.images() if im.is_seed]
    _, mask = cell_image()
    project.save_mask(seeds[0].id, mask, Provenance.MANUAL, actor="dr_a")
    others = [im for im in project.images() if not im.is_seed]
    project.save_mask(others[0].id, mask, Provenance.AUTO, actor="model")
    status = project_status(project)
    rows = {r.label: r for r in status.classes}
    assert (rows["NILM"].images, rows["HSIL"].images, status.unlabelled.images) == (3, 2, 1)
    assert status.total_images == 6 and status.seed_target == 2
    assert sum(r.seeds for r in status.classes) == 4
    assert sum(r.seeds_painted for r in status.classes) == 1
    rows_all = [*status.classes, status.unlabelled]
    total = {s: sum(r.masks[s] for r in rows_all) for s in rows_all[0].masks}
    assert total == {"none": 4, "manual": 1, "auto": 1, "corrected": 0, "approved": 0}
    assert rows["NILM"].revisable is False and rows["HSIL"].revisable is True
    assert any("ASC-US: no images" in w for w in status.warnings)
    assert any("1 image(s) have no class" in w for w in status.warnings)


def test_export_writes_current_masks(project: Project, tmp_path: Path) -> None:
    _populate(project, tmp_path / "src", {"NILM": 3})
    a, b, _ = project.images()[:3]
    _, mask = cell_image()
    project.save_mask(a.id, mask, Provenance.MANUAL, actor="dr_a")
    edited = mask.copy()
    edited[:5] = 0
    project.save_mask(a.id, edited, Provenance.CORRECTED, actor="dr_a")
    project.save_mask(b.id, mask, Provenance.AUTO, actor="m")
    report = drain(export_masks(project, tmp_path / "out"))
    assert report.written == 2 and report.provenance_counts == {"corrected": 1, "auto": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{a.name}.png", f"{b.name}.png"]
    )
    exported = cv2.imread(str(tmp_path / "out" / f"{a.name}.png"), cv2.IMREAD_UNCHANGED)
    assert exported.dtype == np.uint8 and np.array_equal(exported, edited)


def test_test_split_images_are_never_seeds(project: Project, tmp_path: Path) -> None:
    rows = ["path,class,split"]
    for i in range(6):
        write_rgb_png(tmp_path / "src" / f"c{i}.png", cell_image(seed=i)[0])
        rows.append(f"c{i}.png,HSIL,{'test' if i < 4 else 'train'}")
    (tmp_path / "src" / "labels.csv").write_text("\n".join(rows) + "\n")
    drain(import_images(project, tmp_path / "src" / "labels.csv", actor="t"))
    report = pick_seeds(project, actor="t", per_class=5)
    assert sorted(report.picked["HSIL"]) == ["c4", "c5"]  # the held-out four stay unseen
