"""The measurements a cell is classified on, besides its pixels: one vector per crop.

The classifier's image network sees each crop letterboxed to its input size (64 px by
default), so it cannot tell a large nucleus from a small one in a small crop, and it judges
colour and shape from a few pixels. These features are measured on the crop and its mask at
the crop's own resolution, along the criteria of the Bethesda system:

- **size**: log areas of nucleus and cytoplasm (pixels), the nucleus share of the cell and
  the log N:C ratio: nuclear enlargement and a raised N:C separate the squamous lesions;
- **colour and texture**: mean and spread of R, G, B and grey over the nucleus and over the
  cytoplasm, and the grey level of the background (the stain's reference): hyperchromasia,
  coarse chromatin, the cytoplasm's maturity and keratinisation;
- **shape** of the largest nucleus: circularity (4πA/P²), eccentricity, solidity, log major
  axis and the minor / major axis ratio: irregular nuclear contours; and the number of nuclei
  (bi- and multinucleation);
- **position** of the largest nucleus: the distance from its centre to the cell's, in cell
  radii (Jantzen et al.'s "nucleus position": central in squamous cells, eccentric in
  columnar and metaplastic ones);
- **texture**: the mean absolute Laplacian of the grey level inside the nucleus and inside the
  cytoplasm, one pixel in from their borders, so that it measures the granularity within a
  region (coarse chromatin; keratohyalin, vacuoles) and not the contrast of its edge (which
  the colour means already give).

Areas are in pixels: a classifier is trained on its project's own images, taken at one
magnification. Pure compute (numpy, OpenCV, scikit-image); no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from skimage.measure import label, regionprops

from cytoreview.morphometry.measure import _LUMA  # one grey level for both: BT.601 luma
from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

_REGION_STATS = ("red", "green", "blue", "red_sd", "green_sd", "blue_sd", "grey", "grey_sd")

#: The features, in vector order.
FEATURE_NAMES: tuple[str, ...] = (
    "nucleus_log_area",
    "cytoplasm_log_area",
    "nucleus_fraction",
    "log_nc_ratio",
    *(f"nucleus_{s}" for s in _REGION_STATS),
    *(f"cytoplasm_{s}" for s in _REGION_STATS),
    "background_grey",
    "nucleus_count",
    "nucleus_circularity",
    "nucleus_eccentricity",
    "nucleus_solidity",
    "nucleus_log_major_axis",
    "nucleus_axis_ratio",
    "nucleus_position",
    "nucleus_texture",
    "cytoplasm_texture",
)


def _rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[:2] != shape or image.shape[2] != 3:
        raise ValueError(f"image {image.shape} does not match its mask {shape}")
    return image.astype(np.float32) / 255.0


def _region_stats(rgb: np.ndarray, grey: np.ndarray, region: np.ndarray) -> list[float]:
    if not region.any():
        return [0.0] * len(_REGION_STATS)
    pixels, levels = rgb[region], grey[region]
    return [*pixels.mean(0), *pixels.std(0), float(levels.mean()), float(levels.std())]


def _nucleus_shape(nucleus: np.ndarray) -> tuple[list[float], Any]:
    """The nucleus count and the largest nucleus's shape, and its region properties."""
    regions = regionprops(label(nucleus, connectivity=2))
    if not regions:
        return [0.0] * 6, None
    largest = max(regions, key=lambda r: r.area)
    perimeter = largest.perimeter or 1.0
    major = float(largest.axis_major_length)
    shape = [
        float(len(regions)),
        min(1.0, 4 * np.pi * float(largest.area) / perimeter**2),
        float(largest.eccentricity),
        float(largest.solidity),
        float(np.log1p(major)),
        float(largest.axis_minor_length) / major if major > 0 else 1.0,
    ]
    return shape, largest


def _nucleus_position(nucleus: Any, cell: np.ndarray) -> float:
    """Distance from the largest nucleus's centre to the cell's, in cell radii (0: none).

    ``nucleus`` is the largest nucleus's region properties (None: no nucleus); the cell is
    the largest 8-connected component of nucleus and cytoplasm.
    """
    count, _, stats, centres = cv2.connectedComponentsWithStats(cell.astype(np.uint8), 8)
    if nucleus is None or count < 2:
        return 0.0
    whole = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = float(stats[whole, cv2.CC_STAT_AREA])
    x, y = centres[whole]
    offset = np.subtract(nucleus.centroid, (y, x))  # regionprops: (row, column)
    return float(np.hypot(*offset) / max(np.sqrt(area / np.pi), 1.0))


#: Fewer interior pixels than this: the texture is read over the whole region.
_MIN_INTERIOR = 4


def _texture(laplacian: np.ndarray, region: np.ndarray) -> float:
    """Mean of ``laplacian`` inside ``region``, one pixel in from its border (see above)."""
    if not region.any():
        return 0.0
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float(laplacian[inner if inner.sum() >= _MIN_INTERIOR else region].mean())


def cell_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of one crop.

    Parameters
    ----------
    image
        ``(H, W, 3)`` RGB (or ``(H, W)`` grey) uint8 crop.
    mask
        Its ``(H, W)`` label mask: 0 background, 1 cytoplasm, 2 nucleus.

    Returns
    -------
    numpy.ndarray
        ``(len(FEATURE_NAMES),)`` float32; regions the mask lacks give zeros (an empty mask:
        everything but the background's grey level).

    Raises
    ------
    ValueError
        If the image and mask shapes disagree.
    """
    mask = np.asarray(mask)
    rgb = _rgb(image, mask.shape[:2])
    grey = rgb @ _LUMA
    nucleus, cytoplasm, background = mask == NUCLEUS, mask == CYTOPLASM, mask == BACKGROUND
    n, c = float(nucleus.sum()), float(cytoplasm.sum())
    size = [np.log1p(n), np.log1p(c), n / max(n + c, 1.0), np.log1p(n) - np.log1p(c)]
    back = float(grey[background].mean()) if background.any() else 1.0
    shape, largest = _nucleus_shape(nucleus)
    laplacian = np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3))
    values = [
        *size,
        *_region_stats(rgb, grey, nucleus),
        *_region_stats(rgb, grey, cytoplasm),
        back,
        *shape,
        _nucleus_position(largest, nucleus | cytoplasm),
        _texture(laplacian, nucleus),
        _texture(laplacian, cytoplasm),
    ]
    return np.asarray(values, np.float32)


def feature_matrix(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    names: Sequence[str] = FEATURE_NAMES,
) -> np.ndarray:
    """``(N, len(names))`` float32 :func:`cell_features` of crops and their masks.

    Parameters
    ----------
    images, masks
        The crops and their label masks, as :func:`cell_features` takes them.
    names
        The features wanted, in this order: a measurement model names those it was fitted
        on, so that one made before features were added keeps reading its own.

    Raises
    ------
    ValueError
        If the lists differ in length or a name is not one of :data:`FEATURE_NAMES`.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if unknown := [n for n in names if n not in FEATURE_NAMES]:
        raise ValueError(f"unknown measurements {unknown}: a newer CytoReview made this model")
    columns = [FEATURE_NAMES.index(n) for n in names]
    if not images:
        return np.zeros((0, len(columns)), np.float32)
    every = np.stack([cell_features(im, m) for im, m in zip(images, masks, strict=True)])
    return np.ascontiguousarray(every[:, columns])
