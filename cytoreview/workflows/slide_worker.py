"""The per-tile functions of the slide jobs: pure, importable, run here or on Dask workers.

Each function gets one small item (a chunk or a tile: coordinates), the model as shared bytes
(see :mod:`cytoreview.workflows.executors`) and a small job description; it opens the slide by
path (read-only, once per process), reads its window, computes, and returns arrays and small
records. It never opens the catalog: the process that owns the project writes the results.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cytoreview.data.tissue import Tile
from cytoreview.inference.cell_finder import CellCandidate, find_cells_in_tile
from cytoreview.inference.segment import drop_absent_classes, field_probs
from cytoreview.inference.slide_segment import Chunk, ChunkResult, segment_chunk
from cytoreview.storage.slides import Slide, open_slide
from cytoreview.workflows.executors import Shared
from cytoreview.workflows.segment_worker import SegmentJob, job_predictor

__all__ = ["FindJob", "SlideSegJob", "find_tile_cells", "segment_slide_chunk"]


@functools.lru_cache(maxsize=4)
def _slide(path: str) -> Slide:
    """The slide at ``path``, opened once per process (a worker reads many of its tiles)."""
    return open_slide(path)


@dataclass(frozen=True)
class SlideSegJob:
    """How each chunk of a slide segmentation runs (travels with every chunk).

    Attributes
    ----------
    slide_path
        The slide file (workers must see it at this path).
    level
        The level segmented.
    downsample
        Its level-0 px per px.
    pixel_size_um
        Its micrometres per pixel (None: unknown).
    segment
        The model's runtime (engine, precision, threads, spec).
    """

    slide_path: str
    level: int
    downsample: float
    pixel_size_um: float | None
    segment: SegmentJob


def segment_slide_chunk(chunk: Chunk, model: Shared, *, job: SlideSegJob) -> ChunkResult:
    """Read one chunk's window of the slide and segment it (see :func:`segment_chunk`)."""
    rgb = _slide(job.slide_path).read_region(
        job.level, chunk.read_y, chunk.read_x, chunk.read_height, chunk.read_width
    )
    return segment_chunk(
        rgb,
        chunk,
        job_predictor(model, job.segment),
        job.segment.spec,
        pixel_size_um=job.pixel_size_um,
        level_downsample=job.downsample,
    )


@dataclass(frozen=True)
class FindJob:
    """How each tile of the cell finder runs.

    Attributes
    ----------
    slide_path
        The slide file.
    halo
        Margin read around each tile's core (level-0 px).
    pixel_size_um
        Micrometres per level-0 pixel (None: unknown).
    white
        The glass colour (RGB) measured on the thumbnail.
    segment
        The segmenter's runtime when nuclei come from the model; None: the Otsu detector.
    """

    slide_path: str
    halo: int
    pixel_size_um: float | None
    white: tuple[float, float, float]
    segment: SegmentJob | None = None


def find_tile_cells(tile: Tile, *model: Shared, job: FindJob) -> list[CellCandidate]:
    """The candidate cells one tile answers for, in level-0 px.

    See :func:`~cytoreview.inference.cell_finder.find_cells_in_tile`; ``model`` is the
    segmenter's shared bytes when ``job.segment`` is set, else nothing.
    """
    w = tile.window
    rgb = _slide(job.slide_path).read_region(0, w.y, w.x, w.h, w.w)
    nucleus_fn = None
    if job.segment is not None:
        predictor = job_predictor(model[0], job.segment)
        spec = job.segment.spec

        def nucleus_fn(image: np.ndarray) -> np.ndarray:
            return drop_absent_classes(field_probs(image, predictor, spec), spec)

    return find_cells_in_tile(
        rgb,
        tile.core,
        job.halo,
        nucleus_prob_fn=nucleus_fn,
        pixel_size_um=job.pixel_size_um,
        white=np.asarray(job.white, np.float32),
    )
