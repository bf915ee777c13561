"""The cell finder on a registered slide: crops cut into the project, merged, re-cut, stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.storage.project import Project
from cytoreview.storage.slide_results import candidates_path, read_candidates
from cytoreview.storage.slide_store import SlideStore
from cytoreview.storage.slides import write_pyramid_tiff
from cytoreview.types import CancelToken
from cytoreview.workflows.cell_finder import find_cells, recut_cells
from tests.conftest import run_job

SIDE = 2048


@pytest.fixture
def slide_project(tmp_path: Path) -> tuple[Project, np.ndarray]:
    synthetic = SyntheticSlide(SIDE, SIDE, seed=11, field=512, empty_fraction=0.3)
    pixels, labels = synthetic.region(0, 0, SIDE, SIDE)
    path = write_pyramid_tiff(tmp_path / "s.svs", pixels, levels=3, pixel_size_um=0.25,
                              flavour="aperio")  # fmt: skip
    project = Project.init(tmp_path / "p", actor="t")
    SlideStore(project).register(path, actor="t")
    yield project, labels
    project.close()


def test_cells_are_found_and_cut_around_the_true_nuclei(slide_project) -> None:
    project, labels = slide_project
    events, report = run_job(find_cells(project, "s", actor="t"))
    assert "Otsu" in report.method and "no segmenter" in report.method
    assert report.cells_cut == len(project.images()) > 10
    assert report.crop_px == 256  # 64 um at 0.25 um/px
    nuclei, n = ndi.label(labels == 2)
    centres = np.array(ndi.center_of_mass(np.ones_like(nuclei), nuclei, range(1, n + 1)))
    covered = np.zeros(n, bool)
    for image in project.images():
        assert (image.slide_level, image.width, image.height) == (0, 256, 256)
        assert image.pixel_size_um == pytest.approx(0.25)
        y, x = image.slide_y, image.slide_x
        covered |= (
            (centres[:, 0] >= y) & (centres[:, 0] < y + 256)
            & (centres[:, 1] >= x) & (centres[:, 1] < x + 256)
        )  # fmt: skip
    assert covered.mean() >= 0.9, covered.mean()  # crops reach the true cells
    # Merged: no two stored candidates within the merge distance (10 um = 40 px).
    store = SlideStore(project)
    kept = np.array(read_candidates(candidates_path(store.results_dir(store.slide("s")))))
    assert len(kept) == report.candidates - report.merged == report.cells_cut
    centres_kept = kept[:, :2]
    gaps = np.sqrt(((centres_kept[:, None] - centres_kept[None]) ** 2).sum(-1))
    assert (gaps + np.eye(len(kept)) * 1e9).min() >= 40
    assert any("tile" in e.message for e in events)
    # Running it again finds the same cells: nothing new is cut.
    _, again = run_job(find_cells(project, "s", actor="t"))
    assert again.cells_cut == 0 and again.already_cut == report.cells_cut


def test_candidates_are_re_cut_at_another_size(slide_project) -> None:
    project, _ = slide_project
    _, first = run_job(find_cells(project, "s", actor="t", max_cells=5))
    assert first.cells_cut == 5 and first.candidates - first.merged > 5
    _, recut = run_job(recut_cells(project, "s", actor="t", crop_um=32, max_cells=5))
    assert recut.cells_cut == 5 and recut.crop_px == 128
    sizes = sorted({(im.width, im.height) for im in project.images()})
    assert sizes == [(128, 128), (256, 256)]


def test_the_cell_finder_stops_and_keeps_what_it_cut(slide_project) -> None:
    project, _ = slide_project
    token = CancelToken()
    job = find_cells(project, "s", actor="t", cancel=token)
    for event in job:
        if event.stage == "cut" and event.step >= 3:
            token.cancel()
    images = project.images()
    assert 3 <= len(images) < 20
