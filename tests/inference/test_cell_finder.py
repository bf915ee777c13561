"""Tests of the cell finder's compute: nuclei of a tile, seams, and recall on a synthetic slide."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from cytoreview.data.nuclei_otsu import nucleus_labels_otsu
from cytoreview.data.synthetic_slide import GLASS, SyntheticSlide
from cytoreview.data.tissue import Box, Tile, tiles_over_mask
from cytoreview.inference.cell_finder import CellCandidate, find_cells_in_tile, find_nuclei

#: µm per px of a synthetic slide (fields of 512 px paint cells at ~3 px/µm).
PIXEL_SIZE_UM = 1 / 3
SLIDE = 2048


def disks(shape: tuple[int, int], centres, radius: int, cell_radius: int = 0) -> np.ndarray:
    """A label mask of nuclei (2) of ``radius``, each in a cytoplasm disc (1) if asked."""
    labels = np.zeros(shape, np.uint8)
    for cy, cx in centres:
        if cell_radius:
            cv2.circle(labels, (cx, cy), cell_radius, 1, -1)
    for cy, cx in centres:
        cv2.circle(labels, (cx, cy), radius, 2, -1)
    return labels


@pytest.fixture(scope="module")
def slide() -> tuple[np.ndarray, np.ndarray]:
    return SyntheticSlide(SLIDE, SLIDE, seed=11, empty_fraction=0.25).region(0, 0, SLIDE, SLIDE)


def run_tiles(rgb: np.ndarray, tile: int, halo: int, **kwargs) -> list[CellCandidate]:
    mask = np.ones((rgb.shape[0] // 16 + 1, rgb.shape[1] // 16 + 1), bool)
    found = []
    for t in tiles_over_mask(rgb.shape[:2], mask, 16, tile=tile, halo=halo):
        y, x, h, w = t.window
        found += find_cells_in_tile(rgb[y : y + h, x : x + w], t.core, halo, **kwargs)
    return found


def hits(candidates: list[CellCandidate], truth: np.ndarray) -> np.ndarray:
    """The true nucleus under each candidate's centroid (0: none)."""
    return np.array([truth[round(c.y), round(c.x)] for c in candidates], np.int64)


def test_separate_nuclei_give_their_centroid_area_and_box() -> None:
    labels = disks((200, 300), [(50, 60), (140, 220)], 12, cell_radius=30)
    found = find_nuclei(labels, pixel_size_um=None, min_context=0.5)
    assert [(round(c.y), round(c.x)) for c in found] == [(50, 60), (140, 220)]
    area = float((disks((200, 300), [(50, 60)], 12) == 2).sum())
    assert all(c.area_px == area and c.score == 1.0 for c in found)
    assert found[0].bbox == Box(38, 48, 25, 25)


def test_the_size_range_is_read_in_square_micrometres_when_the_pixel_size_is_known() -> None:
    labels = disks((200, 300), [(50, 60)], 12, cell_radius=30)  # 455 px² nucleus
    labels |= disks((200, 300), [(140, 220)], 3, cell_radius=30)  # 29 px² speck
    small = find_nuclei(labels, pixel_size_um=0.5)  # 114 µm² and 7 µm² nuclei
    assert [(round(c.y), round(c.x)) for c in small] == [(50, 60)]
    (speck,) = find_nuclei(labels, pixel_size_um=0.5, area_um2=(1, 50))
    assert (round(speck.y), round(speck.x)) == (140, 220)
    assert len(find_nuclei(labels, pixel_size_um=None, area_px=(1, 1000))) == 2


def test_touching_nuclei_are_split_only_when_asked() -> None:
    labels = disks((120, 160), [(60, 60), (60, 92)], 18, cell_radius=40)  # overlap by 4 px
    assert len(find_nuclei(labels, split=False)) == 1
    two = find_nuclei(labels, split=True)
    assert len(two) == 2
    assert [round(c.x) for c in two] == pytest.approx([59, 93], abs=3)
    # One round nucleus stays whole.
    assert len(find_nuclei(disks((120, 160), [(60, 80)], 25, cell_radius=40))) == 1


def test_a_naked_nucleus_on_glass_is_not_a_candidate_cell() -> None:
    labels = disks((120, 160), [(60, 80)], 12)  # no cytoplasm around
    assert find_nuclei(labels, min_context=0.3) == []
    (kept,) = find_nuclei(labels, min_context=0.0)
    assert kept.score == 0.0


def test_probabilities_give_a_mean_probability_score() -> None:
    probs = np.zeros((3, 100, 100), np.float32)
    probs[0] = 1.0
    cell = disks((100, 100), [(50, 50)], 10, cell_radius=30)
    probs[:, cell == 1] = np.array([[0.1], [0.8], [0.1]])
    probs[:, cell == 2] = np.array([[0.0], [0.3], [0.7]])
    (found,) = find_nuclei(probs)
    assert found.score == pytest.approx(0.7)
    (alone,) = find_nuclei(probs[2])  # a nucleus probability alone: no context test
    assert alone.score == pytest.approx(0.7) and (round(alone.y), round(alone.x)) == (50, 50)
    with pytest.raises(ValueError, match="classes"):
        find_nuclei(probs[:2])


