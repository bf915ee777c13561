"""Where the cells are on a slide: a material mask at low resolution and the tiles over it.

A Pap smear is mostly bare glass. Reading and segmenting it at full resolution costs time in
proportion to the area read, so the cell finder first looks at a small pyramid level (a few
µm per pixel, a thumbnail of a few thousand px), marks what absorbs light, and then reads only
the full-resolution tiles that hold some of it.

Coordinates: boxes are ``(y, x, h, w)`` in level-0 px. Pure numpy / OpenCV: no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from cytoreview.defaults import CELL_FINDER

__all__ = ["Box", "Tile", "glass_white", "optical_density", "tiles_over_mask", "tissue_mask"]

#: Glass noise is estimated as this many robust standard deviations of the brightest half.
NOISE_SIGMAS = 6.0


class Box(NamedTuple):
    """A rectangle ``(y, x, h, w)`` in px; a plain tuple where one is expected."""

    y: int
    x: int
    h: int
    w: int

    def contains(self, y: float, x: float) -> bool:
        """Whether the point lies in the box (top and left edges in, bottom and right out)."""
        return self.y <= y < self.y + self.h and self.x <= x < self.x + self.w


@dataclass(frozen=True)
class Tile:
    """A tile of a slide: the ``core`` it answers for and the ``window`` read around it.

    ``window`` is ``core`` grown by the halo on every side and clipped to the slide, so its
    top-left corner is ``(max(0, y - halo), max(0, x - halo))``.
    """

    core: Box
    window: Box

    @classmethod
    def around(cls, core: Box, halo: int, slide_shape: tuple[int, int]) -> Tile:
        """The tile of ``core`` with ``halo`` px read around it, clipped to ``slide_shape``."""
        y, x, h, w = core
        top, left = max(0, y - halo), max(0, x - halo)
        bottom, right = min(slide_shape[0], y + h + halo), min(slide_shape[1], x + w + halo)
        return cls(Box(*core), Box(top, left, bottom - top, right - left))


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return image[..., :3]


def glass_white(rgb: np.ndarray) -> np.ndarray:
    """The colour of the bare glass: the per-channel 99th percentile.

    Assumes that at least 1 % of the image is glass, which a slide's thumbnail always has (its
    margins). Pass the result to the tile functions so that a tile packed with cells is not
    measured against its own palest cytoplasm.

    Returns
    -------
    np.ndarray
        ``(3,)`` float32 RGB, each at least 1.
    """
    pixels = _rgb(rgb).reshape(-1, 3)
    return np.maximum(np.percentile(pixels, 99, axis=0), 1.0).astype(np.float32)


def optical_density(rgb: np.ndarray, white: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` float32 optical density per channel: 0 on glass, more where stain is.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` uint8.
    white
        The glass colour (:func:`glass_white`); None: that of ``rgb`` itself.
    """
    rgb = _rgb(rgb)
    white = glass_white(rgb) if white is None else np.asarray(white, np.float32)
    ratio = (rgb.astype(np.float32) + 1.0) / (white + 1.0)
    return -np.log(np.clip(ratio, 1e-3, 1.0))


