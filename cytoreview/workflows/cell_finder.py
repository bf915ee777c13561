"""The cell finder: candidate cells of a slide cut into the project as ordinary images.

1. Tissue first: a mask of material against glass on a low-resolution level; only the tiles
   under it are read at full resolution.
2. Each tile (a core read with a halo) is searched for nuclei: by the project's U-Net when it
   was trained on fields (it has learnt the nuclei at this scale), else by the model-free Otsu
   detector (:mod:`cytoreview.data.nuclei_otsu`). A nucleus is reported by the tile whose core
   holds its centroid, so tile seams never count a cell twice.
3. Candidates closer than a nucleus or two, or whose crops overlap too much, are merged.
4. A square crop centred on each candidate is cut at level 0 into the project (slide, level and
   corner kept); the candidates are stored, so the crops can be cut again at another size.

The per-tile search is pure and runs in this process or on Dask workers.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from cytoreview.choices import FINDER_METHODS
from cytoreview.data.tissue import Box, tiles_over_mask
from cytoreview.defaults import CELL_FINDER
from cytoreview.errors import ConfigError, NotEnoughDataError
from cytoreview.inference.cell_crops import crop_box, merge_duplicates
from cytoreview.inference.cell_finder import CellCandidate
from cytoreview.storage.project import Project
from cytoreview.storage.slide_results import candidates_path, read_candidates, write_candidates
from cytoreview.storage.slide_store import SlideRecord, SlideStore
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.executors import Executor, ExecutorSpec, using
from cytoreview.workflows.segmentation import SegmenterChoice
from cytoreview.workflows.slide_segmentation import tissue_for
from cytoreview.workflows.slide_worker import FindJob, find_tile_cells


@dataclass
class CellFinderReport:
    """What the cell finder did."""

    slide: str
    method: str
    tiles_total: int = 0
    tiles_with_tissue: int = 0
    candidates: int = 0
    merged: int = 0
    cells_cut: int = 0
    already_cut: int = 0
    crop_px: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    recut: bool = False

    @property
    def summary(self) -> str:
        """One line for a person."""
        stop = " — stopped; the crops cut so far are kept" if self.cancelled else ""
        if self.recut:
            return (
                f"slide {self.slide}: {self.candidates} stored candidate(s); "
                f"{self.cells_cut} crop(s) of {self.crop_px} px cut, {self.already_cut} already "
                f"there ({self.seconds:.0f} s){stop}"
            )
        return (
            f"slide {self.slide}: {self.candidates} candidate cell(s) found by {self.method} "
            f"on {self.tiles_with_tissue} of {self.tiles_total} tile(s) with tissue, "
            f"{self.merged} duplicate(s) merged; {self.cells_cut} crop(s) of {self.crop_px} px "
            f"cut, {self.already_cut} already there ({self.seconds:.0f} s){stop}"
        )


def crop_side(record: SlideRecord, crop_um: float | None) -> int:
    """A crop's side in level-0 px: ``crop_um`` (default from the defaults) at the pixel size."""
    if record.pixel_size_um:
        return max(32, round((crop_um or CELL_FINDER.crop_um) / record.pixel_size_um))
    if crop_um is not None:
        raise ConfigError(
            f"slide {record.name} has no pixel size; set it (cytoreview pixel-size PROJECT UM "
            f"--slide {record.name}) or give the crop side in pixels"
        )
    return CELL_FINDER.crop_px


def _nucleus_model(project: Project, method: str) -> tuple[str, SegmenterChoice | None]:
    """(the method's name in words, the segmenter that finds nuclei, or None for Otsu)."""
    if method not in FINDER_METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(FINDER_METHODS)}")
    if method == "otsu":
        return "the Otsu detector", None
    from cytoreview.workflows.segmentation import choose_segmenter

    try:
        choice = choose_segmenter(project, None)
    except NotEnoughDataError:
        if method == "model":
            raise
        return "the Otsu detector (no segmenter trained yet)", None
    if not choice.spec.fields and method == "auto":
        return f"the Otsu detector ({choice.model_id} was trained on crops, not fields)", None
    return f"the segmenter {choice.model_id}", choice


