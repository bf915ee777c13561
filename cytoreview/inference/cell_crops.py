"""Crops around candidate cells, and merging the candidates that would give the same crop.

A candidate keeps its nucleus centroid, not a crop: the crop is cut from it when needed, so the
same candidates can be cut again at another size (:func:`crop_box`). Duplicates arise where a
detector reports one nucleus twice (two pieces of a lobed nucleus, the two tiles of a seam
with different thresholds, a binucleate cell) or where two cells lie so close that their crops
show the same thing; :func:`merge_duplicates` keeps one of each such group.

Pure compute: no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from cytoreview.data.tissue import Box
from cytoreview.defaults import CELL_FINDER
from cytoreview.inference.cell_finder import CellCandidate

__all__ = ["crop_box", "crop_iou", "merge_duplicates"]


def crop_box(candidate: CellCandidate, size_px: int, slide_shape: tuple[int, int]) -> Box:
    """A square box of side ``size_px`` centred on the candidate, kept inside the slide.

    The box is centred on the centroid (to the nearest pixel); near an edge it is shifted
    inward rather than cut, so every crop has the asked size. Only a slide smaller than the
    crop gives a smaller side (the slide's).

    Parameters
    ----------
    candidate
        Anything with ``y`` and ``x`` (level-0 px, pixel centres at integers).
    size_px
        Side of the crop in level-0 px (>= 1).
    slide_shape
        ``(height, width)`` of level 0.

    Returns
    -------
    Box
        ``(y, x, h, w)`` with ``0 <= y``, ``y + h <= height`` (and the same across).
    """
    if size_px < 1:
        raise ValueError(f"a crop needs a side of at least 1 px, got {size_px}")
    out = []
    for centre, extent in ((candidate.y, slide_shape[0]), (candidate.x, slide_shape[1])):
        side = min(int(size_px), int(extent))
        # A box [start, start + side) has its centre at start + (side - 1) / 2; round that.
        start = math.floor(centre - (side - 1) / 2 + 0.5)
        out.append((min(max(0, start), extent - side), side))
    (y, h), (x, w) = out
    return Box(y, x, h, w)


def crop_iou(dy: np.ndarray | float, dx: np.ndarray | float, size_px: float) -> np.ndarray:
    """Intersection over union of two ``size_px`` squares whose centres are ``(dy, dx)`` apart.

    Slide edges are ignored: the overlap of what two crops would show, wherever they lie.
    """
    inter = np.maximum(0.0, size_px - np.abs(dy)) * np.maximum(0.0, size_px - np.abs(dx))
    return inter / (2.0 * size_px**2 - inter)


def merge_duplicates(
    candidates: Sequence[CellCandidate],
    min_distance_px: float,
    *,
    crop_size_px: float | None = None,
    max_iou: float = CELL_FINDER.merge_iou,
) -> list[CellCandidate]:
    """One candidate per group whose centroids are too close or whose crops overlap too much.

    Greedy, strongest first: candidates are taken by score (higher first; then larger nucleus,
    then top-most, then left-most, so that ties are broken the same way every time), and one
    is kept unless a kept candidate lies closer than ``min_distance_px`` or, with
    ``crop_size_px``, its crop overlaps a kept one's by more than ``max_iou``. Running it on
    its own result changes nothing: the kept candidates already pass these tests pairwise.

    Parameters
    ----------
    candidates
        In level-0 px, from any number of tiles.
    min_distance_px
        Centroids closer than this are one cell (e.g. a nucleus radius or two).
    crop_size_px
        The crop side; None: compare centroids only.
    max_iou
        Crops overlapping more than this are one.

    Returns
    -------
    list[CellCandidate]
        The kept candidates, ordered by centroid (row, then column).
    """
    if not candidates:
        return []
    points = np.array([(c.y, c.x) for c in candidates], np.float64)
    reach = float(min_distance_px)
    if crop_size_px is not None:
        # Two squares of side s overlap only if both offsets are below s: within s * sqrt(2).
        reach = max(reach, float(crop_size_px) * math.sqrt(2.0))
    tree = cKDTree(points)
    order = sorted(
        range(len(candidates)),
        key=lambda i: (-candidates[i].score, -candidates[i].area_px, points[i][0], points[i][1]),
    )
    kept = np.zeros(len(candidates), bool)
    for i in order:
        near = np.array([j for j in tree.query_ball_point(points[i], reach) if kept[j]], np.int64)
        if near.size:
            offset = points[near] - points[i]
            clash = np.hypot(offset[:, 0], offset[:, 1]) < min_distance_px
            if crop_size_px is not None:
                clash |= crop_iou(offset[:, 0], offset[:, 1], float(crop_size_px)) > max_iou
            if clash.any():
                continue
        kept[i] = True
    return sorted((candidates[i] for i in np.flatnonzero(kept)), key=lambda c: (c.y, c.x))
