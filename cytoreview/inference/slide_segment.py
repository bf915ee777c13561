"""Segmenting a whole slide chunk by chunk: a grid of cores read with a halo.

A slide does not fit in memory, so it is cut into square *cores* on a regular grid (aligned
with the label store's chunks, so each result is one whole chunk). Each core is read with a
*halo* of surrounding pixels, segmented at native resolution through the field path
(:func:`cytoreview.inference.tiling.predict_tiled`: overlapping model tiles blended with a
smooth window), cleaned, and only the core is kept. With a halo of at least half a cell, every
pixel of a core is decided with the context of its whole cell, and a cell cut by a core border
is seen whole by both neighbours, so the seams do not show.

A cell belongs to the core that holds its centroid, so each one is measured once; it is
measured on that chunk's labels (core and halo), where it lies whole.

Pure compute: arrays in, arrays and rows out. The per-chunk function runs in this process or on
a Dask worker alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cytoreview.inference.segment import (
    BatchPredictor,
    SegmenterSpec,
    drop_absent_classes,
    field_probs,
    probs_to_result,
)
from cytoreview.morphometry.measure import measure_image

#: Columns of the per-cell table, in order.
CELL_COLUMNS = (
    "cell", "chunk", "centroid_x", "centroid_y", "centroid_x_um", "centroid_y_um",
    "nucleus_area_px", "cytoplasm_area_px", "cell_area_px", "nucleus_area_um2",
    "cytoplasm_area_um2", "cell_area_um2", "nc_ratio", "nucleus_count", "nucleus_circularity",
)  # fmt: skip


@dataclass(frozen=True)
class Chunk:
    """One core of the grid and the box it is read with (pixels of the working level).

    Attributes
    ----------
    index
        Position in the grid, row-major: the manifest's key.
    y, x, height, width
        The core (clipped to the level).
    read_y, read_x, read_height, read_width
        The core grown by the halo, clipped to the level.
    """

    index: int
    y: int
    x: int
    height: int
    width: int
    read_y: int
    read_x: int
    read_height: int
    read_width: int

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """Where the core lies in the read box."""
        dy, dx = self.y - self.read_y, self.x - self.read_x
        return slice(dy, dy + self.height), slice(dx, dx + self.width)

    def owns(self, y: float, x: float) -> bool:
        """Whether a point of the read box (a cell's centroid) lies in the core.

        The one rule that gives each cell to exactly one chunk, for the cell table and the
        GeoJSON export alike.
        """
        core_y, core_x = self.core_in_read
        return core_y.start <= y < core_y.stop and core_x.start <= x < core_x.stop


def chunk_grid(shape: tuple[int, int], chunk: int, halo: int) -> list[Chunk]:
    """Cores of side ``chunk`` covering ``shape`` (row-major), each with its halo read box.

    Parameters
    ----------
    shape
        ``(height, width)`` of the level segmented.
    chunk
        Core side (>= 1): the label store's chunk side.
    halo
        Context read around each core (>= 0), clipped at the level's edges.
    """
    if chunk < 1 or halo < 0:
        raise ValueError(f"need chunk >= 1 and halo >= 0, got {chunk=}, {halo=}")
    height, width = shape
    cores = []
    for y in range(0, height, chunk):
        for x in range(0, width, chunk):
            h, w = min(chunk, height - y), min(chunk, width - x)
            ry, rx = max(0, y - halo), max(0, x - halo)
            rh, rw = min(height, y + h + halo) - ry, min(width, x + w + halo) - rx
            cores.append(Chunk(len(cores), y, x, h, w, ry, rx, rh, rw))
    return cores


def chunks_with_tissue(
    chunks: list[Chunk], tissue: np.ndarray, shape: tuple[int, int]
) -> list[Chunk]:
    """The chunks whose core holds tissue in a low-resolution mask of the whole level.

    ``tissue`` is a boolean mask of the level at any (smaller) size; a core is kept when any
    mask pixel under it is set (the mask is dilated by its maker, so cell borders count).
    """
    th, tw = tissue.shape
    sy, sx = th / shape[0], tw / shape[1]
    kept = []
    for c in chunks:
        y0, x0 = int(c.y * sy), int(c.x * sx)
        y1 = max(y0 + 1, int(np.ceil((c.y + c.height) * sy)))
        x1 = max(x0 + 1, int(np.ceil((c.x + c.width) * sx)))
        if tissue[y0:y1, x0:x1].any():
            kept.append(c)
    return kept


@dataclass
class ChunkResult:
    """What one chunk gives: its core's labels and the cells whose centroid lies in it."""

    index: int
    labels: np.ndarray
    cells: list[dict[str, Any]]


def segment_chunk(
    rgb: np.ndarray,
    chunk: Chunk,
    predict: BatchPredictor,
    spec: SegmenterSpec,
    *,
    pixel_size_um: float | None = None,
    level_downsample: float = 1.0,
) -> ChunkResult:
    """Segment one chunk's read box; keep its core; measure the cells it owns.

    Parameters
    ----------
    rgb
        ``(read_height, read_width, 3)`` uint8 pixels of the read box.
    chunk
        The chunk.
    predict
        The model (as for :func:`~cytoreview.inference.segment.predict_probs`).
    spec
        Its input size, tile overlap, working scale and classes.
    pixel_size_um
        Micrometres per pixel of the level segmented (None: areas in pixels only).
    level_downsample
        Level-0 pixels per pixel of that level: centroids are reported in level-0 pixels.

    Returns
    -------
    ChunkResult
        Core labels (uint8 0/1/2) and one row per owned cell (:data:`CELL_COLUMNS`).
    """
    expected = (chunk.read_height, chunk.read_width, 3)
    if rgb.shape != expected:
        raise ValueError(f"chunk {chunk.index}: pixels {rgb.shape}, expected {expected}")
    probs = drop_absent_classes(field_probs(rgb, predict, spec), spec)
    labels = probs_to_result(probs, spec.postprocess, spec.offsets).mask
    core = chunk.core_in_read
    return ChunkResult(
        chunk.index,
        np.ascontiguousarray(labels[core]),
        _owned_cells(labels, rgb, chunk, pixel_size_um, level_downsample),
    )


def _owned_cells(
    labels: np.ndarray,
    rgb: np.ndarray,
    chunk: Chunk,
    pixel_size_um: float | None,
    downsample: float,
) -> list[dict[str, Any]]:
    """Rows for the cells whose centroid lies in the core (measured on the whole read box)."""
    if not labels.any():
        return []
    # Cells as connected components, as the GeoJSON export draws them (one row per feature).
    measured = measure_image(labels, rgb, pixel_size_um=pixel_size_um, split_touching=False)
    um0 = pixel_size_um / downsample if pixel_size_um else None  # um per level-0 px
    um2 = pixel_size_um**2 if pixel_size_um else None  # um^2 per working-level px
    rows = []
    for cell in measured.cells:
        cy, cx = cell.centroid
        if not chunk.owns(cy, cx):
            continue
        x0, y0 = (chunk.read_x + cx) * downsample, (chunk.read_y + cy) * downsample
        rows.append(
            {
                "chunk": chunk.index,
                "centroid_x": round(x0, 2),
                "centroid_y": round(y0, 2),
                "centroid_x_um": _scaled(x0, um0, 3),
                "centroid_y_um": _scaled(y0, um0, 3),
                "nucleus_area_px": cell.nucleus_area_px,
                "cytoplasm_area_px": cell.cytoplasm_area_px,
                "cell_area_px": cell.cell_area_px,
                "nucleus_area_um2": _scaled(cell.nucleus_area_px, um2, 3),
                "cytoplasm_area_um2": _scaled(cell.cytoplasm_area_px, um2, 3),
                "cell_area_um2": _scaled(cell.cell_area_px, um2, 3),
                "nc_ratio": round(cell.nc_ratio, 4) if np.isfinite(cell.nc_ratio) else None,
                "nucleus_count": cell.nucleus_count,
                "nucleus_circularity": round(cell.nucleus_circularity, 4),
            }
        )
    return rows


def _scaled(value: float, factor: float | None, digits: int) -> float | None:
    """``value * factor`` rounded, or None when the factor (a pixel size) is unknown."""
    return None if factor is None else round(value * factor, digits)
