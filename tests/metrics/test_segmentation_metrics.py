"""Segmentation scores: hand-computed values on tiny masks, ignore pixels, 0/0 conventions."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from cytoreview.metrics.segmentation import (
    SCORED_CLASSES,
    ClassScores,
    Counts,
    class_counts,
    evaluate_masks,
    image_scores,
    scores_from_counts,
)

# Truth and prediction drawn by hand; the counts below were counted on paper:
#   cytoplasm: truth 6 px, prediction 7 px, 5 shared -> tp 5, fp 2, fn 1, tn 8
#   nucleus:   truth 4 px, prediction 3 px, 3 shared -> tp 3, fp 0, fn 1, tn 12
#   cell:      truth 10 px, prediction 10 px, 9 shared -> tp 9, fp 1, fn 1, tn 5
#   3 pixels carry a different label: (0,1), (1,1), (2,3) -> 13/16 correct
TRUTH = np.array(
    [
        [0, 0, 1, 1],
        [0, 1, 1, 1],
        [0, 1, 2, 2],
        [0, 0, 2, 2],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 1],
        [0, 1, 2, 1],
        [0, 0, 2, 2],
    ],
    dtype=np.uint8,
)


def approx_scores(s: ClassScores, **expected: float) -> None:
    for name, value in expected.items():
        got = getattr(s, name)
        if math.isnan(value):
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(value, abs=1e-9), name


def test_scored_classes() -> None:
    assert SCORED_CLASSES == {"cytoplasm": (1,), "nucleus": (2,), "cell": (1, 2)}


def test_class_counts_by_hand() -> None:
    assert class_counts(PRED, TRUTH, (1,)) == Counts(tp=5, fp=2, fn=1, tn=8)
    assert class_counts(PRED, TRUTH, (2,)) == Counts(tp=3, fp=0, fn=1, tn=12)
    assert class_counts(PRED, TRUTH, (1, 2)) == Counts(tp=9, fp=1, fn=1, tn=5)


def test_counts_add() -> None:
    assert Counts(1, 2, 3, 4) + Counts(10, 20, 30, 40) == Counts(11, 22, 33, 44)


def test_scores_from_counts_by_hand() -> None:
    approx_scores(
        scores_from_counts(Counts(tp=5, fp=2, fn=1, tn=8)),
        iou=0.625,
        dice=0.7692307692307693,  # 10/13
        precision=0.7142857142857143,  # 5/7
        recall=0.8333333333333334,  # 5/6
        specificity=0.8,
        accuracy=0.8125,
    )


def test_image_scores_by_hand() -> None:
    s = image_scores(PRED, TRUTH)
    assert list(s) == ["cytoplasm", "nucleus", "cell", "overall"]
    approx_scores(
        s["nucleus"],
        iou=0.75,
        dice=0.8571428571428571,  # 6/7
        precision=1.0,
        recall=0.75,
        specificity=1.0,
        accuracy=0.9375,
    )
    approx_scores(
        s["cell"],
        iou=0.8181818181818182,  # 9/11
        dice=0.9,
        precision=0.9,
        recall=0.9,
        specificity=0.8333333333333334,  # 5/6
        accuracy=0.875,
    )
    nan = math.nan
    approx_scores(
        s["overall"],
        accuracy=0.8125,
        iou=nan,
        dice=nan,
        precision=nan,
        recall=nan,
        specificity=nan,
    )


def test_ignore_removes_pixels_from_every_count() -> None:
    ignore = np.zeros((4, 4), bool)
    ignore[0, 1] = ignore[1, 1] = True  # two of the three disagreeing pixels
    # 14 scored pixels left; counted by hand.
    assert class_counts(PRED, TRUTH, (1,), ignore) == Counts(tp=5, fp=1, fn=0, tn=8)
    assert class_counts(PRED, TRUTH, (2,), ignore) == Counts(tp=3, fp=0, fn=1, tn=10)
    assert class_counts(PRED, TRUTH, (1, 2), ignore) == Counts(tp=9, fp=0, fn=0, tn=5)
    s = image_scores(PRED, TRUTH, ignore)
    assert s["overall"].accuracy == pytest.approx(13 / 14)
    assert s["cell"].iou == 1.0


def test_all_ignored_gives_nan_everywhere() -> None:
    s = image_scores(PRED, TRUTH, np.ones((4, 4), bool))
    for scores in s.values():
        assert all(math.isnan(v) for v in vars(scores).values())


def test_class_absent_in_both_is_perfect() -> None:
    truth = np.array([[0, 1], [1, 0]], np.uint8)  # no nucleus anywhere
    pred = np.array([[0, 1], [0, 0]], np.uint8)
    approx_scores(
        image_scores(pred, truth)["nucleus"],
        iou=1.0,
        dice=1.0,
        precision=1.0,
        recall=1.0,
        specificity=1.0,
        accuracy=1.0,
    )


def test_class_everywhere_in_both_has_specificity_one() -> None:
    full = np.full((2, 2), 2, np.uint8)
    approx_scores(image_scores(full, full)["nucleus"], iou=1.0, specificity=1.0)


def test_other_zero_over_zero_is_nan_without_warning() -> None:
    truth = np.array([[2, 2], [0, 0]], np.uint8)
    nothing = np.zeros((2, 2), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        missed = image_scores(nothing, truth)["nucleus"]  # predicted nothing: precision 0/0
        invented = image_scores(truth, nothing)["nucleus"]  # truth has nothing: recall 0/0
        report = evaluate_masks([])
    approx_scores(missed, iou=0.0, dice=0.0, precision=math.nan, recall=0.0, specificity=1.0)
    approx_scores(invented, iou=0.0, dice=0.0, precision=0.0, recall=math.nan, specificity=0.5)
    assert report.per_image == {}
    assert math.isnan(report.mean["cell"].iou) and math.isnan(report.pooled["cell"].iou)


def test_pooled_and_mean_differ_on_two_images() -> None:
    # a: cytoplasm tp 1, fn 0, fp 0, tn 3 -> IoU 1, Dice 1, specificity 1
    # b: cytoplasm tp 1, fn 3, fp 0, tn 0 -> IoU 1/4, Dice 2/5, specificity 0/0 -> nan
    a_truth = np.array([[1, 0, 0, 0]], np.uint8)
    b_truth = np.array([[1, 1, 1, 1]], np.uint8)
    pred = np.array([[1, 0, 0, 0]], np.uint8)
    report = evaluate_masks([("a", pred, a_truth, None), ("b", pred, b_truth, None)])
    assert set(report.per_image) == {"a", "b"}
    assert report.per_image["b"]["cytoplasm"].iou == pytest.approx(0.25)
    mean, pooled = report.mean["cytoplasm"], report.pooled["cytoplasm"]
    assert mean.iou == pytest.approx(0.625)  # (1 + 0.25) / 2
    assert pooled.iou == pytest.approx(0.4)  # tp 2 / (2 + 3)
    assert mean.dice == pytest.approx(0.7)  # (1 + 0.4) / 2
    assert pooled.dice == pytest.approx(0.5714285714285714)  # 4 / 7
    assert mean.recall == pytest.approx(0.625)
    assert pooled.recall == pytest.approx(0.4)
    assert mean.specificity == 1.0  # b's nan is skipped, not counted as 0
    assert pooled.specificity == 1.0  # tn 3 / 3
    assert report.mean["overall"].accuracy == pytest.approx(0.625)  # (4/4 + 1/4) / 2
    assert report.pooled["overall"].accuracy == pytest.approx(0.625)  # 5 / 8


def test_pooled_weighs_images_by_scored_pixels() -> None:
    ignore = np.array([[False, True, True, True]])
    a_truth = np.array([[1, 1, 0, 0]], np.uint8)
    pred = np.array([[1, 0, 0, 0]], np.uint8)
    report = evaluate_masks([("a", pred, a_truth, ignore), ("b", pred, a_truth, None)])
    # a scores only pixel 0 (correct); b has tp 1, fn 1 -> pooled tp 2, fn 1.
    assert report.pooled["cytoplasm"].recall == pytest.approx(2 / 3)
    assert report.mean["cytoplasm"].recall == pytest.approx(0.75)


def test_to_dict_is_json_ready() -> None:
    truth = np.array([[2, 2], [0, 0]], np.uint8)
    report = evaluate_masks([("x.png", np.zeros((2, 2), np.uint8), truth, None)])
    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)  # fails on a stray nan or numpy scalar
    back = json.loads(text)
    assert back["n_images"] == 1
    assert back["per_image"]["x.png"]["nucleus"]["precision"] is None
    assert back["per_image"]["x.png"]["nucleus"]["recall"] == 0.0
    assert back["pooled"]["overall"]["accuracy"] == 0.5
    assert set(back["mean"]) == {"cytoplasm", "nucleus", "cell", "overall"}
    assert type(d["mean"]["cell"]["specificity"]) is float


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        image_scores(np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"ignore shape \(3, 3\)"):
        image_scores(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((3, 3), bool))


@pytest.mark.parametrize("bad", [3, 255, -1])
def test_labels_out_of_range(bad: int) -> None:
    ok = np.zeros((2, 2), np.int16)
    wrong = ok.copy()
    wrong[1, 1] = bad
    with pytest.raises(ValueError, match=r"labels outside 0\.\.2"):
        class_counts(wrong, ok, (1,))
    with pytest.raises(ValueError, match="truth has labels outside"):
        evaluate_masks([("a", ok, wrong, None)])


def test_float_masks_rejected_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="integer label mask"):
        image_scores(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8))
    m = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="appears twice"):
        evaluate_masks([("a", m, m, None), ("a", m, m, None)])