def test_an_empty_tile_gives_no_candidates() -> None:
    glass = np.empty((300, 300, 3), np.uint8)
    glass[:] = GLASS
    assert not nucleus_labels_otsu(glass).any()
    assert find_cells_in_tile(glass, Box(0, 0, 300, 300), 0) == []
    assert find_nuclei(np.zeros((50, 50), np.uint8)) == []


def test_a_tile_that_does_not_cover_its_core_is_refused() -> None:
    with pytest.raises(ValueError, match="does not cover"):
        find_cells_in_tile(np.zeros((100, 100, 3), np.uint8), Box(64, 64, 128, 128), 32)


def test_candidates_come_back_in_level0_coordinates_from_a_lower_level() -> None:
    level0 = disks((800, 800), [(333, 517)], 40, cell_radius=120)

    def model(_: np.ndarray) -> np.ndarray:  # the "model" sees level 1 (half size)
        return cv2.resize(level0, (400, 400), interpolation=cv2.INTER_NEAREST)

    rgb1 = np.zeros((400, 400, 3), np.uint8)
    (c,) = find_cells_in_tile(rgb1, Box(0, 0, 400, 400), 0, nucleus_prob_fn=model, downsample=2)
    assert (c.y, c.x) == pytest.approx((333, 517), abs=1.0)
    assert c.area_px == pytest.approx((level0 == 2).sum(), rel=0.05)
    assert Box(*c.bbox).contains(333, 517)


def test_each_nucleus_is_found_once_across_tile_seams(slide) -> None:
    rgb, labels = slide
    truth, _ = ndi.label(labels == 2)

    def true_labels(window: np.ndarray) -> np.ndarray:  # a perfect "model" of this window
        ys, xs = window_of[id(window)]
        return labels[ys, xs]

    window_of: dict[int, tuple[slice, slice]] = {}
    found = []
    mask = np.ones((SLIDE // 16, SLIDE // 16), bool)
    for t in tiles_over_mask((SLIDE, SLIDE), mask, 16, tile=256, halo=96):
        y, x, h, w = t.window
        window = rgb[y : y + h, x : x + w]
        window_of[id(window)] = (slice(y, y + h), slice(x, x + w))
        found += find_cells_in_tile(
            window,
            t.core,
            96,
            nucleus_prob_fn=true_labels,
            pixel_size_um=PIXEL_SIZE_UM,
            split=False,
        )
    sizes = np.bincount(truth.ravel())[1:] * PIXEL_SIZE_UM**2
    plausible = set(np.flatnonzero((sizes >= 20) & (sizes <= 600)) + 1)
    under = hits(found, truth)
    assert 0 not in under  # no candidate off a true nucleus
    assert sorted(under) == sorted(set(under))  # none found twice
    assert set(under) >= plausible  # every plausible nucleus found
    assert len(plausible) >= 20


def test_otsu_path_finds_most_true_nuclei_of_a_synthetic_slide(slide) -> None:
    rgb, labels = slide
    truth, n = ndi.label(labels == 2)
    found = run_tiles(rgb, 512, 128, pixel_size_um=PIXEL_SIZE_UM)
    under = hits(found, truth)
    recall = len(set(under) - {0}) / n
    precision = float((under > 0).mean())
    on_cells = float(np.mean([labels[round(c.y), round(c.x)] > 0 for c in found]))
    assert n >= 30
    assert recall >= 0.9, f"recall {recall:.2f}"
    # The rest are mostly leucocytes and debris the generator leaves unlabelled: few false
    # hits fall on a true cell's cytoplasm.
    assert precision >= 0.3, f"precision {precision:.2f}"
    assert on_cells - precision <= 0.1


def test_small_tiles_find_the_nuclei_one_pass_finds(slide) -> None:
    # Each window sets its own Otsu threshold, so the leucocytes and specks near the threshold
    # may differ; the true nuclei must not.
    rgb, labels = slide
    truth, _ = ndi.label(labels == 2)
    whole = find_cells_in_tile(rgb, Box(0, 0, SLIDE, SLIDE), 0, pixel_size_um=PIXEL_SIZE_UM)
    tiled = run_tiles(rgb, 256, 128, pixel_size_um=PIXEL_SIZE_UM)
    by_whole, by_tiles = set(hits(whole, truth)) - {0}, set(hits(tiled, truth)) - {0}
    assert len(by_whole) >= 30
    assert len(by_whole & by_tiles) >= 0.9 * len(by_whole)
    assert 0.7 <= len(tiled) / len(whole) <= 1.4


def test_the_tile_function_is_pure() -> None:
    rgb, _ = SyntheticSlide(512, 512, seed=2, empty_fraction=0).region(0, 0, 512, 512)
    before = rgb.copy()
    tile = Tile(Box(0, 0, 512, 512), Box(0, 0, 512, 512))
    first = find_cells_in_tile(rgb, tile.core, 0, pixel_size_um=PIXEL_SIZE_UM)
    assert np.array_equal(rgb, before)
    assert find_cells_in_tile(rgb, tile.core, 0, pixel_size_um=PIXEL_SIZE_UM) == first
