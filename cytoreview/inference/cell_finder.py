"""Candidate cells of a slide: nuclei found tile by tile, each placed in level-0 coordinates.

A candidate cell is a nucleus: it is what a Pap cell is judged by, and it is compact and dark,
so it is found far more reliably than the cell's faint, overlapping cytoplasm. Nuclei come from
a tile's probability map or label mask (the project's U-Net, or
:func:`cytoreview.data.nuclei_otsu.nucleus_labels_otsu` when there is no model yet), are split
where two touch, filtered by a plausible size and by the cell material around them, and
reported with a centroid, an area, a box and a score.

:func:`find_cells_in_tile` is the per-tile function a driver runs, in this process or on a
Dask worker: it takes arrays and returns small frozen dataclasses. Seams: each tile answers for
its core only (see :class:`cytoreview.data.tissue.Tile`); a nucleus is reported by the tile
whose core holds its centroid, and the halo around the core lets that tile see it whole.

Pure compute: no files, no catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from cytoreview.data.nuclei_otsu import nucleus_labels_otsu
from cytoreview.data.tissue import Box
from cytoreview.defaults import CELL_FINDER
from cytoreview.types import BACKGROUND, NUCLEUS

__all__ = ["CellCandidate", "NucleusInput", "find_cells_in_tile", "find_nuclei"]

#: Two nuclei are split only where their centres are at least this far apart (µm): less
#: would cut one lobed or elongated nucleus in two.
SPLIT_MIN_DISTANCE_UM = 2.0
#: The ring around a nucleus in which cell material is looked for (µm from its edge).
CONTEXT_RING_UM = (1.0, 3.0)

#: What :func:`find_nuclei` reads: a label mask (0/1/2), class probabilities ``(C, H, W)``
#: with nucleus at index 2, a nucleus probability ``(H, W)`` in [0, 1], or a bool mask.
NucleusInput = np.ndarray


@dataclass(frozen=True, slots=True)
class CellCandidate:
    """One candidate cell, found by its nucleus.

    Attributes
    ----------
    y, x
        The nucleus centroid (pixel centres at integers).
    area_px
        The nucleus area in px².
    bbox
        The nucleus's bounding box ``(y, x, h, w)``.
    score
        In [0, 1]: the mean nucleus probability where the input had one, else the share of
        the ring around the nucleus that is cell material (a nucleus inside its cytoplasm is
        more likely an epithelial cell than a naked nucleus or a leucocyte on glass).

    :func:`find_nuclei` reports them in its input's px, :func:`find_cells_in_tile` in level-0
    px.
    """

    y: float
    x: float
    area_px: float
    bbox: Box
    score: float


def _read_input(
    labels_or_prob: NucleusInput,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(nucleus mask, material mask or None, nucleus probability or None)``."""
    data = np.asarray(labels_or_prob)
    if data.ndim == 3:
        if data.shape[0] <= NUCLEUS:
            raise ValueError(f"class probabilities need >= 3 classes, got shape {data.shape}")
        winner = data.argmax(axis=0)
        return winner == NUCLEUS, winner != BACKGROUND, data[NUCLEUS].astype(np.float32)
    if data.ndim != 2:
        raise ValueError(f"expected labels (H, W) or probabilities (C, H, W), got {data.shape}")
    if data.dtype == bool:
        return data, None, None
    if np.issubdtype(data.dtype, np.floating):
        return data > 0.5, None, data.astype(np.float32)
    return data == NUCLEUS, data != BACKGROUND, None


