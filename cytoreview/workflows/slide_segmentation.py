"""Segmenting a whole slide: tissue first, then chunk by chunk, resumable, on any executor.

1. A tissue mask on a low-resolution level, so empty glass is never read at full resolution.
2. The level is cut into cores with a halo (:func:`cytoreview.inference.slide_segment.chunk_grid`);
   the cores with tissue are segmented at native resolution by a pure per-chunk function that
   runs in this process or on Dask workers (the model's ONNX bytes are shipped to each worker
   once).
3. This process alone writes: each chunk's labels into the OME-Zarr label pyramid, then its line
   in the manifest; at the end the lower pyramid levels and the per-cell table.

Killed at any moment and run again with the same parameters, the run skips the chunks its
manifest lists and gives a result identical to an uninterrupted run (tested).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from cytoreview.data.tissue import glass_white, tissue_mask
from cytoreview.defaults import SLIDE
from cytoreview.errors import ConfigError
from cytoreview.inference.slide_segment import (
    CELL_COLUMNS,
    Chunk,
    chunk_grid,
    chunks_with_tissue,
)
from cytoreview.storage.project import Project
from cytoreview.storage.slide_results import LabelPyramid, SegmentationRun, write_cell_table
from cytoreview.storage.slide_store import SlideRecord, SlideStore
from cytoreview.storage.slides import Slide
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.executors import Executor, ExecutorSpec, using
from cytoreview.workflows.segmentation import choose_segmenter
from cytoreview.workflows.slide_worker import SlideSegJob, segment_slide_chunk


@dataclass
class SlideSegReport:
    """What a slide segmentation did."""

    slide: str
    model_id: str
    level: int
    shape: tuple[int, int]
    chunks_total: int = 0
    chunks_with_tissue: int = 0
    chunks_done: int = 0
    chunks_resumed: int = 0
    cells: int = 0
    seconds: float = 0.0
    megapixels: float = 0.0
    executor: str = "this process"
    labels_path: str = ""
    cells_path: str = ""
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for a person."""
        if self.cancelled:
            return (
                f"slide {self.slide}: stopped after {self.chunks_done} of "
                f"{self.chunks_with_tissue} chunk(s); run the same command again to resume"
            )
        rate = self.megapixels / self.seconds if self.seconds else 0.0
        resumed = f" ({self.chunks_resumed} resumed)" if self.chunks_resumed else ""
        return (
            f"slide {self.slide}: {self.chunks_with_tissue} of {self.chunks_total} chunk(s) "
            f"hold tissue, segmented{resumed} at level {self.level} with {self.model_id} on "
            f"{self.executor} ({rate:.2f} MP/s); {self.cells} cell(s) -> {self.labels_path}"
        )


def working_level(project: Project, slide: SlideRecord) -> int:
    """The level a slide is segmented at by default.

    The level most of the slide's painted or cut crops were taken at (the model learnt
    nuclei at that scale); level 0 (native resolution) when nothing was cut from it yet.
    """
    levels = [c.slide_level for c in SlideStore(project).crops(slide) if c.slide_level is not None]
    if not levels:
        return 0
    values, counts = np.unique(levels, return_counts=True)
    return int(values[np.argmax(counts)])


