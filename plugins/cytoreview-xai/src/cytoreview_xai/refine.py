"""GrabCut refinement of grouped relevance into one cell mask, and its uncertainty.

Sritharan et al. (section III-F and Algorithm 1) found the grouped relevance too coarse for a
mask and refine it with OpenCV's GrabCut, "applied separately to the nucleus and cytoplasm
masks", then "combined" into one pixel-wise map. The paper does not say how a group becomes
GrabCut's four-valued seed mask nor how many iterations it ran; this module's choices, for
each part (the nucleus = group 2; the cell = groups 1 and 2, cytoplasm plus nucleus):

========================================  ===================================================
pixels                                    GrabCut seed
========================================  ===================================================
the group eroded by ``r``                  sure foreground (``GC_FGD``)
the rest of the group                      probable foreground (``GC_PR_FGD``)
a ring of width ``r`` around the group     probable background (``GC_PR_BGD``)
everything further out                     sure background (``GC_BGD``)
========================================  ===================================================

``r`` scales with the part (``margin`` x its equivalent radius, at least 1 px), so one rule
fits a 40 px Herlev crop and a large field: GrabCut may move the boundary by about ``r`` either
way, guided by the colours of the image, and nowhere else. The cell is refined first; the
nucleus GrabCut sees the whole image (its background model learns cytoplasm and slide alike).
A part with no pixels, or too few sure/probable pixels on either side for GrabCut's five-
component colour models, is kept as grouped (GrabCut would raise); so is a part where
OpenCV raises anyway.

Combining (``nucleus ⊆ cell``): the **cell grows to contain the nucleus**. The nucleus is the
most reliable part of an explanation (the highest relevance, and GrabCut on a dark nucleus
against pale cytoplasm has strong contrast), while the cell boundary against a pale slide is
the weaker one; clipping the nucleus to a cell that came out too small would cut a true
nucleus. Each part is then cleaned: with ``single_cell`` (a crop of one cell, as Herlev) only
its largest 8-connected component is kept, otherwise components below ``min_area`` of the
image are dropped; holes are filled (a pale vacuole is still cell, a pale nucleus centre is
still nucleus). Labels: 0 background, 1 cytoplasm (cell minus nucleus), 2 nucleus.

GrabCut starts its colour models with k-means++ from OpenCV's RNG, which is reseeded before
each call (``seed``): the same inputs give the same mask.

Uncertainty (:func:`disagreement`): the only evidence at hand is how far GrabCut had to move
the grouping. ``1 - mean(Dice cytoplasm, Dice nucleus)`` between the grouped and the refined
masks is 0 when the image's colours confirm the explanation's groups and approaches 1 when
they contradict them (a class absent from both masks agrees perfectly: Dice 1).

Pure NumPy and OpenCV: no torch, no file access.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cytoreview_xai.grouping import Grouping, group_relevance

__all__ = [
    "GRABCUT_ITERATIONS",
    "Refinement",
    "disagreement",
    "grabcut_part",
    "refine_grouping",
    "seed_mask",
    "weak_mask",
]

#: GrabCut iterations; the paper gives none, 5 is OpenCV's tutorial value and the refined
#: masks change little beyond it.
GRABCUT_ITERATIONS = 5
#: Width of the probable band on each side of a group's edge, as a fraction of the part's
#: equivalent radius. Measured (mean Dice cytoplasm/nucleus after GrabCut): synthetic cells
#: with blurred relevance shifted by 3 px, 0.91 at 0.25 against 0.83 at 0.1 (a coarse or
#: offset explanation needs room to move); Herlev with a sharp darkness relevance and k-means
#: groups, cytoplasm 0.58 / nucleus 0.77 at 0.25 against 0.60 / 0.78 at 0.1 (already close
#: groups need little). Explanations are coarse, so 0.25; re-measure with real explanations.
DEFAULT_MARGIN = 0.25
#: GrabCut fits five-component colour mixtures (k-means with k = 5) to the foreground and the
#: background samples; fewer samples than this on either side make OpenCV raise.
_MIN_SAMPLES = 10
_BACKGROUND, _CYTOPLASM, _NUCLEUS = 0, 1, 2


@dataclass(frozen=True)
class Refinement:
    """A refined label mask and what produced it.

    Attributes
    ----------
    labels
        ``(H, W)`` uint8: 0 background, 1 cytoplasm, 2 nucleus; the nucleus lies inside the
        cell.
    cell_refined, nucleus_refined
        Whether GrabCut ran for that part (False: it was empty or too small on one side, and
        the grouped part was kept).
    uncertainty
        :func:`disagreement` between the grouped and the refined masks, in [0, 1].
    """

    labels: np.ndarray
    cell_refined: bool
    nucleus_refined: bool
    uncertainty: float


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def seed_mask(part: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """GrabCut's seed mask for a boolean ``part``: sure/probable foreground and background.

    See the module's table. ``r = max(1, round(margin * sqrt(area / pi)))``.
    """
    part = part.astype(bool)
    area = int(part.sum())
    radius = max(1, round(margin * math.sqrt(area / math.pi)))
    u8 = part.astype(np.uint8)
    # Border pixels stay as they are under erosion (BORDER_REPLICATE): a cell cut by the
    # crop's edge keeps a sure core touching that edge.
    sure_fg = cv2.erode(u8, _disc(radius), borderType=cv2.BORDER_REPLICATE).astype(bool)
    near = cv2.dilate(u8, _disc(radius)).astype(bool)
    seeds = np.full(part.shape, cv2.GC_BGD, np.uint8)
    seeds[near] = cv2.GC_PR_BGD
    seeds[part] = cv2.GC_PR_FGD
    seeds[sure_fg] = cv2.GC_FGD
    return seeds


def grabcut_part(
    rgb: np.ndarray,
    part: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    iterations: int = GRABCUT_ITERATIONS,
    seed: int = 0,
) -> np.ndarray | None:
    """GrabCut of one part (nucleus or cell) from its group; ``None`` when it cannot run.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` uint8 image.
    part
        ``(H, W)`` boolean group.
    margin, iterations, seed
        Band width (fraction of the part's equivalent radius), GrabCut iterations, RNG seed.

    Returns
    -------
    numpy.ndarray or None
        The refined boolean part, or ``None`` if the part is empty or either side has fewer
        than 10 seed pixels, or OpenCV raised: the caller keeps the grouped part.
    """
    seeds = seed_mask(part, margin)
    foreground = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if foreground.sum() < _MIN_SAMPLES or (~foreground).sum() < _MIN_SAMPLES:
        return None
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(rgb, seeds, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # A colour model that cannot be fitted (e.g. every foreground pixel the same colour
        # in a flat image): refinement is impossible, not an error of the user's.
        return None
    return np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every non-mask region that does not reach the image border filled."""
    n, regions = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if n <= 1:
        return mask
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    holes = ~np.isin(regions, edge) & ~mask
    return mask | holes


def _clean(mask: np.ndarray, single_cell: bool, min_area: float) -> np.ndarray:
    """Largest component (``single_cell``) or no specks below ``min_area``; holes filled."""
    n, regions, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if single_cell:
        keep = np.array([1 + int(np.argmax(areas))])
    else:
        keep = 1 + np.flatnonzero(areas >= min_area * mask.size)
    return _fill_holes(np.isin(regions, keep))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def disagreement(grouped: np.ndarray, refined: np.ndarray) -> float:
    """Uncertainty of a refined mask: ``1 - mean(Dice cytoplasm, Dice nucleus)`` vs grouped.

    Both are ``(H, W)`` label masks (0/1/2). A class absent from both counts as agreement
    (Dice 1), so an all-background pair is certain (0.0). Higher means less sure.
    """
    scores = [_dice(grouped == k, refined == k) for k in (_CYTOPLASM, _NUCLEUS)]
    return float(min(max(1.0 - sum(scores) / len(scores), 0.0), 1.0))


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    """Grey, RGB or RGBA (uint8) as contiguous 3-channel uint8, as GrabCut needs."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"GrabCut needs a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected a grey or RGB image, got shape {image.shape}")


def refine_grouping(
    rgb: np.ndarray,
    grouped: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    iterations: int = GRABCUT_ITERATIONS,
    seed: int = 0,
    single_cell: bool = True,
    min_area: float = 0.002,
    grabcut: bool = True,
) -> Refinement:
    """Refine a grouped label mask with GrabCut, cell and nucleus separately, then combine.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` uint8 RGB (grey and RGBA accepted) of the same height and width.
    grouped
        ``(H, W)`` labels 0/1/2 from :func:`cytoreview_xai.grouping.group_relevance`.
    margin, iterations, seed
        See :func:`grabcut_part`.
    single_cell
        Keep only the largest component of the cell and of the nucleus (one cell per image,
        as a Herlev crop); otherwise keep every component of at least ``min_area``.
    min_area
        Smallest component kept when not ``single_cell``, as a fraction of the image.
    grabcut
        False: no GrabCut, the groups are only cleaned and combined the same way (the
        paper's "grouping alone", to compare with).

    Returns
    -------
    Refinement
        The combined mask (nucleus inside the cell), which parts GrabCut refined, and the
        :func:`disagreement` with ``grouped``.

    Raises
    ------
    ValueError
        If the image and the mask differ in size, or the image is not uint8 grey/RGB.
    """
    image = _as_rgb8(rgb)
    grouped = np.asarray(grouped)
    if image.shape[:2] != grouped.shape:
        raise ValueError(f"image {image.shape[:2]} and grouping {grouped.shape} differ in size")
    options = {"margin": margin, "iterations": iterations, "seed": seed}
    cell_grouped, nucleus_grouped = grouped >= _CYTOPLASM, grouped == _NUCLEUS
    cell = grabcut_part(image, cell_grouped, **options) if grabcut else None
    nucleus = grabcut_part(image, nucleus_grouped, **options) if grabcut else None
    cell_refined, nucleus_refined = cell is not None, nucleus is not None
    cell = _clean(cell_grouped if cell is None else cell, single_cell, min_area)
    nucleus = _clean(nucleus_grouped if nucleus is None else nucleus, single_cell, min_area)
    cell |= nucleus  # the cell grows to hold the nucleus (see the module's docstring)
    labels = cell.astype(np.uint8) + nucleus.astype(np.uint8)
    return Refinement(labels, cell_refined, nucleus_refined, disagreement(grouped, labels))


def weak_mask(
    rgb: np.ndarray,
    heatmap: np.ndarray,
    method: str = "inter-means",
    *,
    grabcut: bool = True,
    log_scale_factor: float | None = None,
    **refine_options: object,
) -> tuple[Grouping, Refinement]:
    """The whole weak-mask step for one image: group the relevance, then refine it.

    Parameters
    ----------
    rgb
        The image the explanation was made for, ``(H, W, 3)`` uint8, same size as ``heatmap``.
    heatmap
        Its 2-D relevance (resize it to the image first).
    method, log_scale_factor
        Passed to :func:`cytoreview_xai.grouping.group_relevance`.
    grabcut
        Passed to :func:`refine_grouping`: False compares with the grouping alone.
    **refine_options
        Passed to :func:`refine_grouping` (``margin``, ``iterations``, ``seed``,
        ``single_cell``, ``min_area``).

    Returns
    -------
    tuple
        ``(grouping, refinement)``; the mask to store is ``refinement.labels`` with
        ``refinement.uncertainty``.
    """
    grouping = group_relevance(heatmap, method, log_scale_factor=log_scale_factor)
    refined = refine_grouping(rgb, grouping.labels, grabcut=grabcut, **refine_options)  # type: ignore[arg-type]
    return grouping, refined
