"""Whole-slide segmentation: chunks with a halo, the label pyramid, the cell table, resuming."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.inference.segment import drop_absent_classes, field_probs, probs_to_result
from cytoreview.storage.project import Project
from cytoreview.storage.slide_results import LabelPyramid
from cytoreview.storage.slide_store import SlideStore
from cytoreview.storage.slides import write_pyramid_tiff
from cytoreview.types import CancelToken
from cytoreview.workflows.segmentation import SegTrainRequest, load_predictor, train_segmentation
from cytoreview.workflows.slide_segmentation import segment_slide
from tests.conftest import run_job
from tests.workflows.test_fields_and_nuclei import _fields_project

SHAPE = (640, 896)


@pytest.fixture(scope="module")
def slide_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a tiny fields model and a registered synthetic slide (0.5 um/px)."""
    root = tmp_path_factory.mktemp("slideseg")
    project = _fields_project(root, nucleus_only=False)
    try:
        # Trained long enough to be sure of most pixels: after 3 epochs the network is near a
        # tie almost everywhere, and comparing chunks with the whole region then tests noise.
        request = SegTrainRequest(epochs=15, input_size=128, patience=15, seed=0)
        _, report = run_job(train_segmentation(project, request, actor="t"))
        assert report.status == "finished"
        pixels, _ = SyntheticSlide(*SHAPE, seed=5, field=224, empty_fraction=0.3).region(
            0, 0, *SHAPE
        )
        path = write_pyramid_tiff(
            root / "slide.svs", pixels, levels=2, pixel_size_um=0.5, flavour="aperio"
        )
        SlideStore(project).register(path, actor="t")
    finally:
        project.close()
    return root / "proj"


def _copy(src: Path, dst: Path) -> Project:
    shutil.copytree(src, dst)
    return Project.open(dst)


def _labels(project: Project) -> np.ndarray:
    store = SlideStore(project)
    folder = store.results_dir(store.slide("slide")) / "segmentation"
    return np.asarray(LabelPyramid(folder / "labels.ome.zarr").level(0)[:])


