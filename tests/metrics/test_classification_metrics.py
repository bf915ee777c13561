"""Classification metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from cytoreview.errors import UnknownClassError
from cytoreview.metrics.classification import (
    binary_report,
    classification_report,
    confusion_matrix,
    derive_binary,
    inference_timing,
    roc_auc,
    roc_curve,
    wilcoxon_compare,
)

# Six samples, three classes. Argmax predictions: [0, 1, 1, 1, 2, 0].
Y_TRUE = [0, 0, 1, 1, 2, 2]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.2, 0.7],
        [0.5, 0.1, 0.4],
    ]
)
NAMES = ["NILM", "LSIL", "HSIL"]


def test_confusion_rows_are_truth() -> None:
    m = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert m.sum(axis=1).tolist() == [2, 1, 1]  # row sums = true counts
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)


def test_report_matches_hand_computation() -> None:
    r = classification_report(Y_TRUE, PROBS, NAMES)
    # cm rows (truth): [1, 1, 0], [0, 2, 0], [1, 0, 1]
    assert r.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.precision == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert r.recall == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert r.f1 == pytest.approx([1 / 2, 0.8, 2 / 3])
    assert r.support == [2, 2, 2]
    assert r.macro_precision == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert r.macro_recall == pytest.approx(2 / 3)
    assert r.macro_f1 == pytest.approx((1 / 2 + 0.8 + 2 / 3) / 3)
    assert r.weighted_f1 == pytest.approx(r.macro_f1)  # equal supports
    # One-vs-rest AUC. NILM: positives 0.7, 0.3 vs negatives 0.2, 0.1, 0.1, 0.5 -> 7/8.
    assert r.auc == pytest.approx([7 / 8, 1.0, 1.0])
    assert r.macro_auc == pytest.approx((7 / 8 + 2) / 3)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["per_class"]["LSIL"]["f1"] == pytest.approx(0.8)
    assert d["macro"]["auc"] == pytest.approx(r.macro_auc)
    assert d["confusion_matrix"][2] == [1, 0, 1]


def test_weighted_average_uses_support() -> None:
    r = classification_report([0, 0, 0, 1], np.array([[1, 0], [1, 0], [0, 1], [0, 1]]), ["a", "b"])
    # class a: P 1, R 2/3, F1 0.8 (support 3); class b: P 1/2, R 1, F1 2/3 (support 1)
    assert r.weighted_precision == pytest.approx((3 * 1 + 0.5) / 4)
    assert r.weighted_recall == pytest.approx((3 * 2 / 3 + 1) / 4)
    assert r.weighted_f1 == pytest.approx((3 * 0.8 + 2 / 3) / 4)


@pytest.mark.parametrize(
    ("y", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),  # inverted
        ([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all tied
        ([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.9], 0.875),  # one tied pair counts 1/2: 3.5 / 4
        ([0, 1, 0, 1, 0], [0.3, 0.2, 0.6, 0.7, 0.1], 4 / 6),
    ],
)
def test_auc_rank_based(y, scores, expected) -> None:
    assert roc_auc(np.array(y, bool), scores) == pytest.approx(expected)


def test_auc_undefined_without_both_classes() -> None:
    assert roc_auc([True, True], [0.1, 0.9]) is None
    assert roc_auc([False, False], [0.1, 0.9]) is None


def test_roc_curve_points_and_area() -> None:
    y = [0, 0, 1, 1]
    fpr, tpr, thr = roc_curve(y, [0.1, 0.4, 0.4, 0.9])
    assert thr[0] == np.inf and thr[1:].tolist() == [0.9, 0.4, 0.1]
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40).astype(bool)
    scores = np.round(rng.random(40), 1)  # many ties
    fpr, tpr, _ = roc_curve(y, scores)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(y, scores))


def test_zero_division_gives_zero_without_warning() -> None:
    # Everything predicted as class 0; class 2 absent from truth and predictions.
    probs = np.array([[0.9, 0.1, 0.0]] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = classification_report([0, 0, 1, 1], probs, NAMES)
        b = binary_report([False, False, False], [0.1, 0.2, 0.3])
        fpr, tpr, _ = roc_curve([False, False], [0.1, 0.2])  # no positive
    assert r.precision == [0.5, 0.0, 0.0]  # LSIL never predicted, HSIL absent: 0/0 -> 0
    assert r.recall == [1.0, 0.0, 0.0]
    assert r.f1 == pytest.approx([2 / 3, 0.0, 0.0])
    # Macro over classes seen in the truth or the predictions (NILM, LSIL), not HSIL.
    assert r.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)
    assert r.auc[2] is None and r.auc[0] == pytest.approx(0.5)
    assert r.macro_auc == pytest.approx(0.5)  # both defined AUCs are 0.5 (constant scores)
    assert b.sensitivity == 0.0 and b.specificity == 1.0 and b.precision == 0.0
    assert b.f1 == 0.0 and b.macro_f1 == 1.0 and b.auc is None
    assert tpr.tolist() == [0.0, 0.0, 0.0] and fpr.tolist() == [0.0, 0.5, 1.0]
    json.dumps(r.to_dict(), allow_nan=False)
    json.dumps(b.to_dict(), allow_nan=False)


def test_binary_report_hand_values() -> None:
    y = [True, True, False, False, False, False]
    p = [0.9, 0.3, 0.6, 0.2, 0.1, 0.4]
    b = binary_report(y, p)  # calls: T F T F F F -> TP 1, FN 1, FP 1, TN 3
    assert b.confusion.tolist() == [[3, 1], [1, 1]]  # rows truth: normal, abnormal
    assert b.accuracy == pytest.approx(4 / 6)
    assert b.sensitivity == pytest.approx(0.5)
    assert b.specificity == pytest.approx(0.75)
    assert b.balanced_accuracy == pytest.approx(0.625)
    assert b.precision == pytest.approx(0.5) and b.npv == pytest.approx(0.75)
    assert b.f1 == pytest.approx(0.5)
    assert b.macro_f1 == pytest.approx((0.5 + 0.75) / 2)
    assert b.auc == pytest.approx(6 / 8)  # 0.9 beats 4 negatives, 0.3 beats 2
    d = b.to_dict()
    assert d["positive_name"] == "abnormal" and d["confusion_matrix"] == [[3, 1], [1, 1]]
    # Threshold is inclusive: at 0.6 the negative scoring 0.6 is still called positive.
    assert binary_report(y, p, threshold=0.6).confusion.tolist() == [[3, 1], [1, 1]]
    assert binary_report(y, p, threshold=0.61).confusion.tolist() == [[4, 0], [1, 1]]


def test_derive_binary() -> None:
    got = derive_binary(PROBS, NAMES, {"NILM"})
    assert got == pytest.approx([0.3, 0.7, 0.8, 0.9, 0.9, 0.5])
    assert derive_binary(PROBS, NAMES, {"NILM", "LSIL"}) == pytest.approx(PROBS[:, 2])
    assert derive_binary(np.array([[0.0, 0.6, 0.4 + 1e-12]]), NAMES, {"NILM"}).max() <= 1.0
    with pytest.raises(UnknownClassError, match="ASC-US"):
        derive_binary(PROBS, NAMES, {"ASC-US"})
    with pytest.raises(ValueError):
        derive_binary(PROBS[:, :2], NAMES, {"NILM"})


def test_wilcoxon_matches_scipy() -> None:
    a = [0.81, 0.84, 0.79, 0.86, 0.83, 0.80, 0.88]
    b = [0.78, 0.80, 0.80, 0.82, 0.79, 0.81, 0.83]
    got = wilcoxon_compare(a, b)
    ref = stats.wilcoxon(a, b)
    assert got["statistic"] == pytest.approx(float(ref.statistic))
    assert got["p_value"] == pytest.approx(float(ref.pvalue))
    assert got["n"] == 7 and got["n_nonzero"] == 7
    assert got["mean_difference"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert got["median_difference"] == pytest.approx(0.04)
    assert got["better"] == "a"
    assert got["min_attainable_p"] == pytest.approx(2 / 2**7)
    assert wilcoxon_compare(a, b, higher_is_better=False)["better"] == "b"


def test_wilcoxon_five_folds_floor() -> None:
    a = [0.90, 0.85, 0.88, 0.91, 0.87]
    b = [0.80, 0.84, 0.86, 0.88, 0.82]  # a wins every fold
    two = wilcoxon_compare(a, b)
    assert two["statistic"] == 0.0
    assert two["p_value"] == pytest.approx(0.0625) == two["min_attainable_p"]
    one = wilcoxon_compare(a, b, alternative="greater")
    assert one["p_value"] == pytest.approx(1 / 32) == one["min_attainable_p"]
    assert wilcoxon_compare(a, b, alternative="less")["p_value"] == pytest.approx(1.0)


def test_wilcoxon_zero_differences() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = wilcoxon_compare([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert same["p_value"] == 1.0 and same["statistic"] == 0.0
    assert same["better"] == "neither" and same["n_nonzero"] == 0
    one_zero = wilcoxon_compare([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.7, 0.6, 0.5, 0.5])
    assert one_zero["n_nonzero"] == 4 and one_zero["min_attainable_p"] == pytest.approx(0.125)
    with pytest.raises(ValueError):
        wilcoxon_compare([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="alternative"):
        wilcoxon_compare([0.1], [0.2], alternative="bigger")


def test_inference_timing() -> None:
    t = inference_timing([0.1, 0.2, 0.3, 0.4])
    assert t["n"] == 4
    assert t["mean"] == pytest.approx(0.25) and t["median"] == pytest.approx(0.25)
    assert t["p95"] == pytest.approx(0.385)  # 0.3 + 0.85 * (0.4 - 0.3)
    assert t["images_per_second"] == pytest.approx(4.0)
    empty = inference_timing([])
    assert empty["n"] == 0 and empty["mean"] is None and empty["p95"] is None
    with pytest.raises(ValueError):
        inference_timing([0.1, -0.2])


def test_report_input_errors() -> None:
    with pytest.raises(ValueError):
        classification_report([], np.zeros((0, 3)), NAMES)
    with pytest.raises(ValueError):
        classification_report([0, 1], PROBS, NAMES)
    with pytest.raises(ValueError):
        classification_report(Y_TRUE, PROBS, NAMES[:2])
    with pytest.raises(ValueError):
        binary_report([True, 2], [0.1, 0.2])
