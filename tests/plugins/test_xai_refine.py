"""GrabCut refinement of grouped relevance (XAI weak-mask plugin) on synthetic cells."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cytoreview_xai.grouping import METHODS, group_relevance
from cytoreview_xai.refine import disagreement, refine_grouping, weak_mask

from cytoreview.data.synthetic import synth_cell

CLASSES = ("NILM", "ASC-US", "LSIL", "HSIL")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _mean_dice(labels: np.ndarray, truth: np.ndarray) -> float:
    return (_dice(labels == 1, truth == 1) + _dice(labels == 2, truth == 2)) / 2


def _cells(n: int = 8, size: int = 64) -> list:
    return [synth_cell(CLASSES[i % 4], 100 + i, size) for i in range(n)]


def _relevance(mask: np.ndarray, seed: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A stand-in explanation: the true mask (nucleus 2 > cell 1 > 0) blurred, shifted, noisy."""
    heat = cv2.GaussianBlur(mask.astype(np.float64), (0, 0), 2.0)
    heat = np.roll(heat, shift, axis=(0, 1))
    return heat + np.random.default_rng(seed).normal(0.0, 0.05, heat.shape)


def _touching_background(labels: np.ndarray) -> int:
    """Nucleus pixels with a background pixel among their 8 neighbours (image edge aside)."""
    nucleus = (labels == 2).astype(np.uint8)
    touching = cv2.dilate(nucleus, np.ones((3, 3), np.uint8)).astype(bool) & (labels == 0)
    return int(touching[1:-1, 1:-1].sum())


@pytest.mark.parametrize("method", METHODS)
def test_one_cell_holds_the_nucleus(method: str) -> None:
    for i, sample in enumerate(_cells(4)):
        for shift in ((0, 0), (3, -2)):
            _, refined = weak_mask(sample.image, _relevance(sample.mask, i, shift), method)
            labels = refined.labels
            assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
            assert (labels == 2).any()
            # One cell (background + one component), the nucleus in it, holes filled.
            assert cv2.connectedComponents((labels > 0).astype(np.uint8))[0] == 2
            assert 0.0 <= refined.uncertainty <= 1.0
            if method == "two-threshold":
                # With groups close to the truth the nucleus has cytoplasm all round it.
                # (GMM, k-means and inter-means put the whole cell in the nucleus group on
                # some of these cells; the nucleus then is the cell, rightly.)
                assert _touching_background(labels) == 0


def test_a_nucleus_group_leaking_out_of_the_cell_is_taken_in() -> None:
    sample = synth_cell("HSIL", 5, 64)
    grouped = (sample.mask > 0).astype(np.uint8)
    rows, cols = np.nonzero(grouped)
    # A nucleus group half outside the cell's group, on its right edge: the cell grows.
    r, c = int(rows.mean()), int(cols[rows == int(rows.mean())].max())
    grouped[r - 4 : r + 4, c - 4 : c + 4] = 2
    result = refine_grouping(sample.image, grouped)
    assert (result.labels == 2).any()
    assert cv2.connectedComponents((result.labels > 0).astype(np.uint8))[0] == 2


def test_grabcut_improves_on_the_grouping() -> None:
    # Measured on these 8 synthetic 64 px cells (blur sd 2 px, noise sd 0.05), mean of Dice
    # cytoplasm and nucleus, grouped -> refined: two-threshold 0.91 -> 0.96 in place, 0.75 ->
    # 0.91 with the relevance shifted by (3, -2) px; better on 15 of 16, never worse. (With
    # k-means groups 0.67 -> 0.71, with GMM 0.34 -> 0.36, with inter-means 0.42 -> 0.39: those
    # groupings put part of the cytoplasm in the nucleus group here, and GrabCut cannot undo
    # a wrong group, it only moves its edge.)
    grouped, refined = [], []
    for i, sample in enumerate(_cells()):
        for shift in ((0, 0), (3, -2)):
            heat = _relevance(sample.mask, i, shift)
            plain = weak_mask(sample.image, heat, "two-threshold", grabcut=False)[1]
            cut = weak_mask(sample.image, heat, "two-threshold")[1]
            assert cut.cell_refined and cut.nucleus_refined and not plain.cell_refined
            grouped.append(_mean_dice(plain.labels, sample.mask))
            refined.append(_mean_dice(cut.labels, sample.mask))
    assert np.mean(refined) >= np.mean(grouped) + 0.06
    assert min(r - g for r, g in zip(refined, grouped, strict=True)) > -0.02


def test_same_inputs_same_mask() -> None:
    sample = synth_cell("HSIL", 7, 48)
    heat = _relevance(sample.mask, 0)
    first = weak_mask(sample.image, heat, "gmm")[1]
    second = weak_mask(sample.image, heat, "gmm")[1]
    assert np.array_equal(first.labels, second.labels)
    assert first.uncertainty == second.uncertainty


def test_tiny_image_and_missing_parts_keep_the_grouping() -> None:
    sample = synth_cell("LSIL", 3, 40)
    # No nucleus group: GrabCut refines the cell only, no nucleus appears.
    cell_only = (sample.mask > 0).astype(np.uint8)
    result = refine_grouping(sample.image, cell_only)
    assert result.cell_refined and not result.nucleus_refined
    assert not (result.labels == 2).any() and (result.labels == 1).any()
    # A three-pixel nucleus is too small for GrabCut's colour models: kept as grouped.
    grouped = cell_only.copy()
    grouped[20, 19:22] = 2
    result = refine_grouping(sample.image, grouped)
    assert not result.nucleus_refined
    assert (result.labels[20, 19:22] == 2).all() and (result.labels == 2).sum() == 3
    # No group at all: all background, certain.
    empty = refine_grouping(sample.image, np.zeros((40, 40), np.uint8))
    assert not empty.labels.any() and not empty.cell_refined and empty.uncertainty == 0.0
    # The whole image one group: no background seeds, kept as grouped.
    full = refine_grouping(sample.image, np.ones((40, 40), np.uint8))
    assert not full.cell_refined and (full.labels == 1).all()


def test_flat_image_does_not_raise() -> None:
    flat = np.full((40, 40, 3), 200, np.uint8)
    grouped = group_relevance(_relevance(synth_cell("HSIL", 1, 40).mask, 0), "inter-means")
    result = refine_grouping(flat, grouped.labels)
    assert result.labels.shape == (40, 40)
    assert set(np.unique(result.labels)) <= {0, 1, 2}


def test_disagreement() -> None:
    a = np.zeros((10, 10), np.uint8)
    assert disagreement(a, a) == 0.0
    a[2:8, 2:8] = 1
    a[4:6, 4:6] = 2
    assert disagreement(a, a) == 0.0
    b = np.zeros_like(a)
    assert disagreement(a, b) == 1.0
    c = a.copy()
    c[c == 2] = 1  # nucleus lost: Dice nucleus 0, cytoplasm 2*32/(32+36)
    assert disagreement(a, c) == pytest.approx(1 - (64 / 68) / 2)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        refine_grouping(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        refine_grouping(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8))
