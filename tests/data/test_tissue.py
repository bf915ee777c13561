"""Tests of the tissue mask and the tiles laid over it, on synthetic slides with known masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from cytoreview.data.synthetic_slide import GLASS, SyntheticSlide
from cytoreview.data.tissue import (
    Box,
    Tile,
    glass_white,
    optical_density,
    tiles_over_mask,
    tissue_mask,
)

#: Level-0 px per thumbnail pixel in these tests; a synthetic 512 px field is ~3 px/µm.
DOWNSAMPLE = 16
PIXEL_SIZE_UM = 1 / 3
#: The default 16 µm margin in thumbnail px (16 µm / 5.3 µm per px, rounded up), plus one.
MARGIN = 5


def thumbnail(rgb: np.ndarray, downsample: int = DOWNSAMPLE) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // downsample, h // downsample), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def slide() -> tuple[np.ndarray, np.ndarray]:
    """A 3072 x 3072 px slide of 512 px fields, about a third of them bare glass."""
    return SyntheticSlide(3072, 3072, seed=5, field=512, empty_fraction=0.35).region(
        0, 0, 3072, 3072
    )


def test_bare_glass_gives_an_all_false_mask() -> None:
    rng = np.random.default_rng(0)
    glass = np.empty((200, 300, 3), np.int16)
    glass[:] = GLASS
    glass += rng.integers(-4, 5, glass.shape, dtype=np.int16)  # sensor noise, not material
    mask = tissue_mask(glass.clip(0, 255).astype(np.uint8), pixel_size_um=8.0)
    assert mask.shape == (200, 300) and mask.dtype == bool
    assert not mask.any()


def test_uniform_images_give_no_noise() -> None:
    assert not tissue_mask(np.full((64, 64, 3), 250, np.uint8)).any()


def test_a_pale_cell_on_glass_is_kept_with_a_margin_and_a_speck_is_dropped() -> None:
    image = np.empty((120, 120, 3), np.uint8)
    image[:] = GLASS
    cv2.circle(image, (60, 60), 10, (200, 222, 220), -1)  # pale cyan cytoplasm, OD ~0.17 red
    image[5, 5] = (120, 120, 120)  # one dark speck: dust
    mask = tissue_mask(image, pixel_size_um=4.0, min_object_um2=60.0, margin_um=16.0)
    assert mask[60, 60] and mask[60, 60 + 10 + 3]  # the cell and 4 px (16 µm) beyond it
    assert not mask[60, 60 + 10 + 6]
    assert not mask[:15, :15].any()


def test_tissue_mask_keeps_cell_fields_and_skips_glass_fields(slide) -> None:
    rgb, labels = slide
    mask = tissue_mask(thumbnail(rgb), pixel_size_um=PIXEL_SIZE_UM * DOWNSAMPLE)
    f = 512
    glass_kept, glass_fields = 0, 0
    for y in range(0, rgb.shape[0], f):
        for x in range(0, rgb.shape[1], f):
            truth = labels[y : y + f, x : x + f]
            under = mask[
                y // DOWNSAMPLE : (y + f) // DOWNSAMPLE, x // DOWNSAMPLE : (x + f) // DOWNSAMPLE
            ]
            if truth.any():
                # Every cell is covered: no true cell pixel lies outside the mask.
                cells = cv2.resize(
                    (truth > 0).astype(np.uint8), under.shape[::-1], interpolation=cv2.INTER_AREA
                )
                assert not (cells.astype(bool) & ~under).any()
            else:
                # Bare glass stays out, but for the margin grown from a neighbour's cells.
                glass_fields += 1
                glass_kept += int(under[MARGIN:-MARGIN, MARGIN:-MARGIN].any())
    assert glass_fields >= 5, "the fixture should have bare fields"
    assert glass_kept == 0


def test_glass_white_reads_the_glass(slide) -> None:
    # The backgrounds of the synthetic fields are a little brighter than the bare fields.
    white = glass_white(thumbnail(slide[0]))
    assert np.all((white >= np.array(GLASS)) & (white <= np.array(GLASS) + 12))


def test_tiles_cover_every_true_nucleus_and_skip_glass() -> None:
    # More glass than the fixture, so that some tiles are far from every cell.
    rgb, labels = SyntheticSlide(3072, 3072, seed=5, empty_fraction=0.6).region(0, 0, 3072, 3072)
    mask = tissue_mask(thumbnail(rgb), pixel_size_um=PIXEL_SIZE_UM * DOWNSAMPLE)
    tiles = tiles_over_mask(rgb.shape[:2], mask, DOWNSAMPLE, tile=256, halo=64)
    comp, n = ndi.label(labels == 2)
    centres = ndi.center_of_mass(np.ones_like(comp), comp, range(1, n + 1))
    for cy, cx in centres:
        assert sum(t.core.contains(cy, cx) for t in tiles) == 1
    # Glass: no true cell and nothing absorbing (distractors are material too) near a tile.
    density = optical_density(rgb, glass_white(thumbnail(rgb))).max(axis=2)
    dark = cv2.GaussianBlur(density, (0, 0), 3) > 0.06  # bare fields read ~0.04 here
    empty = [
        (y, x)
        for y in range(0, rgb.shape[0], 256)
        for x in range(0, rgb.shape[1], 256)
        if not (labels > 0)[max(0, y - 64) : y + 320, max(0, x - 64) : x + 320].any()
        and not dark[max(0, y - 64) : y + 320, max(0, x - 64) : x + 320].any()
    ]
    assert len(empty) >= 8, "the fixture should have bare glass"
    assert not {t.core[:2] for t in tiles} & set(empty)
    assert len(tiles) <= 144 - len(empty)


def test_tiles_partition_the_slide_in_row_major_order() -> None:
    shape = (1000, 1300)
    tiles = tiles_over_mask(shape, np.ones((63, 82), bool), 16, tile=256, halo=32)
    assert [t.core[:2] for t in tiles] == sorted(t.core[:2] for t in tiles)
    assert sum(t.core.h * t.core.w for t in tiles) == shape[0] * shape[1]
    for t in tiles:
        y, x, h, w = t.window
        assert y == max(0, t.core.y - 32) and x == max(0, t.core.x - 32)
        assert y + h == min(shape[0], t.core.y + t.core.h + 32)
        assert x + w == min(shape[1], t.core.x + t.core.w + 32)
    assert tiles[-1].core == Box(768, 1280, 232, 20)


def test_material_in_the_last_mask_pixel_keeps_the_edge_tile() -> None:
    # 1000 / 16 = 62.5 mask rows: the last row covers level-0 rows 992-1007 (partly beyond).
    mask = np.zeros((63, 82), bool)
    mask[62, 81] = True
    tiles = tiles_over_mask((1000, 1300), mask, 16, tile=256, halo=0)
    assert tiles == [Tile(Box(768, 1280, 232, 20), Box(768, 1280, 232, 20))]


def test_an_empty_mask_gives_no_tiles_and_bad_input_is_refused() -> None:
    assert tiles_over_mask((512, 512), np.zeros((32, 32), bool), 16) == []
    with pytest.raises(ValueError, match="tile"):
        tiles_over_mask((512, 512), np.ones((32, 32), bool), 16, tile=0)
    with pytest.raises(ValueError, match="2-D"):
        tiles_over_mask((512, 512), np.ones((32, 32, 3), bool), 16)