def test_a_slide_is_segmented_chunk_by_chunk_without_seams(
    slide_project: Path, tmp_path: Path
) -> None:
    project = _copy(slide_project, tmp_path / "p")
    try:
        job = segment_slide(project, "slide", actor="t", chunk=256, halo=48, skip_glass=False)
        _, report = run_job(job)
        assert report.chunks_total == 3 * 4 and report.chunks_with_tissue == 12
        assert not report.cancelled and report.level == 0
        labels = _labels(project)
        assert labels.shape == SHAPE and set(np.unique(labels)) <= {0, 1, 2}
        # The same model on the whole region at once: the chunks' seams must not show.
        _, predictor, spec = load_predictor(project, None)
        with SlideStore(project).open(SlideStore(project).slide("slide")) as slide:
            whole = slide.read_region(0, 0, 0, *SHAPE)
        reference = probs_to_result(
            drop_absent_classes(field_probs(whole, predictor, spec), spec), spec.postprocess
        ).mask
        agreement = float((labels == reference).mean())
        assert agreement > 0.99, agreement
        # Pyramid: NGFF metadata, every level half the one above.
        pyramid = LabelPyramid(Path(report.labels_path))
        assert pyramid.n_levels() == 3  # 896 -> 448 -> 224 px: the last fits one 256 px chunk
        assert pyramid.level(1).shape == (320, 448) and pyramid.level(2).shape == (160, 224)
        assert np.array_equal(np.asarray(pyramid.level(1)[:]), labels[::2, ::2])
        # Cell table: one row per cell, centroids inside the slide, areas in um2 at 0.5 um/px.
        with open(report.cells_path, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == report.cells > 0
        for row in rows:
            assert 0 <= float(row["centroid_x"]) < SHAPE[1]
            assert float(row["nucleus_area_um2"]) == pytest.approx(
                int(row["nucleus_area_px"]) * 0.25, abs=1e-3
            )
        assert [int(r["cell"]) for r in rows] == list(range(1, len(rows) + 1))
    finally:
        project.close()


def test_a_stopped_run_resumes_to_the_same_result(slide_project: Path, tmp_path: Path) -> None:
    whole = _copy(slide_project, tmp_path / "whole")
    stopped = _copy(slide_project, tmp_path / "stopped")
    try:
        kwargs = {"actor": "t", "chunk": 256, "halo": 48, "skip_glass": False}
        _, full = run_job(segment_slide(whole, "slide", **kwargs))
        token = CancelToken()
        job = segment_slide(stopped, "slide", cancel=token, **kwargs)
        for event in job:
            if event.step >= 5:
                token.cancel()
        part = _labels(stopped)
        _, again = run_job(segment_slide(stopped, "slide", **kwargs))
        assert 5 <= again.chunks_resumed < 12
        assert np.array_equal(_labels(stopped), _labels(whole))
        assert not np.array_equal(part, _labels(whole))  # the first run really stopped early
        assert Path(again.cells_path).read_bytes() == Path(full.cells_path).read_bytes()
        # A region: only the chunks it meets (level-0 box across four 256 px cores).
        _, part = run_job(segment_slide(stopped, "slide", region=(200, 200, 100, 100), **kwargs))
        assert part.chunks_with_tissue == 4 and part.chunks_resumed == 0
        labels = _labels(stopped)
        assert not labels[512:].any() and not labels[:, 512:].any()
        # Changing a parameter starts afresh rather than mixing two runs.
        _, fresh = run_job(segment_slide(stopped, "slide", **{**kwargs, "halo": 32}))
        assert fresh.chunks_resumed == 0
    finally:
        whole.close()
        stopped.close()


def test_a_killed_run_resumes_to_the_same_result(slide_project: Path, tmp_path: Path) -> None:
    """SIGKILL the command at a random chunk (no clean-up runs), then run it again."""
    import os
    import random
    import signal
    import subprocess
    import sys

    whole = _copy(slide_project, tmp_path / "whole")
    try:
        run_job(segment_slide(whole, "slide", actor="t", chunk=256, halo=48, skip_glass=False))
        expected = _labels(whole)
        expected_cells = (tmp_path / "whole/slides/slide/segmentation/cells.csv").read_bytes()
    finally:
        whole.close()
    killed = tmp_path / "killed"
    shutil.copytree(slide_project, killed)
    command = [
        sys.executable, "-m", "cytoreview", "-v", "segment-slide", str(killed), "slide",
        "--chunk", "256", "--halo", "48", "--all-tiles",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kill_after = random.Random().randint(1, 10)  # chunks done before the kill
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        seen += b"chunk " in line and b" done" in line
        if seen >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed" in again.stdout, again.stdout
    with Project.open(killed) as project:
        assert np.array_equal(_labels(project), expected), f"killed after {kill_after} chunks"
    cells = (killed / "slides/slide/segmentation/cells.csv").read_bytes()
    assert cells == expected_cells


def test_slide_results_export_for_qupath(slide_project: Path, tmp_path: Path) -> None:
    import json

    import tifffile

    from cytoreview.workflows.slide_export import export_slide
    from cytoreview.workflows.slides import cut_regions
    from tests.geojson_spec import collection_problems

    project = _copy(slide_project, tmp_path / "p")
    try:
        _, seg = run_job(
            segment_slide(project, "slide", actor="t", chunk=256, halo=64, skip_glass=False)
        )
        (crop,) = cut_regions(project, "slide", [(64, 96, 128, 160)], actor="t")
        truth = np.zeros((128, 160), np.uint8)
        truth[30:90, 40:120] = 1
        truth[50:70, 70:90] = 2
        project.set_class(crop.id, "HSIL", actor="t")
        from cytoreview.types import Provenance

        project.save_mask(crop.id, truth, Provenance.MANUAL, actor="t")
        _, report = run_job(export_slide(project, "slide", tmp_path / "out", tiff=True))
        data = json.loads(Path(report.geojson).read_text(encoding="utf-8"))
        assert collection_problems(data) == []
        assert data["slide"] == "slide"
        features = data["features"]
        segmented = [f for f in features if f["properties"]["metadata"].get("source")]
        assert len(segmented) == report.segmented_cells > 0
        # Each segmented cell exactly once: the table has as many cells as the export.
        assert report.segmented_cells == seg.cells
        (cut,) = [f for f in features if f["properties"]["metadata"].get("image") == crop.name]
        assert cut["properties"]["classification"]["name"] == "HSIL"
        xs = [p[0] for p in cut["geometry"]["coordinates"][0]]
        ys = [p[1] for p in cut["geometry"]["coordinates"][0]]
        assert (min(xs), max(xs), min(ys), max(ys)) == (96 + 40, 96 + 120, 64 + 30, 64 + 90)
        assert "nucleusGeometry" in cut
        with tifffile.TiffFile(report.tiff) as tif:
            assert tif.is_ome and len(tif.series[0].levels) == 3
            assert np.array_equal(tif.series[0].asarray(), _labels(project))
    finally:
        project.close()


@pytest.mark.slow
def test_an_ome_tiff_slide_end_to_end_on_two_workers(slide_project: Path, tmp_path: Path) -> None:
    """The command line as a user runs it: import an OME-TIFF, cut cells, segment the slide on
    a LocalCluster of 2 worker processes, export for QuPath."""
    import json
    import subprocess
    import sys

    from tests.geojson_spec import collection_problems

    project = tmp_path / "p"
    shutil.copytree(slide_project, project)
    pixels, _ = SyntheticSlide(768, 1024, seed=9, field=256).region(0, 0, 768, 1024)
    slide = write_pyramid_tiff(tmp_path / "case 2.ome.tif", pixels, levels=2, pixel_size_um=0.5)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cytoreview", *args], capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "1 slide(s) registered" in cli("import", str(project), str(slide))
    found = cli("find-cells", str(project), "case 2", "--method", "otsu", "--max-cells", "4")
    assert "Otsu" in found and "4 crop(s) of 128 px cut" in found  # 64 um at 0.5 um/px
    out = cli("segment-slide", str(project), "case 2", "--chunk", "256", "--scheduler", "local",
              "--workers", "2")  # fmt: skip
    assert "LocalCluster: 2 worker processes" in out and "cell(s)" in out
    cli("export-slide", str(project), "case 2", "--out", str(tmp_path / "qupath"))
    data = json.loads((tmp_path / "qupath" / "case 2.geojson").read_text(encoding="utf-8"))
    assert collection_problems(data) == [] and data["features"]
    assert cli("slides", str(project)).count("crop(s)") == 2
