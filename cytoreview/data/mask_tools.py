"""Painting helpers for label masks: a first guess, GrabCut refinement, clean-up, a readout.

Every function takes and returns plain arrays (RGB uint8 images, uint8 label images with
0 background, 1 cytoplasm, 2 nucleus) and never modifies its input. Pure numpy / OpenCV /
SciPy: no files, no Qt. The GUI's annotate panel calls them on the mask being painted.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu

from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

#: Connected regions smaller than this share of the largest cell are dropped as debris.
MIN_CELL_FRACTION = 0.05
#: Nucleus blobs smaller than this share of a cell's largest blob are not nuclei (chromatin
#: clumps, dirt); a second blob at least this large stays (binucleate cells).
MIN_NUCLEUS_FRACTION = 0.35


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 view of a grey or RGB(A) uint8 image."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label mask must be 2-D, got shape {labels.shape}")
    return labels.astype(np.uint8, copy=False)


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) optical density per channel: the amount of stain, 0 on the bright slide."""
    # The brightest pixels (99th percentile) stand in for the illumination, so an off-white or
    # tinted background still reads as "no stain".
    white = np.maximum(np.percentile(rgb.reshape(-1, 3), 99, axis=0), 1.0)
    return -np.log(np.clip((rgb.astype(np.float32) + 1.0) / (white + 1.0), 1e-3, 1.0))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of float values (via an 8-bit rescale, as OpenCV expects)."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    scaled = np.round((values - lo) / (hi - lo) * 255).astype(np.uint8).reshape(1, -1)
    level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return lo + float(level) / 255 * (hi - lo)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _keep_large(binary: np.ndarray, fraction: float) -> np.ndarray:
    """Connected regions (8-connected) of at least ``fraction`` of the largest one."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(binary, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= fraction * areas.max()) + 1
    return np.isin(comp, keep)


def initial_mask_otsu(image: np.ndarray) -> np.ndarray:
    """A first label mask of a Pap-stained image, to correct rather than paint from scratch.

    Cells are what absorbs light. A three-class Otsu threshold on the optical density (the
    amount of stain) splits slide, cytoplasm and nucleus; its lower level separates cells from
    the bright slide, which also works for pale cells whose nucleus dominates a two-class
    threshold. An opening removes specks, holes are filled and regions smaller than
    :data:`MIN_CELL_FRACTION` of the largest are dropped. Within each cell, Otsu's threshold
    on the smoothed green-channel density (hematoxylin absorbs green about twice as much as
    the Pap cytoplasm stains do) finds the darkest blob, the nucleus, plus any other blob at
    least :data:`MIN_NUCLEUS_FRACTION` of its size (binucleate cells). Finally every nucleus
    gets a cytoplasm rim (:func:`nucleus_inside_cytoplasm`).

    On synthetic Pap cells (64-128 px) this scores a mean Dice of about 0.96 for the cell and
    0.87 for the nucleus.

    Parameters
    ----------
    image
        (H, W, 3) RGB or (H, W) grey uint8 image of cells on a bright background.

    Returns
    -------
    np.ndarray
        (H, W) uint8 labels: 0 background, 1 cytoplasm, 2 nucleus. All background if the
        image is uniform.
    """
    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    density = _optical_density(rgb)
    od = cv2.GaussianBlur(density.sum(axis=2), (0, 0), 1.0)
    labels = np.zeros((h, w), np.uint8)
    if float(od.max() - od.min()) < 0.05:  # a blank field: nothing to segment
        return labels
    radius = max(1, round(min(h, w) / 80))
    cells = (od > threshold_multiotsu(od, classes=3)[0]).astype(np.uint8)
    cells = cv2.morphologyEx(cells, cv2.MORPH_OPEN, _disk(radius))
    cells = ndi.binary_fill_holes(_keep_large(cells, MIN_CELL_FRACTION))
    labels[cells] = CYTOPLASM
    # Smoothing on the scale of the image evens out the chromatin texture of the nucleus.
    nuclear = cv2.GaussianBlur(density[..., 1], (0, 0), 1.5 * max(1.0, min(h, w) / 100))
    n, comp = cv2.connectedComponents(cells.astype(np.uint8), connectivity=8)
    for index in range(1, n):
        inside = comp == index
        values = nuclear[inside]
        if values.size < 16:
            continue
        dark = np.zeros((h, w), np.uint8)
        dark[inside] = values > _otsu(values)
        dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _disk(radius))
        dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, _disk(radius))
        nuclei = _keep_large(dark, MIN_NUCLEUS_FRACTION)
        # A "nucleus" covering most of the cell means Otsu split the cell body instead.
        if nuclei.sum() < 0.8 * values.size:
            labels[ndi.binary_fill_holes(nuclei) & inside] = NUCLEUS
    return nucleus_inside_cytoplasm(labels)


def refine_grabcut(image: np.ndarray, labels: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Snap a rough mask to the image's edges with GrabCut, started from the mask itself.

    Two passes: cell (cytoplasm + nucleus) against background over the whole image, then
    nucleus against cytoplasm inside the refined cell. In each pass the region's pixels more
    than a band width inside its border are sure foreground, those more than a band width
    outside are sure background, and the band in between is "probable" foreground or
    background, which GrabCut may flip. The band is 3 % of the shorter image side (at least
    2 px). A pass is skipped (its labels kept) when the region or its complement is empty,
    since GrabCut needs both.

    Parameters
    ----------
    image
        (H, W, 3) RGB or (H, W) grey uint8 image.
    labels
        (H, W) label mask to refine (0/1/2), the same size as the image.
    iterations
        GrabCut iterations per pass.

    Returns
    -------
    np.ndarray
        A new uint8 label mask; nuclei keep a cytoplasm rim.
    """
    rgb = _as_rgb(image)
    labels = _check_labels(labels)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"image {rgb.shape[:2]} and labels {labels.shape} differ in size")
    band = max(2, round(0.03 * min(labels.shape)))
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    cell = _grabcut_region(bgr, labels > 0, np.ones(labels.shape, bool), band, iterations)
    nucleus = _grabcut_region(bgr, (labels == NUCLEUS) & cell, cell, band, iterations)
    out = np.zeros(labels.shape, np.uint8)
    out[cell] = CYTOPLASM
    out[nucleus & cell] = NUCLEUS
    return nucleus_inside_cytoplasm(out)