def tissue_for(slide: Slide, pixel_size_um: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A boolean tissue mask of the whole slide, and the glass colour.

    Computed on the smallest level whose longest side is at least
    :attr:`~cytoreview.defaults.SlideRecipe.thumbnail_side` (or level 0 of a small slide).
    ``pixel_size_um`` is the level-0 pixel size (None: unknown).
    """
    candidates = [
        i for i, lv in enumerate(slide.levels) if max(lv.height, lv.width) >= SLIDE.thumbnail_side
    ]
    thumb_level = candidates[-1] if candidates else 0
    lv = slide.levels[thumb_level]
    thumb = slide.read_region(thumb_level, 0, 0, lv.height, lv.width)
    white = glass_white(thumb)
    size = pixel_size_um * lv.downsample if pixel_size_um else None
    mask = tissue_mask(thumb, pixel_size_um=size, white=white)
    return mask, white


def segment_slide(
    project: Project,
    slide_name: str,
    *,
    actor: str,
    model_id: str | None = None,
    level: int | None = None,
    chunk: int = SLIDE.chunk,
    halo: int | None = None,
    skip_glass: bool = True,
    region: tuple[int, int, int, int] | None = None,
    resume: bool = True,
    compute: ExecutorSpec | Executor | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, SlideSegReport]:
    """Segment a registered slide into its label pyramid and cell table; yield per chunk.

    Parameters
    ----------
    project
        The open project (the only writer).
    slide_name
        A registered slide.
    actor
        Who runs it (recorded in the run's parameters).
    model_id
        The segmenter (the current one by default).
    level
        Level to segment at; default :func:`working_level`.
    chunk
        Core side (and label chunk side).
    halo
        Context around each core in pixels; default from the pixel size
        (:meth:`~cytoreview.defaults.SlideRecipe.halo`).
    skip_glass
        Segment only the cores that the low-resolution tissue mask marks.
    region
        Only the cores that meet this ``(y, x, height, width)`` box of level-0 pixels (None:
        the whole slide). The labels outside it stay 0.
    resume
        Continue a run of the same parameters where it stopped (else start afresh).
    compute
        Where the chunks are computed: an :class:`ExecutorSpec` (None: the default rule, see
        :mod:`cytoreview.workflows.executors`) or an open executor.
    cancel
        Checked between chunks; what is finished stays and a later run resumes from it.
    """
    store = SlideStore(project)
    record = store.slide(slide_name)
    level = working_level(project, record) if level is None else level
    if not 0 <= level < len(record.levels):
        raise ConfigError(f"slide {record.name} has levels 0-{len(record.levels) - 1}, not {level}")
    choice = choose_segmenter(project, model_id)
    model_id, spec = choice.model_id, choice.spec
    lv = record.levels[level]
    shape = (lv.height, lv.width)
    pixel = record.level_pixel_size(level)
    halo = SLIDE.halo(pixel) if halo is None else halo
    report = SlideSegReport(record.name, model_id, level, shape)
    if not spec.fields:
        report.warnings.append(
            f"model {model_id} was trained on cell crops; whole-slide segmentation works best "
            "with a model trained on fields (cut regions, paint them, train again)"
        )
    run = SegmentationRun(store.results_dir(record) / "segmentation")
    params = {
        "slide": record.name, "sha256": record.sha256, "model_id": model_id, "level": level,
        "chunk": chunk, "halo": halo, "skip_glass": skip_glass, "pixel_size_um": pixel,
        "region": list(region) if region else None, "by": actor,
    }  # fmt: skip
    resumed = run.start(params, resume=resume)
    pyramid = LabelPyramid(run.labels_path)
    n_levels = _pyramid_levels(shape, chunk)
    pyramid.create(shape, chunk, n_levels, pixel, record.name)
    report.labels_path, report.cells_path = str(run.labels_path), str(run.cells_path)
    start = time.perf_counter()
    grid = chunk_grid(shape, chunk, halo)
    todo = grid if region is None else _meeting(grid, region, lv.downsample)
    if not todo:
        raise ConfigError(f"the region {region} lies outside slide {record.name}")
    if skip_glass:
        with store.open(record) as slide:
            tissue, _ = tissue_for(slide, record.pixel_size_um)
        todo = chunks_with_tissue(todo, tissue, shape)
    done = run.finished_chunks() if resumed else {}
    report.chunks_total, report.chunks_with_tissue = len(grid), len(todo)
    report.chunks_resumed = sum(1 for c in todo if c.index in done)
    pending = [c for c in todo if c.index not in done]
    for message in report.warnings:
        yield Progress("slide", 0, len(todo), message, level="warning")
    with using(compute, len(pending), gpus=choice.gpus) as executor:
        report.executor = executor.description
        yield Progress(
            "slide", report.chunks_resumed, len(todo),
            f"{record.name}: {len(todo)} of {len(grid)} chunk(s) hold tissue at level {level} "
            f"({shape[1]} x {shape[0]} px, halo {halo} px); {len(pending)} to do on "
            f"{executor.description}",
        )  # fmt: skip
        model = executor.share(choice.data)
        job = SlideSegJob(
            str(store.path(record)), level, lv.downsample, pixel,
            replace(choice.job, threads=executor.threads_per_task),
        )  # fmt: skip
        work = partial(segment_slide_chunk, job=job)
        finished = report.chunks_resumed
        for _, result in executor.map_unordered(work, pending, model, cancel=cancel):
            c = grid[result.index]
            pyramid.write(c.y, c.x, result.labels)
            run.record_chunk({"chunk": result.index, "cells": result.cells})
            finished += 1
            report.megapixels += c.height * c.width / 1e6
            yield Progress("slide", finished, len(todo), f"chunk {result.index} done")
    report.chunks_done = finished
    if finished < len(todo):  # stopped: what is finished stays for the next run
        report.cancelled = True
        report.seconds = time.perf_counter() - start
        return report
    pyramid.build_levels(n_levels)
    rows = _cell_rows(run.finished_chunks(), {c.index for c in todo})
    write_cell_table(run.cells_path, ("cell", *CELL_COLUMNS[1:]), rows)
    report.cells = len(rows)
    report.seconds = time.perf_counter() - start
    yield Progress("slide", len(todo), len(todo), report.summary)
    return report


def _meeting(chunks: list[Chunk], region: tuple[int, int, int, int], down: float) -> list[Chunk]:
    """The chunks whose core meets a box of level-0 pixels (chunks are in level pixels)."""
    y, x, h, w = (v / down for v in region)
    return [
        c
        for c in chunks
        if c.y < y + h and y < c.y + c.height and c.x < x + w and x < c.x + c.width
    ]


def _pyramid_levels(shape: tuple[int, int], chunk: int) -> int:
    """Levels until the smallest fits in one chunk."""
    levels, side = 1, max(shape)
    while side > chunk:
        side = -(-side // 2)
        levels += 1
    return levels


def _cell_rows(done: dict[int, dict[str, Any]], chunks: set[int]) -> list[dict[str, Any]]:
    """The cell table from the manifest: chunks in grid order, cells numbered from 1."""
    rows: list[dict[str, Any]] = []
    for index in sorted(i for i in done if i in chunks):
        for cell in done[index].get("cells", []):
            rows.append({"cell": len(rows) + 1, **cell})
    return rows
