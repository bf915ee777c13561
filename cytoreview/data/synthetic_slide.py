"""Synthetic whole slides: a grid of synthetic Pap fields with known masks, made tile by tile.

A 20,000 x 20,000 px slide is 1.2 GB of RGB: it is never held whole. The slide is a grid of
``field`` px synthetic fields (:func:`cytoreview.data.synthetic.synth_field`, each seeded from
its grid position, so any tile of any level can be made again on its own), some left empty
(glass), as a smear has bare areas. :meth:`SyntheticSlide.tiles` yields the tiles of one
pyramid level in row-major order, which is what a tiled TIFF writer consumes; the true masks
come the same way (:meth:`SyntheticSlide.mask_tiles`), for cell-finder and segmentation tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from cytoreview.data.synthetic import SUPPORTED_CLASSES, synth_field

__all__ = ["SyntheticSlide"]

#: The colour of bare glass (a smear's background), RGB.
GLASS = (236, 234, 238)


@dataclass(frozen=True)
class SyntheticSlide:
    """A slide of ``height`` x ``width`` px made of ``field`` px synthetic fields.

    Parameters
    ----------
    empty_fraction
        Share of the grid left as bare glass (what a tissue detector should skip).
    cells_per_field
        Cells painted in each non-empty field.
    """

    height: int
    width: int
    seed: int = 0
    field: int = 512
    empty_fraction: float = 0.3
    cells_per_field: int = 3

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or self.field < 64:
            raise ValueError("a slide needs a positive size and fields of at least 64 px")

    @property
    def grid(self) -> tuple[int, int]:
        """Fields down and across (the last ones cut by the slide's edge)."""
        return -(-self.height // self.field), -(-self.width // self.field)

    def _field(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        return _cached_field(self, row, col)

    def region(self, y: int, x: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 RGB and true mask of a region (clipped to the slide)."""
        y1, x1 = min(self.height, y + height), min(self.width, x + width)
        rgb = np.empty((y1 - y, x1 - x, 3), np.uint8)
        mask = np.empty((y1 - y, x1 - x), np.uint8)
        f = self.field
        for row in range(y // f, -(-y1 // f)):
            for col in range(x // f, -(-x1 // f)):
                image, labels = self._field(row, col)
                top, left = max(y, row * f), max(x, col * f)
                bottom, right = min(y1, (row + 1) * f), min(x1, (col + 1) * f)
                src = np.s_[top - row * f : bottom - row * f, left - col * f : right - col * f]
                dst = np.s_[top - y : bottom - y, left - x : right - x]
                rgb[dst], mask[dst] = image[src], labels[src]
        return rgb, mask

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(height, width)`` of pyramid level ``level`` (each half the one before)."""
        return max(1, self.height >> level), max(1, self.width >> level)

    def tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """The ``tile`` x ``tile`` RGB tiles of ``level``, row-major (edge tiles are smaller)."""
        for rgb, _ in self._level_tiles(level, tile, with_mask=False):
            yield rgb

    def mask_tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """The true label tiles of ``level`` (nearest-neighbour below level 0), row-major."""
        for _, mask in self._level_tiles(level, tile, with_mask=True):
            yield mask

    def _level_tiles(
        self, level: int, tile: int, with_mask: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        height, width = self.level_shape(level)
        scale = 1 << level
        for ty in range(0, height, tile):
            for tx in range(0, width, tile):
                h, w = min(tile, height - ty), min(tile, width - tx)
                rgb, mask = self.region(ty * scale, tx * scale, h * scale, w * scale)
                if level:
                    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
                yield rgb[:h, :w], (mask[:h, :w] if with_mask else mask)


@lru_cache(maxsize=64)
def _cached_field(slide: SyntheticSlide, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
    """One field of the grid (cached: a level's tiles revisit the same fields)."""
    rng = np.random.default_rng([slide.seed, row, col])
    f = slide.field
    if rng.random() < slide.empty_fraction:
        glass = np.empty((f, f, 3), np.uint8)
        glass[:] = GLASS
        noise = rng.integers(-3, 4, (f, f, 1), dtype=np.int16)
        return (glass + noise).clip(0, 255).astype(np.uint8), np.zeros((f, f), np.uint8)
    classes = rng.integers(0, len(SUPPORTED_CLASSES), slide.cells_per_field)
    labels = [SUPPORTED_CLASSES[int(i)] for i in classes]
    sample = synth_field(labels, rng, (f, f))
    return sample.image, sample.mask
