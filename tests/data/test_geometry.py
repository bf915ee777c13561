"""Crops or fields: the geometry rule read from the painted masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytoreview.data.datasets import SegmentationDataset, grid_origins, windows_per_field
from cytoreview.data.geometry import (
    MIN_OVERLAP_PX,
    NUCLEUS_TARGET_PX,
    choose_geometry,
    object_sizes,
)


def field_mask(n_cells: int, size: int = 400, nucleus_r: int = 6, cell_r: int = 30,
               seed: int = 0, cytoplasm: bool = True) -> np.ndarray:  # fmt: skip
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(n_cells):
        c = tuple(int(v) for v in rng.integers(cell_r, size - cell_r, 2))
        if cytoplasm:
            cv2.circle(mask, c, cell_r, 1, -1)
        cv2.circle(mask, c, nucleus_r, 2, -1)
    return mask


def test_single_cell_crops_are_letterboxed() -> None:
    crops = [field_mask(1, size=64, cell_r=25, seed=s) for s in range(5)]
    geometry = choose_geometry(crops)
    assert geometry.mode == "crops" and geometry.tile_threshold == 1024 and geometry.scale == 1.0
    assert "single-cell crops" in geometry.reason


def test_specks_beside_a_cells_nucleus_do_not_make_a_crop_a_field() -> None:
    # A generated (thresholded) mask: the cell's nucleus plus two dark crumbs of a few pixels.
    crops = []
    for s in range(5):
        mask = field_mask(1, size=64, cell_r=25, nucleus_r=8, seed=s)
        mask[2:5, 2:5] = 2  # 9 px: more than MIN_NUCLEUS_PX, far less than a nucleus
        mask[60:62, 58:62] = 2
        crops.append(mask)
    geometry = choose_geometry(crops)
    assert geometry.mode == "crops", geometry.reason
    assert object_sizes(crops).nucleus_diameter == pytest.approx(2 * 8, abs=2)
    # Nuclei of different sizes in a field (a large atypical one among normal ones) still count.
    field = field_mask(6, nucleus_r=5, seed=1)
    cv2.circle(field, (200, 200), 14, 2, -1)  # about 8x the area of the others
    assert choose_geometry([field]).mode == "fields"


def test_fields_are_tiled_at_native_scale_when_nuclei_are_small() -> None:
    fields = [field_mask(6, seed=s) for s in range(4)]
    sizes = object_sizes(fields)
    assert sizes.nuclei_per_mask >= 5
    assert sizes.nucleus_diameter == pytest.approx(13, abs=1.5)  # r = 6 px
    geometry = choose_geometry(fields)
    assert geometry.mode == "fields" and geometry.tile_threshold == 0 and geometry.scale == 1.0
    assert MIN_OVERLAP_PX <= geometry.tile_overlap < 128


def test_large_nuclei_are_shrunk_only_to_the_target_size() -> None:
    fields = [field_mask(4, size=800, nucleus_r=24, cell_r=70, seed=s) for s in range(3)]
    geometry = choose_geometry(fields)
    diameter = object_sizes(fields).nucleus_diameter
    assert geometry.mode == "fields"
    assert geometry.scale == pytest.approx(NUCLEUS_TARGET_PX / diameter, abs=1e-3)
    assert diameter * geometry.scale >= NUCLEUS_TARGET_PX - 0.01  # never below the target


def test_nucleus_only_masks_decide_by_nuclei_and_estimate_the_halo() -> None:
    fields = [field_mask(6, seed=s, cytoplasm=False) for s in range(3)]
    sizes = object_sizes(fields)
    assert sizes.cell_diameter is None and sizes.nuclei_per_mask >= 5
    geometry = choose_geometry(fields)
    assert geometry.mode == "fields"
    assert geometry.tile_overlap == max(MIN_OVERLAP_PX, round(2 * sizes.nucleus_diameter))


def test_a_field_gives_several_windows_and_a_validation_grid() -> None:
    image = np.zeros((300, 520, 3), np.uint8)
    mask = np.zeros((300, 520), np.uint8)
    assert windows_per_field(mask.shape, 128) == round(300 * 520 / 128**2)
    grid = grid_origins(mask.shape, 128)
    assert (0, 0) in grid and (300 - 128, 520 - 128) in grid
    train = SegmentationDataset([image], [mask], 128, augment=None, tile_threshold=0)
    assert len(train) == len(grid)
    x, y = train[len(train) - 1]
    assert tuple(x.shape) == (3, 128, 128) and tuple(y.shape) == (128, 128)
    half = SegmentationDataset([image], [mask], 128, augment=None, tile_threshold=0, scale=0.5)
    assert half.images[0].shape[:2] == (150, 260)
    small = SegmentationDataset([image[:50, :60]], [mask[:50, :60]], 128, tile_threshold=0)
    assert len(small) == 1 and tuple(small[0][1].shape) == (128, 128)  # padded


def test_the_person_may_overrule_the_rule() -> None:
    fields = [field_mask(6, seed=s) for s in range(3)]
    crops = [field_mask(1, size=64, cell_r=25, seed=s) for s in range(3)]
    forced = choose_geometry(fields, mode="crops")
    assert forced.mode == "crops" and "as asked" in forced.reason
    assert choose_geometry(crops, mode="fields").mode == "fields"
    with pytest.raises(ValueError, match="unknown geometry"):
        choose_geometry(crops, mode="tiles")