def _grabcut_region(
    bgr: np.ndarray, region: np.ndarray, allowed: np.ndarray, band: int, iterations: int
) -> np.ndarray:
    """GrabCut of ``region`` within ``allowed`` (outside it is sure background)."""
    if not region.any() or not (allowed & ~region).any():
        return region
    kernel = _disk(band)
    inner = cv2.erode(region.astype(np.uint8), kernel).astype(bool)
    outer = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
    gc = np.full(region.shape, cv2.GC_BGD, np.uint8)
    gc[outer & ~region] = cv2.GC_PR_BGD
    gc[region] = cv2.GC_PR_FGD
    gc[inner] = cv2.GC_FGD
    gc[~allowed] = cv2.GC_BGD
    # GrabCut's colour models need sure samples of both sides; fall back to probable ones.
    if not (gc == cv2.GC_FGD).any():
        gc[region & allowed] = cv2.GC_FGD
    if not np.isin(gc, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        return region
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, gc, None, bgd, fgd, max(1, int(iterations)), cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour statistics (e.g. a flat image): keep the input
        return region
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)) & allowed


def fill_holes(labels: np.ndarray, max_hole_area: int | None = None) -> np.ndarray:
    """Fill holes: background inside a cell becomes cytoplasm, anything inside a nucleus nucleus.

    Parameters
    ----------
    labels
        (H, W) label mask (0/1/2).
    max_hole_area
        Leave holes larger than this many pixels alone (e.g. a gap enclosed by touching cells
        in a field); ``None`` fills every hole.

    Returns
    -------
    np.ndarray
        A new uint8 label mask.
    """
    out = _check_labels(labels).copy()
    for region_label, fill_label in ((out > 0, CYTOPLASM), (out == NUCLEUS, NUCLEUS)):
        holes = ndi.binary_fill_holes(region_label) & ~region_label
        if max_hole_area is not None and holes.any():
            comp, n = ndi.label(holes)
            sizes = np.bincount(comp.ravel(), minlength=n + 1)
            holes &= (sizes <= max_hole_area)[comp]
        out[holes] = fill_label
    return out


def nucleus_inside_cytoplasm(
    labels: np.ndarray, ring: int = 1, drop_isolated: bool = False
) -> np.ndarray:
    """Make every nucleus lie inside cytoplasm, as it does in a real cell.

    Background pixels within ``ring`` pixels (8-connected, i.e. a square neighbourhood) of a
    nucleus become cytoplasm, so a nucleus painted over the cell border, or painted before
    its cell, gets a thin cytoplasm rim and no nucleus pixel touches the background. Pixels
    outside the image cannot be added: a nucleus cut by the image edge stays cut.

    Parameters
    ----------
    labels
        (H, W) label mask (0/1/2).
    ring
        Rim width in pixels (1 or 2 is typical).
    drop_isolated
        Instead of growing a rim around them, turn nucleus blobs that touch no cytoplasm at
        all (specks painted outside any cell) into background.

    Returns
    -------
    np.ndarray
        A new uint8 label mask.
    """
    out = _check_labels(labels).copy()
    nucleus = out == NUCLEUS
    if not nucleus.any():
        return out
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    if drop_isolated:
        comp, _ = ndi.label(nucleus, structure=np.ones((3, 3)))
        near = cv2.dilate((out == CYTOPLASM).astype(np.uint8), np.ones((3, 3), np.uint8))
        touching = np.unique(comp[near.astype(bool) & nucleus])
        isolated = nucleus & ~np.isin(comp, touching)
        out[isolated] = BACKGROUND
        nucleus &= ~isolated
    rim = cv2.dilate(nucleus.astype(np.uint8), kernel).astype(bool)
    out[rim & (out == BACKGROUND)] = CYTOPLASM
    return out


def quick_measure(labels: np.ndarray) -> dict[str, float]:
    """Areas and N:C ratio of a label mask, cheap enough to run on every paint stroke.

    Parameters
    ----------
    labels
        (H, W) label mask (0/1/2).

    Returns
    -------
    dict
        ``nucleus_area`` and ``cytoplasm_area`` in pixels (cytoplasm excludes the nucleus)
        and ``nc_ratio`` = nucleus area / cytoplasm area, the nucleus-to-cytoplasm ratio of
        cytology (the synthetic generator's convention); NaN when there is no cytoplasm.
    """
    counts = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=3)
    nucleus, cytoplasm = int(counts[NUCLEUS]), int(counts[CYTOPLASM])
    ratio = nucleus / cytoplasm if cytoplasm else float("nan")
    return {"nucleus_area": nucleus, "cytoplasm_area": cytoplasm, "nc_ratio": ratio}