def find_cells(
    project: Project,
    slide_name: str,
    *,
    actor: str,
    method: str = "auto",
    crop_um: float | None = None,
    crop_px: int | None = None,
    max_cells: int | None = None,
    compute: ExecutorSpec | Executor | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, CellFinderReport]:
    """Find the cells of a slide and cut each into the project; yield per tile and per crop.

    Parameters
    ----------
    project
        The open project.
    slide_name
        A registered slide.
    actor
        Who cuts (audited on each crop).
    method
        ``auto`` (the segmenter when it was trained on fields, else Otsu), ``model`` or
        ``otsu``.
    crop_um, crop_px
        Crop side in micrometres (needs the pixel size) or pixels; default
        :attr:`~cytoreview.defaults.CellFinderDefaults.crop_um` (or ``crop_px`` without one).
    max_cells
        Cut at most this many (the highest-scoring); None: all.
    compute
        Where the tiles are searched: an :class:`ExecutorSpec` (None: the default rule, see
        :mod:`cytoreview.workflows.executors`) or an open executor.
    cancel
        Checked between tiles and crops; the crops cut so far stay.
    """
    store = SlideStore(project)
    record = store.slide(slide_name)
    side = crop_px or crop_side(record, crop_um)
    words, choice = _nucleus_model(project, method)
    report = CellFinderReport(record.name, words, crop_px=side)
    start = time.perf_counter()
    shape = (record.height, record.width)
    with store.open(record) as slide:
        tissue, white = tissue_for(slide, record.pixel_size_um)
        down = shape[0] / tissue.shape[0]
        tiles = tiles_over_mask(shape, tissue, down, CELL_FINDER.tile, CELL_FINDER.halo)
        n_grid = -(-shape[0] // CELL_FINDER.tile) * -(-shape[1] // CELL_FINDER.tile)
        report.tiles_total, report.tiles_with_tissue = n_grid, len(tiles)
        found: list[CellCandidate] = []
        with using(compute, len(tiles), gpus=choice.gpus if choice else 0) as executor:
            yield Progress(
                "find-cells", 0, len(tiles),
                f"{record.name}: {len(tiles)} of {n_grid} tile(s) hold tissue; searching them "
                f"with {words} on {executor.description}",
            )  # fmt: skip
            shared = () if choice is None else (executor.share(choice.data),)
            segment = None
            if choice is not None:
                segment = replace(choice.job, threads=executor.threads_per_task)
            job = FindJob(
                str(store.path(record)), CELL_FINDER.halo, record.pixel_size_um,
                tuple(float(v) for v in white), segment,
            )  # fmt: skip
            work = partial(find_tile_cells, job=job)
            results = executor.map_unordered(work, tiles, *shared, cancel=cancel)
            by_tile: dict[int, list[CellCandidate]] = {}
            for done, (index, cands) in enumerate(results, 1):
                by_tile[index] = cands
                found += cands
                yield Progress("find-cells", done, len(tiles), f"{len(found)} candidate(s) so far")
        # In tile order, whatever order the workers finished in: the merge is the same.
        found = [c for index in sorted(by_tile) for c in by_tile[index]]
        if len(by_tile) < len(tiles):  # stopped
            report.cancelled = True
            report.seconds = time.perf_counter() - start
            return report
        distance = _px(CELL_FINDER.merge_distance_um, record.pixel_size_um, 10.0)
        kept = merge_duplicates(found, distance, crop_size_px=side)
        report.candidates, report.merged = len(found), len(found) - len(kept)
        write_candidates(
            candidates_path(store.results_dir(record)),
            [(c.y, c.x, c.area_px, c.score) for c in kept],
        )
        yield from _cut(store, record, slide, kept, side, max_cells, actor, report, cancel)
    report.seconds = time.perf_counter() - start
    yield Progress("find-cells", 1, 1, report.summary)
    return report


def recut_cells(
    project: Project,
    slide_name: str,
    *,
    actor: str,
    crop_um: float | None = None,
    crop_px: int | None = None,
    max_cells: int | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, CellFinderReport]:
    """Cut the candidates found earlier again at another size (new images; the old stay)."""
    store = SlideStore(project)
    record = store.slide(slide_name)
    rows = read_candidates(candidates_path(store.results_dir(record)))
    if not rows:
        raise NotEnoughDataError(
            f"slide {record.name}: no cells found yet; run `cytoreview find-cells` first"
        )
    side = crop_px or crop_side(record, crop_um)
    report = CellFinderReport(record.name, "the stored candidates", crop_px=side, recut=True)
    report.candidates = len(rows)
    start = time.perf_counter()
    kept = [CellCandidate(y, x, a, Box(int(y), int(x), 1, 1), s) for y, x, a, s in rows]
    with store.open(record) as slide:
        yield from _cut(store, record, slide, kept, side, max_cells, actor, report, cancel)
    report.seconds = time.perf_counter() - start
    yield Progress("find-cells", 1, 1, report.summary)
    return report


def _px(um: float, pixel_size_um: float | None, fallback: float) -> float:
    return um / pixel_size_um if pixel_size_um else fallback


def _cut(
    store: SlideStore,
    record: SlideRecord,
    slide: Any,
    kept: list[CellCandidate],
    side: int,
    max_cells: int | None,
    actor: str,
    report: CellFinderReport,
    cancel: CancelToken | None,
) -> Iterator[Progress]:
    """Cut a crop around each candidate (best first when capped) into the project."""
    chosen = kept
    if max_cells is not None and len(kept) > max_cells:
        chosen = sorted(kept, key=lambda c: -c.score)[:max_cells]
    shape = (record.height, record.width)
    for i, cand in enumerate(chosen, 1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            return
        box = crop_box(cand, side, shape)
        rgb = slide.read_region(0, box.y, box.x, box.h, box.w)
        outcome = store.add_crop(record, rgb, level=0, x=box.x, y=box.y, actor=actor, kind="cell")
        if outcome.status == "added":
            report.cells_cut += 1
        else:
            report.already_cut += 1
        yield Progress("cut", i, len(chosen), f"{outcome.record.name}: {outcome.status}")
