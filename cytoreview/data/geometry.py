"""How images meet the segmenter: letterboxed single-cell crops, or fields at native resolution.

A U-Net learns objects at the size it sees them. Two kinds of image reach it:

- **crops** of one cell (Herlev-style; 40-770 px): each is resized with its aspect ratio kept
  ("letterboxed") to the model's square input, so a cell fills the input whatever the crop's
  size, as it did in training;
- **fields** of many cells (liquid-based preparations, camera fields, slide regions): resizing
  a 512 px field to a 256 px input would halve 6-15 px nuclei to 3-7 px, where they are lost.
  Fields are cut into overlapping native-resolution tiles of the input size, for training crops
  as well as inference, and the tile predictions are blended.

**The rule** (:func:`choose_geometry`), from the painted masks alone:

1. A project is *fields* when the median painted mask holds two or more nuclei (8-connected
   components of the nucleus label of at least :data:`MIN_NUCLEUS_PX` px and at least
   :data:`NUCLEUS_SHARE` of the mask's largest nucleus); when no mask has a nucleus, two or
   more cells (foreground components, the same way) decide. Otherwise it is *crops*, and
   images with a side above ``tile_threshold`` (default 1024 px) are still tiled as fields.
   A speck a tenth the size of the cell's nucleus is debris or a thresholding crumb, not a
   second cell: masks made by a mask generator have them. Otsu masks of Herlev's single-cell
   crops counted a median of 2 nuclei without this rule (fields: 256 px tiles for 40 px
   crops), 1 with it; ISBI fields keep their median of 6 true nuclei.
2. Fields are shrunk only as far as their nuclei stay at least :data:`NUCLEUS_TARGET_PX` px
   across (median equivalent diameter of the painted nuclei), and never enlarged: the scale is
   ``min(1, NUCLEUS_TARGET_PX / median diameter)``. Liquid-based fields at 10-20x have 6-15 px
   nuclei: scale 1, nothing is shrunk; a 40x scan with 50 px nuclei is worked at half size,
   a quarter of the compute, with nuclei still 25 px across.
3. Tiles overlap by a halo of at least half a cell (median equivalent diameter of the painted
   cells at the working scale, or four nucleus diameters in nucleus-only masks), at least
   :data:`MIN_OVERLAP_PX` px and less than half a tile.

Pure compute on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# What a user may ask for: the rule's choice, or one of the two geometries.
from cytoreview.choices import GEOMETRIES

#: Nucleus components smaller than this are specks, not nuclei (same floor as post-processing).
MIN_NUCLEUS_PX = 4
#: Components smaller than this share of the mask's largest one are not counted as objects.
NUCLEUS_SHARE = 0.1
#: Fields are shrunk only while their median nucleus stays at least this wide (px).
NUCLEUS_TARGET_PX = 24.0
#: Smallest tile overlap of fields (px at the working scale).
MIN_OVERLAP_PX = 32
#: Input side of field tiles (px): large enough to hold a cell and its neighbours.
FIELD_TILE = 256
#: Images with a side above this are tiled even in a crops project.
DEFAULT_TILE_THRESHOLD = 1024


@dataclass(frozen=True)
class ObjectSizes:
    """What the painted masks say about the objects' sizes (px at native resolution)."""

    nuclei_per_mask: float  # median count over masks
    cells_per_mask: float
    nucleus_diameter: float | None  # median equivalent diameter, None without nuclei
    cell_diameter: float | None


@dataclass(frozen=True)
class Geometry:
    """The chosen geometry (stored in the model's config, used again at inference).

    Attributes
    ----------
    mode
        ``"crops"`` or ``"fields"``.
    tile_threshold
        Images with a side above this are tiled; 0 in a fields project (every image is tiled).
    scale
        Fields are resized by this factor before tiling (<= 1).
    tile_overlap
        Overlap of neighbouring tiles (px at the working scale).
    reason
        One line for the person: why this geometry.
    """

    mode: str
    tile_threshold: int
    scale: float
    tile_overlap: int
    reason: str


def _diameters(binary: np.ndarray, min_px: int) -> list[float]:
    """Equivalent diameters of the components big enough to count (see the module's rule)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), 8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if not len(areas):
        return []
    floor = max(min_px, NUCLEUS_SHARE * float(areas.max()))
    return [float(np.sqrt(4 * a / np.pi)) for a in areas if a >= floor]


def object_sizes(masks: Sequence[np.ndarray]) -> ObjectSizes:
    """Median nucleus and cell counts per mask and their median diameters."""
    nuclei_counts, cell_counts = [], []
    nucleus_d: list[float] = []
    cell_d: list[float] = []
    for mask in masks:
        nuclei = _diameters(mask == 2, MIN_NUCLEUS_PX)
        # Cells are foreground components (cytoplasm with its nuclei); nucleus-only masks
        # have none to measure.
        cells = _diameters(mask > 0, MIN_NUCLEUS_PX * 4) if (mask == 1).any() else []
        nuclei_counts.append(len(nuclei))
        cell_counts.append(len(cells))
        nucleus_d += nuclei
        cell_d += cells
    return ObjectSizes(
        nuclei_per_mask=float(np.median(nuclei_counts)) if nuclei_counts else 0.0,
        cells_per_mask=float(np.median(cell_counts)) if cell_counts else 0.0,
        nucleus_diameter=float(np.median(nucleus_d)) if nucleus_d else None,
        cell_diameter=float(np.median(cell_d)) if cell_d else None,
    )


def choose_geometry(
    masks: Sequence[np.ndarray],
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
    tile: int = FIELD_TILE,
    mode: str = "auto",
) -> Geometry:
    """Crops or fields, and the fields' scale and halo, by the module's rule.

    Parameters
    ----------
    masks
        The painted label masks (0/1/2) at native resolution.
    tile_threshold
        A crops project still tiles images with a side above this.
    tile
        The field tile side (the model's input size in a fields project).
    mode
        ``"auto"`` (the rule), or ``"crops"`` / ``"fields"`` to overrule it (the scale and halo
        of fields still come from the masks).

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    """
    if mode not in GEOMETRIES:
        raise ValueError(f"unknown geometry {mode!r}; valid: {', '.join(GEOMETRIES)}")
    sizes = object_sizes(masks)
    has_nuclei = sizes.nucleus_diameter is not None
    count = sizes.nuclei_per_mask if has_nuclei else sizes.cells_per_mask
    per_mask = f"median {count:g} {'nuclei' if has_nuclei else 'cells'} per mask"
    asked = " as asked" if mode != "auto" else ""
    if mode == "crops" or (mode == "auto" and count < 2):
        reason = f"single-cell crops{asked} ({per_mask}): each image is resized to the input"
        return Geometry("crops", tile_threshold, 1.0, 64, reason)
    scale = 1.0
    if sizes.nucleus_diameter is not None:
        scale = min(1.0, NUCLEUS_TARGET_PX / sizes.nucleus_diameter)
    if sizes.cell_diameter is not None:
        cell = sizes.cell_diameter
    else:  # nucleus-only masks: a cell is a few nuclei across
        cell = 4 * (sizes.nucleus_diameter or MIN_OVERLAP_PX)
    overlap = int(np.clip(round(cell * scale / 2), MIN_OVERLAP_PX, tile // 2 - 1))
    nucleus = f", median nucleus {sizes.nucleus_diameter:.0f} px" if sizes.nucleus_diameter else ""
    reason = (
        f"fields{asked} ({per_mask}{nucleus}): native-resolution tiles at scale {scale:.2f}, "
        f"{overlap} px halo"
    )
    return Geometry("fields", 0, round(scale, 4), overlap, reason)