def _split(nucleus: np.ndarray, min_distance_px: float) -> np.ndarray:
    """Label image of ``nucleus``, touching nuclei cut apart along the distance-map valley.

    Markers are the distance transform's local maxima at least ``min_distance_px`` apart and
    at least a quarter of that from the edge; a watershed of the inverted distance grows them
    back to the mask. One peak (a lone nucleus) gives its whole region back unchanged.
    """
    comp, n = ndi.label(nucleus, structure=np.ones((3, 3)))
    if n == 0:
        return comp
    distance = cv2.distanceTransform(nucleus.astype(np.uint8), cv2.DIST_L2, 5)
    peaks = peak_local_max(
        distance,
        min_distance=max(1, round(min_distance_px)),
        threshold_abs=max(0.5, min_distance_px / 4),
        labels=comp,
        exclude_border=False,
    )
    markers = np.zeros(comp.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A region too thin for a peak keeps its own marker (its centre), so it is not lost.
    unmarked = np.setdiff1d(np.arange(1, n + 1), comp[tuple(peaks.T)])
    if unmarked.size:
        spots = ndi.maximum_position(distance, comp, unmarked)
        markers[tuple(np.array(spots).T)] = np.arange(
            len(peaks) + 1, len(peaks) + 1 + unmarked.size
        )
    return watershed(-distance, markers, mask=nucleus)


def _ring_share(regions: np.ndarray, material: np.ndarray, px: float, n: int) -> np.ndarray:
    """Per region, the share of the ring :data:`CONTEXT_RING_UM` around it that is material."""
    inner, outer = (max(1, round(r / px)) for r in CONTEXT_RING_UM)
    grown = regions.astype(np.float32)  # labels up to 2**24 are exact in float32
    near = cv2.dilate(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inner + 1,) * 2))
    far = cv2.dilate(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outer + 1,) * 2))
    ring = (far > 0) & (near == 0)
    owner = far[ring].astype(np.int64)
    total = np.bincount(owner, minlength=n + 1)
    hits = np.bincount(owner, weights=material[ring], minlength=n + 1)
    return np.divide(hits, total, out=np.zeros(n + 1), where=total > 0)


def find_nuclei(
    labels_or_prob: NucleusInput,
    *,
    pixel_size_um: float | None = None,
    area_um2: tuple[float, float] = CELL_FINDER.nucleus_um2,
    area_px: tuple[float, float] = CELL_FINDER.nucleus_px,
    split: bool = True,
    min_context: float = CELL_FINDER.min_context,
) -> list[CellCandidate]:
    """Nuclei of one image as candidates, in that image's px.

    Steps, in this order: the nucleus mask (label 2, the nucleus class winning, or probability
    above 0.5); touching nuclei split (``split``; see :func:`_split`: one distance transform,
    one peak search and one watershed for the whole image); regions outside the plausible
    area dropped; where the input tells cell material from glass (labels or class
    probabilities), nuclei with less than ``min_context`` of the ring around them on material
    dropped.

    Parameters
    ----------
    labels_or_prob
        See :data:`NucleusInput`.
    pixel_size_um
        µm per pixel of this image; None: ``area_px`` is used, and the split distance and the
        context ring are set at the nominal 0.25 µm/px.
    area_um2, area_px
        Plausible nucleus area ``(min, max)``, in µm² (with a pixel size) or px² (without).
    split
        Cut touching nuclei apart.
    min_context
        0 keeps naked nuclei.

    Returns
    -------
    list[CellCandidate]
        Ordered by centroid (row, then column).
    """
    nucleus, material, prob = _read_input(labels_or_prob)
    px = CELL_FINDER.nominal_pixel_size_um if pixel_size_um is None else float(pixel_size_um)
    if pixel_size_um is None:
        low, high = area_px
    else:
        low, high = (a / px**2 for a in area_um2)
    if split:
        regions = _split(nucleus, SPLIT_MIN_DISTANCE_UM / px)
    else:
        regions = ndi.label(nucleus, structure=np.ones((3, 3)))[0]
    n = int(regions.max())
    if n == 0:
        return []
    flat = regions.ravel()
    areas = np.bincount(flat, minlength=n + 1).astype(np.float64)
    rows, cols = np.divmod(np.arange(flat.size), regions.shape[1])
    cy = np.bincount(flat, weights=rows, minlength=n + 1) / np.maximum(areas, 1)
    cx = np.bincount(flat, weights=cols, minlength=n + 1) / np.maximum(areas, 1)
    keep = (areas >= low) & (areas <= high)
    keep[0] = False
    context = _ring_share(regions, material, px, n) if material is not None else None
    if context is not None and min_context > 0:
        keep &= context >= min_context
    if prob is not None:
        score = np.bincount(flat, weights=prob.ravel(), minlength=n + 1) / np.maximum(areas, 1)
    elif context is not None:
        score = context
    else:
        score = np.ones(n + 1)
    slices = ndi.find_objects(regions)
    out = []
    for index in np.flatnonzero(keep):
        sy, sx = slices[index - 1]
        box = Box(sy.start, sx.start, sy.stop - sy.start, sx.stop - sx.start)
        score_i = float(np.clip(score[index], 0.0, 1.0))
        out.append(
            CellCandidate(float(cy[index]), float(cx[index]), float(areas[index]), box, score_i)
        )
    out.sort(key=lambda c: (c.y, c.x))
    return out