def tissue_mask(
    thumbnail_rgb: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    white: np.ndarray | None = None,
    min_od: float = CELL_FINDER.tissue_min_od,
    min_object_um2: float = CELL_FINDER.tissue_min_object_um2,
    margin_um: float = CELL_FINDER.tissue_margin_um,
) -> np.ndarray:
    """Material (cells, mucus, debris) against bare glass on a low-resolution image.

    Steps, in this order: the optical density of the strongest-absorbing channel (pale green
    or pink cytoplasm absorbs one channel only) against the glass colour; a 3 x 3 median
    filter against sensor noise; a threshold of ``min_od`` raised to :data:`NOISE_SIGMAS`
    robust standard deviations of the brightest half of the image where the glass is noisier
    (never above ``2 * min_od``, so pale cytoplasm stays in); objects smaller than
    ``min_object_um2`` dropped as dust; and a dilation by ``margin_um`` so that the faint
    border of a cell, lost at low resolution, is read too. A thumbnail of glass alone gives an
    all-False mask.

    Parameters
    ----------
    thumbnail_rgb
        ``(H, W, 3)`` uint8, a low pyramid level (a few µm per pixel is enough).
    pixel_size_um
        µm per pixel of the thumbnail (level-0 size x downsample); None: the object size
        becomes 2 px and the margin 1 px.
    white
        The glass colour; None: :func:`glass_white` of the thumbnail.
    min_od, min_object_um2, margin_um
        See :class:`cytoreview.defaults.CellFinderDefaults`.

    Returns
    -------
    np.ndarray
        ``(H, W)`` bool, True where there is material (or within the margin of it).
    """
    density = optical_density(thumbnail_rgb, white).max(axis=2)
    density = cv2.medianBlur(np.ascontiguousarray(density, np.float32), 3)
    bright = density[density <= np.median(density)]
    noise = 1.4826 * float(np.median(np.abs(bright - np.median(bright)))) if bright.size else 0.0
    threshold = min(max(min_od, NOISE_SIGMAS * noise), 2 * min_od)
    material = (density > threshold).astype(np.uint8)
    if pixel_size_um is None:
        min_px, margin_px = 2, 1
    else:
        min_px = max(1, math.ceil(min_object_um2 / pixel_size_um**2))
        margin_px = max(1, math.ceil(margin_um / pixel_size_um))
    n, comp, stats, _ = cv2.connectedComponentsWithStats(material, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    material = keep[comp].astype(np.uint8)
    if material.any():
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1,) * 2)
        material = cv2.dilate(material, disk)
    return material.astype(bool)


def tiles_over_mask(
    level0_shape: tuple[int, int],
    mask: np.ndarray,
    downsample: float,
    tile: int = CELL_FINDER.tile,
    halo: int = CELL_FINDER.halo,
) -> list[Tile]:
    """The tiles of a slide whose core holds some material.

    The slide is cut into a grid of ``tile`` x ``tile`` cores from the top-left corner (edge
    cores are smaller); a core is kept when any mask pixel under it is True. The mask pixel
    ``(i, j)`` covers level-0 ``[i * downsample, (i + 1) * downsample)``; a core's rows are
    mapped outward (floor of the top, ceiling of the bottom), so a rounding never drops a
    tile with material at its edge.

    Parameters
    ----------
    level0_shape
        ``(height, width)`` of the slide's level 0.
    mask
        ``(h, w)`` bool from :func:`tissue_mask` of a level with this ``downsample``.
    downsample
        Level-0 px per mask pixel.
    tile, halo
        Core side and the margin read around it, in level-0 px.

    Returns
    -------
    list[Tile]
        Row-major (by core top, then left): a deterministic order.
    """
    height, width = (int(v) for v in level0_shape)
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or height < 1 or width < 1:
        raise ValueError(
            f"need a 2-D mask and a positive slide size, got {mask.shape}, {level0_shape}"
        )
    if tile < 1 or halo < 0 or not downsample > 0:
        raise ValueError(
            f"need tile >= 1, halo >= 0 and downsample > 0, got {tile}, {halo}, {downsample}"
        )
    # A summed-area table answers "any True in this rectangle" in O(1) per tile.
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    tiles = []
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            h, w = min(tile, height - y), min(tile, width - x)
            r0, c0 = (
                min(int(v / downsample), s) for v, s in ((y, mask.shape[0]), (x, mask.shape[1]))
            )
            r1 = min(math.ceil((y + h) / downsample), mask.shape[0])
            c1 = min(math.ceil((x + w) / downsample), mask.shape[1])
            if table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0] <= 0:
                continue
            tiles.append(Tile.around(Box(y, x, h, w), halo, (height, width)))
    return tiles
