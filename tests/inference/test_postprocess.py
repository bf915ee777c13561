"""Mask clean-up rules on drawn shapes, plus invariants on random masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from cytoreview.inference.postprocess import PostprocessConfig, clean_mask

EIGHT = np.ones((3, 3), bool)


def cell(mask: np.ndarray, centre: tuple[int, int], r_cell: int, r_nucleus: int) -> np.ndarray:
    """Draw a disc of cytoplasm with a nucleus disc at its centre (x, y order for OpenCV)."""
    cv2.circle(mask, centre, r_cell, 1, -1)
    if r_nucleus:
        cv2.circle(mask, centre, r_nucleus, 2, -1)
    return mask


def nuclei_inside_cytoplasm(mask: np.ndarray) -> bool:
    """Every nucleus lies in a foreground component (8-connected) that has cytoplasm."""
    cells, _ = ndimage.label(mask > 0, structure=EIGHT)
    with_cytoplasm = set(np.unique(cells[mask == 1]).tolist())
    return set(np.unique(cells[mask == 2]).tolist()) <= with_cytoplasm


# --- rule (a): nucleus only inside cytoplasm ---------------------------------------------------
def test_lone_nucleus_blob_becomes_background() -> None:
    mask = cell(np.zeros((40, 60), np.uint8), (15, 20), 10, 4)
    cv2.circle(mask, (48, 20), 5, 2, -1)  # a dark blob with no cytoplasm
    out = clean_mask(mask)
    assert (out[:, 35:] == 0).all()
    np.testing.assert_array_equal(out[:, :35], mask[:, :35])


def test_nucleus_touching_cytoplasm_edge_is_kept() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[5:25, 5:15] = 1
    mask[10:20, 15:22] = 2  # nucleus bulging out of the cytoplasm, still one cell
    np.testing.assert_array_equal(clean_mask(mask), mask)


def test_diagonal_contact_joins_a_nucleus_to_its_cell() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[5:15, 5:15] = 1
    mask[15:20, 15:20] = 2  # touches the cytoplasm only at a corner: 8-connected
    np.testing.assert_array_equal(clean_mask(mask), mask)


# --- rule (b): holes ---------------------------------------------------------------------------
def hollow_square(mask: np.ndarray, top: int, bottom: int, width: int = 2) -> np.ndarray:
    mask[top:bottom, top:bottom] = 1
    mask[top + width : bottom - width, top + width : bottom - width] = 0
    return mask


def test_background_hole_in_cell_becomes_cytoplasm() -> None:
    mask = hollow_square(np.zeros((40, 40), np.uint8), 5, 31)
    expected = np.zeros_like(mask)
    expected[5:31, 5:31] = 1
    np.testing.assert_array_equal(clean_mask(mask), expected)


def test_nucleus_inside_a_halo_is_kept() -> None:
    # A koilocyte: nucleus, a clear halo predicted as background, a rim of cytoplasm. The halo
    # is filled first, so the nucleus is part of the cell and not a lone blob.
    mask = hollow_square(np.zeros((40, 40), np.uint8), 5, 31)
    mask[15:20, 15:20] = 2
    expected = np.zeros_like(mask)
    expected[5:31, 5:31] = 1
    expected[15:20, 15:20] = 2
    np.testing.assert_array_equal(clean_mask(mask), expected)
    halo_kept = clean_mask(mask, PostprocessConfig(fill_holes=False))
    assert not (halo_kept == 2).any()  # without filling, the nucleus is a lone blob


def test_eight_connected_ring_encloses_its_hole() -> None:
    mask = np.zeros((20, 20), np.uint8)
    ring = [(5, 9), (6, 8), (7, 7), (8, 6), (9, 5), (10, 6), (11, 7), (12, 8), (13, 9)]
    ring += [(12, 10), (11, 11), (10, 12), (9, 13), (8, 12), (7, 11), (6, 10)]
    for r, c in ring:  # a 1-px diamond whose pixels touch only diagonally
        mask[r, c] = 1
    out = clean_mask(mask)
    assert out[9, 9] == 1 and out[7, 9] == 1 and out[11, 9] == 1
    assert out[9, 4] == 0


def test_open_shapes_and_border_regions_are_not_filled() -> None:
    mask = hollow_square(np.zeros((40, 40), np.uint8), 5, 27)
    mask[14:17, 24:28] = 0  # a gap in the right side: the inside reaches the outside
    mask[30:, 30] = 1  # a wall cutting off the bottom-right corner with the image border
    mask[30, 30:] = 1
    mask[10:20, :4] = 1  # a bracket against the left border only
    mask[10:20, 3] = 1
    mask[10, :4] = mask[19, :4] = 1
    mask[11:19, :3] = 0
    out = clean_mask(mask)
    assert out[15, 15] == 0
    assert (out[31:, 31:] == 0).all()
    assert (out[11:19, :3] == 0).all()


def test_cytoplasm_enclosed_by_nucleus_becomes_nucleus() -> None:
    mask = cell(np.zeros((40, 40), np.uint8), (20, 20), 15, 0)
    cv2.circle(mask, (20, 20), 7, 2, 2)  # nucleus ring around cytoplasm
    mask[20, 20] = 0  # and a background pixel in there
    out = clean_mask(mask)
    inside = np.zeros_like(mask)
    cv2.circle(inside, (20, 20), 8, 1, -1)
    assert (out[inside == 1] == 2).all()
    assert (out[(mask == 1) & (inside == 0)] == 1).all()


def test_nucleus_ring_without_outer_cytoplasm_is_dropped() -> None:
    # Cytoplasm only inside the ring: after (b) it is nucleus, so the cell has none left (a).
    mask = np.zeros((40, 40), np.uint8)
    cv2.circle(mask, (20, 20), 7, 2, -1)
    cv2.circle(mask, (20, 20), 4, 1, -1)
    assert not clean_mask(mask).any()
    kept = clean_mask(mask, PostprocessConfig(fill_holes=False))
    np.testing.assert_array_equal(kept, mask)


def test_fill_holes_off_keeps_holes() -> None:
    mask = hollow_square(np.zeros((40, 40), np.uint8), 5, 31)
    np.testing.assert_array_equal(clean_mask(mask, PostprocessConfig(fill_holes=False)), mask)


# --- rule (c): specks --------------------------------------------------------------------------
def test_small_cells_dropped_at_min_cell_px() -> None:
    mask = np.zeros((40, 40), np.uint8)  # 1600 px * 0.001 = 1.6 px: the 16 px floor applies
    mask[2:5, 2:7] = 1  # 15 px
    mask[20:24, 20:24] = 1  # 16 px
    mask[21, 21] = 2  # nucleus pixels count towards the cell's size
    mask[30:33, 30:35] = 1  # 14 px cytoplasm + 1 nucleus = 15 px
    mask[31, 30] = 2
    out = clean_mask(mask, PostprocessConfig(min_nucleus_px=1))
    expected = np.zeros_like(mask)
    expected[20:24, 20:24] = 1
    expected[21, 21] = 2
    np.testing.assert_array_equal(out, expected)


def test_small_cells_dropped_at_min_cell_fraction() -> None:
    mask = np.zeros((100, 100), np.uint8)  # 10000 px * 0.01 = 100 px limit
    mask[5:14, 5:16] = 1  # 99 px
    mask[50:60, 50:60] = 1  # 100 px
    out = clean_mask(mask, PostprocessConfig(min_cell_fraction=0.01))
    assert not out[:20, :20].any()
    assert (out[50:60, 50:60] == 1).all()
    assert (clean_mask(mask)[5:14, 5:16] == 1).all()  # default limit 16 px keeps it


def test_nucleus_specks_become_cytoplasm() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[5:35, 5:35] = 1
    mask[10:13, 10] = 2  # 3 px
    mask[20:22, 20:22] = 2  # 4 px
    out = clean_mask(mask)
    assert (out[10:13, 10] == 1).all()
    assert (out[20:22, 20:22] == 2).all()
    assert (clean_mask(mask, PostprocessConfig(min_nucleus_px=5))[20:22, 20:22] == 1).all()


def test_nucleus_parts_touching_diagonally_are_one_nucleus() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:18, 2:18] = 1
    mask[8, 8:10] = 2  # 2 px
    mask[9, 10:12] = 2  # 2 px touching the first at a corner: one 4 px nucleus
    np.testing.assert_array_equal(clean_mask(mask), mask)


# --- invariants --------------------------------------------------------------------------------
def random_mask(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if seed % 4 == 0:  # salt and pepper: many specks and diagonal contacts
        return rng.integers(0, 3, shape).astype(np.uint8)
    if seed % 4 == 1:  # concentric filled and hollow circles of any label: rings, holes, halos
        mask = np.zeros(shape, np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
            radius = int(rng.integers(4, 16))
            while radius > 0:
                label, thickness = int(rng.integers(0, 3)), int(rng.choice([-1, 1, 2]))
                cv2.circle(mask, centre, radius, label, thickness)
                radius -= int(rng.integers(1, 5))
        return mask
    # Smooth blobs; nuclei from a second field, so they may stick out of the cytoplasm.
    sigma = 1.0 + seed % 3
    fields = [cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma) for _ in "ab"]
    mask = (fields[0] > np.quantile(fields[0], 0.5)).astype(np.uint8)
    mask[fields[1] > np.quantile(fields[1], 0.7)] = 2
    return mask


CONFIGS = [
    PostprocessConfig(),
    PostprocessConfig(fill_holes=False),
    PostprocessConfig(min_cell_px=1, min_cell_fraction=0.0, min_nucleus_px=12),
    PostprocessConfig(min_cell_fraction=0.02, min_nucleus_px=1),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_idempotent_and_nuclei_inside_cytoplasm(config: PostprocessConfig) -> None:
    for seed in range(80):
        mask = random_mask(seed)
        once = clean_mask(mask, config)
        np.testing.assert_array_equal(clean_mask(once, config), once, err_msg=f"seed {seed}")
        assert nuclei_inside_cytoplasm(once), seed
    assert not nuclei_inside_cytoplasm(np.array([[2, 0, 1]], np.uint8))  # the check can fail


def test_dtype_shape_and_input_untouched() -> None:
    mask = cell(np.zeros((30, 50), np.uint8), (25, 15), 10, 3).astype(np.int64)
    mask[0, 0] = 2
    before = mask.copy()
    out = clean_mask(mask)
    assert out.dtype == np.uint8 and out.shape == (30, 50)
    np.testing.assert_array_equal(mask, before)
    assert out[0, 0] == 0
    np.testing.assert_array_equal(clean_mask(mask[:, ::-1]), out[:, ::-1])  # strided view


def test_all_background_and_empty() -> None:
    out = clean_mask(np.zeros((16, 16), np.uint8))
    assert out.dtype == np.uint8 and not out.any()
    assert clean_mask(np.zeros((0, 5), np.uint8)).shape == (0, 5)


def test_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        clean_mask(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="labels outside"):
        clean_mask(np.full((4, 4), 3, np.uint8))
    with pytest.raises(ValueError, match="integer"):
        clean_mask(np.zeros((4, 4), np.float32))


def test_nucleus_only_rules_keep_lone_nuclei_and_drop_specks() -> None:
    from cytoreview.inference.postprocess import PostprocessConfig, clean_mask

    labels = np.zeros((40, 40), np.uint8)
    labels[5:15, 5:15] = 2  # a nucleus with no cytoplasm around it
    labels[9:11, 9:11] = 0  # a hole in it
    labels[30, 30] = 2  # a speck
    usual = clean_mask(labels)
    assert not (usual == 2).any()  # the usual rules drop a nucleus without cytoplasm
    only = clean_mask(labels, PostprocessConfig(require_cytoplasm=False))
    assert (only[5:15, 5:15] == 2).all()  # kept, hole filled
    assert only[30, 30] == 0 and not (only == 1).any()