def find_cells_in_tile(
    rgb_tile: np.ndarray,
    box: tuple[int, int, int, int],
    halo: int,
    *,
    nucleus_prob_fn: Callable[[np.ndarray], NucleusInput] | None = None,
    pixel_size_um: float | None = None,
    downsample: float = 1.0,
    white: np.ndarray | None = None,
    area_um2: tuple[float, float] = CELL_FINDER.nucleus_um2,
    area_px: tuple[float, float] = CELL_FINDER.nucleus_px,
    split: bool = True,
    min_context: float = CELL_FINDER.min_context,
) -> list[CellCandidate]:
    """The candidate cells a tile answers for, in level-0 coordinates.

    Parameters
    ----------
    rgb_tile
        ``(H, W, 3)`` uint8: the tile's window, i.e. the core grown by ``halo`` and clipped to
        the slide (:attr:`cytoreview.data.tissue.Tile.window`), read at the pyramid level
        ``box`` is given in.
    box
        The core ``(y, x, h, w)`` in px of that level.
    halo
        Margin read around the core, in px of that level. The window's top-left corner is
        therefore ``(max(0, y - halo), max(0, x - halo))``.
    nucleus_prob_fn
        Maps the tile to a :data:`NucleusInput` of its size (the U-Net's class
        probabilities); None: :func:`~cytoreview.data.nuclei_otsu.nucleus_labels_otsu`.
    pixel_size_um
        µm per level-0 pixel; None when unknown (sizes then in px of this level).
    downsample
        Level-0 px per px of this level (1 at level 0).
    white
        The glass colour for the Otsu path (:func:`cytoreview.data.tissue.glass_white`).
    area_um2, area_px, split, min_context
        As for :func:`find_nuclei`.

    Returns
    -------
    list[CellCandidate]
        The nuclei whose centroid lies in the core, ordered by centroid; centroid, area and
        box in level-0 px (a pixel of this level covers ``downsample`` level-0 px).

    Raises
    ------
    ValueError
        When the tile does not cover its core, or the probability map is not its size.
    """
    y, x, h, w = (int(v) for v in box)
    top, left = max(0, y - halo), max(0, x - halo)
    if rgb_tile.ndim != 3 or rgb_tile.shape[0] < y + h - top or rgb_tile.shape[1] < x + w - left:
        raise ValueError(f"tile {rgb_tile.shape} does not cover core {box} with halo {halo}")
    level_px = None if pixel_size_um is None else float(pixel_size_um) * downsample
    if nucleus_prob_fn is None:
        nuclei_input = nucleus_labels_otsu(rgb_tile, pixel_size_um=level_px, white=white)
    else:
        nuclei_input = np.asarray(nucleus_prob_fn(rgb_tile))
        if nuclei_input.shape[-2:] != rgb_tile.shape[:2]:
            raise ValueError(
                f"nucleus map {nuclei_input.shape} does not match tile {rgb_tile.shape}"
            )
    found = find_nuclei(
        nuclei_input,
        pixel_size_um=level_px,
        area_um2=area_um2,
        area_px=area_px,
        split=split,
        min_context=min_context,
    )
    core = Box(y, x, h, w)
    out = []
    for c in found:
        cy, cx = c.y + top, c.x + left
        if not core.contains(cy, cx):
            continue  # a neighbour's core holds it: that tile reports it
        b = c.bbox
        level0_box = Box(*(round(v * downsample) for v in (b.y + top, b.x + left, b.h, b.w)))
        # Pixel i of this level covers level-0 [i * ds, (i + 1) * ds): its centre is at
        # (i + 0.5) * ds - 0.5 in level-0 pixel-centre coordinates.
        out.append(
            replace(
                c,
                y=(cy + 0.5) * downsample - 0.5,
                x=(cx + 0.5) * downsample - 0.5,
                area_px=c.area_px * downsample**2,
                bbox=level0_box,
            )
        )
    return out
