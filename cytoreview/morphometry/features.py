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
  (bi- and multinucleation).

Areas are in pixels: a classifier is trained on its project's own images, taken at one
magnification. Pure compute (numpy, scikit-image); no files.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _nucleus_shape(nucleus: np.ndarray) -> list[float]:
    regions = regionprops(label(nucleus, connectivity=2))
    if not regions:
        return [0.0] * 6
    largest = max(regions, key=lambda r: r.area)
    perimeter = largest.perimeter or 1.0
    major = float(largest.axis_major_length)
    return [
        float(len(regions)),
        min(1.0, 4 * np.pi * float(largest.area) / perimeter**2),
        float(largest.eccentricity),
        float(largest.solidity),
        float(np.log1p(major)),
        float(largest.axis_minor_length) / major if major > 0 else 1.0,
    ]


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
    values = [
        *size,
        *_region_stats(rgb, grey, nucleus),
        *_region_stats(rgb, grey, cytoplasm),
        back,
        *_nucleus_shape(nucleus),
    ]
    return np.asarray(values, np.float32)


def feature_matrix(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, F)`` float32 :func:`cell_features` of crops and their masks."""
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if not images:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return np.stack([cell_features(im, m) for im, m in zip(images, masks, strict=True)])
