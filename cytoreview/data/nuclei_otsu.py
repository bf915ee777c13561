"""Nuclei of a slide tile without a model: a fixed-scale Otsu threshold of nuclear stain.

:func:`cytoreview.data.mask_tools.initial_mask_otsu` is made for one cell or one field: its
smoothing and clean-up scale with the image's size, and it keeps only regions near the size
of the largest. On 1024 px tiles of a synthetic slide it found about half of the true nuclei
(and on a tile of bare glass it thresholds noise). A tile of a slide needs the opposite: every
scale set in µm, the same on every tile, so that a nucleus reads the same in each tile that
sees it. That is this module.

Pure numpy / OpenCV: no files.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from cytoreview.data.tissue import optical_density
from cytoreview.defaults import CELL_FINDER
from cytoreview.types import CYTOPLASM, NUCLEUS

__all__ = ["nucleus_labels_otsu"]

#: Smoothing of the nuclear stain (µm): evens out chromatin granules, keeps a 4 µm nucleus.
CHROMATIN_SIGMA_UM = 0.7
#: Radius (µm) of the opening that estimates the local background of the stain: wider than
#: a nucleus, so that the top-hat keeps nuclei and drops the slowly varying cytoplasm.
BACKGROUND_RADIUS_UM = 10.0
#: The lowest top-hat (optical density above the local background) a nucleus may have: Otsu's
#: threshold on a tile with few or no nuclei would otherwise split cytoplasm texture.
MIN_NUCLEAR_CONTRAST = 0.2
#: A tile needs this many material pixels before a threshold is computed at all.
MIN_MATERIAL_PX = 100


def nucleus_labels_otsu(
    rgb: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    white: np.ndarray | None = None,
    min_od: float = CELL_FINDER.tissue_min_od,
) -> np.ndarray:
    """A label mask of a tile: material (1) and nuclei (2), with no model.

    Steps, in this order: optical density against the glass colour; material is where the
    strongest channel, smoothed over 1 µm, exceeds ``min_od``; the nuclear stain is the green
    channel's density (hematoxylin absorbs green most, the cyanophilic Pap cytoplasm least),
    smoothed by :data:`CHROMATIN_SIGMA_UM`; its local background is an opening of radius
    :data:`BACKGROUND_RADIUS_UM` (computed at about 1 µm/px, cheap); nuclei are where the
    stain exceeds its background by Otsu's threshold of that contrast over the material, but
    at least :data:`MIN_NUCLEAR_CONTRAST`. Touching nuclei stay one region here (see
    :func:`cytoreview.inference.cell_finder.find_nuclei`, which splits them).

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` uint8 tile.
    pixel_size_um
        µm per pixel; None: :attr:`~cytoreview.defaults.CellFinderDefaults.nominal_pixel_size_um`.
    white
        The glass colour (:func:`cytoreview.data.tissue.glass_white` of the slide's thumbnail);
        None: the tile's own brightest pixels, right whenever the tile shows some glass.
    min_od
        Optical density that counts as material.

    Returns
    -------
    np.ndarray
        ``(H, W)`` uint8: 0 glass, 1 material (cytoplasm and everything else), 2 nucleus. All 0
        on bare glass.
    """
    px = CELL_FINDER.nominal_pixel_size_um if pixel_size_um is None else float(pixel_size_um)
    density = optical_density(rgb, white)
    h, w = density.shape[:2]
    labels = np.zeros((h, w), np.uint8)
    material = cv2.GaussianBlur(density.max(axis=2), (0, 0), max(0.5, 1.0 / px)) > min_od
    if int(material.sum()) < MIN_MATERIAL_PX:
        return labels
    stain = cv2.GaussianBlur(
        np.ascontiguousarray(density[..., 1]), (0, 0), max(0.5, CHROMATIN_SIGMA_UM / px)
    )
    contrast = stain - _local_background(stain, px)
    threshold = max(MIN_NUCLEAR_CONTRAST, float(threshold_otsu(contrast[material])))
    labels[material] = CYTOPLASM
    labels[(contrast > threshold) & material] = NUCLEUS
    return labels


def _local_background(stain: np.ndarray, px: float) -> np.ndarray:
    """Grey opening of ``stain`` with a disk of :data:`BACKGROUND_RADIUS_UM`, at ~1 µm/px."""
    h, w = stain.shape
    scale = min(1.0, px)  # to about 1 µm/px: a 10 µm disk of 21 px, not 81
    small = stain
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(stain, size, interpolation=cv2.INTER_AREA)
    radius = max(1, round(BACKGROUND_RADIUS_UM * scale / px))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    background = cv2.morphologyEx(small, cv2.MORPH_OPEN, disk, borderType=cv2.BORDER_REPLICATE)
    if small is not stain:
        background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    return background
