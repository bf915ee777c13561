"""Tests of crop boxes around candidates and of merging duplicate candidates."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.data.tissue import Box
from cytoreview.inference.cell_crops import crop_box, crop_iou, merge_duplicates
from cytoreview.inference.cell_finder import CellCandidate


def cand(y: float, x: float, score: float = 0.5, area: float = 100.0) -> CellCandidate:
    return CellCandidate(y, x, area, Box(int(y) - 5, int(x) - 5, 11, 11), score)


def test_a_crop_is_centred_on_its_cell_away_from_the_edges() -> None:
    box = crop_box(cand(500, 700), 201, (2000, 3000))
    assert box == Box(400, 600, 201, 201)
    even = crop_box(cand(500.2, 700.7), 64, (2000, 3000))
    assert even.h == even.w == 64
    assert abs(even.y + 31.5 - 500.2) <= 0.5 and abs(even.x + 31.5 - 700.7) <= 0.5


def test_crops_near_the_edges_are_shifted_inside_and_keep_their_size() -> None:
    rng = np.random.default_rng(0)
    shape = (900, 1300)
    for y, x in rng.uniform(-0.4, 1.0, (200, 2)) * shape:
        for size in (32, 255, 256):
            b = crop_box(cand(y, x), size, shape)
            assert (b.h, b.w) == (size, size)
            assert min(b.y, b.x) >= 0
            assert b.y + b.h <= shape[0] and b.x + b.w <= shape[1]
    assert crop_box(cand(3, 1290), 100, shape) == Box(0, 1200, 100, 100)


def test_a_slide_smaller_than_the_crop_gives_the_whole_slide() -> None:
    assert crop_box(cand(40, 50), 256, (100, 300)) == Box(0, 0, 100, 256)
    with pytest.raises(ValueError):
        crop_box(cand(40, 50), 0, (100, 300))


def test_the_same_candidate_is_recut_at_another_size_around_the_same_centre() -> None:
    c = cand(1000, 1000)
    small, large = crop_box(c, 128, (4000, 4000)), crop_box(c, 384, (4000, 4000))
    assert small.y + small.h / 2 == large.y + large.h / 2


def test_crop_iou_of_shifted_squares() -> None:
    assert crop_iou(0, 0, 100) == pytest.approx(1.0)
    assert crop_iou(50, 0, 100) == pytest.approx(5000 / 15000)
    assert crop_iou(100, 3, 100) == 0.0


def test_close_candidates_merge_into_the_higher_score() -> None:
    kept = merge_duplicates([cand(100, 100, 0.4), cand(103, 102, 0.9), cand(300, 300, 0.1)], 10)
    assert [(c.y, c.x) for c in kept] == [(103, 102), (300, 300)]


def test_overlapping_crops_merge_and_distant_ones_do_not() -> None:
    group = [cand(100, 100, 0.9), cand(100, 140, 0.5), cand(100, 300, 0.5)]
    # 40 px apart with 128 px crops: IoU (88 * 128) / (2 * 128² - 88 * 128) = 0.52.
    assert len(merge_duplicates(group, 5, crop_size_px=128, max_iou=0.5)) == 2
    assert len(merge_duplicates(group, 5, crop_size_px=128, max_iou=0.6)) == 3
    assert len(merge_duplicates(group, 5)) == 3


def test_merging_is_deterministic_and_idempotent() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 2000, (400, 2))
    scores = rng.choice([0.2, 0.5, 0.9], 400)  # many ties
    candidates = [cand(y, x, s) for (y, x), s in zip(points, scores, strict=True)]
    once = merge_duplicates(candidates, 40, crop_size_px=96)
    for seed in range(3):
        shuffled = [candidates[i] for i in np.random.default_rng(seed).permutation(400)]
        assert merge_duplicates(shuffled, 40, crop_size_px=96) == once
    assert merge_duplicates(once, 40, crop_size_px=96) == once
    assert 50 < len(once) < 400
    kept = np.array([(c.y, c.x) for c in once])
    gaps = np.hypot(*(kept[:, None] - kept[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(once), dtype=bool)].min() >= 40
    assert merge_duplicates([], 10) == []
