"""Relevance grouping of the XAI weak-mask plugin: the four methods, inter-means by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cytoreview_xai.grouping import (
    METHODS,
    group_relevance,
    inter_means_thresholds,
    log_scale,
    normalise_relevance,
)

#: Eight relevance values already in [0, 1] with maximum 1, so normalisation leaves them.
SMALL = np.array([[0.0, 0.1, 0.2, 0.4], [0.5, 0.6, 0.9, 1.0]])


def test_inter_means_matches_the_hand_computation() -> None:
    # On paper, sorted values 0, .1, .2, .4, .5, .6, .9, 1 (n = 8):
    #   Q1 at rank 0.25 * 7 = 1.75: 0.1 + 0.75 * 0.1 = 0.175;
    #   Q3 at rank 0.75 * 7 = 5.25: 0.6 + 0.25 * 0.3 = 0.675.
    #   Step 1: groups {0, .1} {.2, .4, .5, .6} {.9, 1}, means .05, .425, .95
    #           -> t = (.05 + .425) / 2 = .2375, (.425 + .95) / 2 = .6875.
    #   Step 2: groups {0, .1, .2} {.4, .5, .6} {.9, 1}, means .1, .5, .95 -> t = .3, .725.
    #   Step 3: same groups, same thresholds: converged after 3 updates.
    t1, t2, iterations, converged = inter_means_thresholds(SMALL)
    assert (t1, t2) == pytest.approx((0.3, 0.725), abs=1e-12)
    assert (iterations, converged) == (3, True)
    one_step = inter_means_thresholds(SMALL, max_iter=1)
    assert one_step[:2] == pytest.approx((0.2375, 0.6875), abs=1e-12)
    assert one_step[3] is False
    grouping = group_relevance(SMALL * 7.0 - 0.0, "inter-means")  # any scale: normalised
    assert grouping.labels.ravel().tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert grouping.thresholds == pytest.approx((0.3, 0.725), abs=1e-12)


def _three_levels(seed: int, noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """A 48 px map: background 0, a square 'cell' 0.5, a small 'nucleus' 1, plus noise."""
    truth = np.zeros((48, 48), np.uint8)
    truth[6:42, 8:40] = 1
    truth[18:28, 18:30] = 2
    rng = np.random.default_rng(seed)
    heat = truth * 0.5 + rng.normal(0.0, noise, truth.shape)
    return heat, truth


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_method_finds_three_monotone_groups(method: str, seed: int) -> None:
    heat, truth = _three_levels(seed)
    grouping = group_relevance(heat, method)
    labels = grouping.labels
    assert labels.dtype == np.uint8 and labels.shape == heat.shape
    assert set(np.unique(labels)) == {0, 1, 2}
    t1, t2 = grouping.thresholds
    assert t1 <= t2
    # Monotone: sorting by relevance sorts the labels too.
    order = np.argsort(heat, axis=None, kind="stable")
    assert np.all(np.diff(labels.ravel()[order].astype(int)) >= 0)
    # Levels 0.5 apart with noise sd 0.08 (0.06 of the normalised range): each group is
    # mostly its level (measured agreement 0.97-1.0 for every method; chance is ~0.33).
    assert (labels == truth).mean() > 0.9
    # Deterministic: the same map gives the same groups.
    assert np.array_equal(group_relevance(heat, method).labels, labels)


def test_two_threshold_uses_the_given_thresholds() -> None:
    grouping = group_relevance(SMALL, "two-threshold", low=0.45, high=0.95)
    assert grouping.labels.ravel().tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert grouping.thresholds == (0.45, 0.95)
    with pytest.raises(ValueError, match="above"):
        group_relevance(SMALL, "two-threshold", low=0.8, high=0.2)


def test_normalisation_clips_negatives_and_divides_by_the_maximum() -> None:
    heat = np.array([[-4.0, 0.0], [1.0, 2.0]])
    assert normalise_relevance(heat).tolist() == [[0.0, 0.0], [0.5, 1.0]]
    # Equation 8 with s = 1000: ln(1001 r) ... ln(1 + 1000 * 0.5) / ln(1000) = 0.8999...
    assert log_scale(np.array([0.0, 0.5]))[1] == pytest.approx(np.log(501) / np.log(1000))
    scaled = group_relevance(SMALL, "inter-means", log_scale_factor=1000.0)
    assert scaled.thresholds[1] > 0.725  # the log lifts the small values: thresholds move up


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "heat",
    [
        np.zeros((0, 0)),
        np.zeros((5, 7)),
        np.full((5, 5), np.nan),
        np.full((5, 5), 3.0),
        -np.abs(np.random.default_rng(0).normal(size=(6, 6))),
        np.where(np.eye(4, dtype=bool), np.inf, -1.0),  # inf counts as no relevance
    ],
    ids=["empty", "zeros", "nan", "constant", "negative", "inf"],
)
def test_no_contrast_is_all_background_without_warnings(method: str, heat: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grouping = group_relevance(heat, method)
    assert grouping.thresholds is None
    assert grouping.labels.shape == heat.shape and not grouping.labels.any()


@pytest.mark.parametrize("method", METHODS[1:])
def test_two_levels_give_background_and_nucleus(method: str) -> None:
    heat = np.zeros((6, 6))
    heat[2:4, 2:4] = 5.0
    heat[0, 0] = np.nan  # a NaN pixel among real values counts as 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grouping = group_relevance(heat, method)
    assert np.array_equal(grouping.labels, (heat > 1).astype(np.uint8) * 2)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown grouping method"):
        group_relevance(SMALL, "otsu")
    with pytest.raises(ValueError, match="2-D"):
        group_relevance(np.zeros((4, 4, 3)), "gmm")
