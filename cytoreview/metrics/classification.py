"""Image classification scores: per-class and binary reports, ROC, paired fold comparisons.

Conventions (numpy and scipy only)
----------------------------------
- Confusion matrices have the truth on the rows and the prediction on the columns.
- **Zero division gives 0.0**, never ``nan`` nor a warning (scikit-learn's ``zero_division=0``):
  precision of a class never predicted, recall of a class absent from the truth, F1 when
  precision + recall = 0, sensitivity without positives, specificity without negatives.
- **Macro averages** (P, R, F1) are unweighted means over the classes present in the truth *or*
  the predictions (scikit-learn's default): a class absent from both (a rare class missing from
  a test fold) would add a 0 that says nothing of the model. Weighted ones weigh by support.
- **ROC AUC** is the Mann-Whitney probability that a random positive scores above a random
  negative, ties counting one half; ``None`` when the truth has no positive or no negative.
  Multi-class AUC is one-vs-rest; the macro AUC averages the classes where it is defined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cytoreview.errors import UnknownClassError

_ALTERNATIVES = ("two-sided", "greater", "less")
_PRF = ("precision", "recall", "f1")
_TIMING_KEYS = ("mean", "median", "p95", "min", "max", "images_per_second")


def _as_labels(y: Sequence[int] | np.ndarray, n_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} has class indices outside 0..{n_classes - 1}")
    return arr


def _div(num: float, den: float) -> float:
    """``num / den``, 0.0 when ``den`` is 0 (see the module conventions)."""
    return float(num) / float(den) if den else 0.0


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """(K, K) int64 confusion matrix ``m``: ``m[t, p]`` counts true class t predicted as p.

    Parameters
    ----------
    y_true, y_pred
        Class indices in ``0..n_classes - 1``, one per sample.
    n_classes
        Number of classes K.

    Raises
    ------
    ValueError
        If the lengths differ or an index is out of range.
    """
    t = _as_labels(y_true, n_classes, "y_true")
    p = _as_labels(y_pred, n_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} samples but y_pred has {p.size}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def _binary_inputs(y_true_binary: Sequence, scores: Sequence[float]) -> tuple[np.ndarray, ...]:
    y = np.asarray(y_true_binary)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"need two 1-D arrays of one length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true_binary must hold booleans or 0/1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    return y.astype(bool), s


def roc_auc(y_true_binary: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC in [0, 1] by the Mann-Whitney statistic (ties count 1/2); None if undefined."""
    y, s = _binary_inputs(y_true_binary, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(s)  # average ranks: a tied pair counts 1/2
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    y_true_binary: Sequence[bool], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points, one per distinct score (a sample is positive when score >= threshold).

    Returns
    -------
    fpr, tpr, thresholds
        Float arrays of equal length, from (0, 0) at threshold ``+inf`` to (1, 1) at the lowest
        score. Without positives (negatives) tpr (fpr) is all 0. The trapezoidal area under the
        curve equals :func:`roc_auc`.
    """
    y, s = _binary_inputs(y_true_binary, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.array([], int)
    tps = np.r_[0, np.cumsum(y)[last]].astype(np.float64)
    fps = np.r_[0, np.cumsum(~y)[last]].astype(np.float64)
    return _ratio(fps, fps[-1]), _ratio(tps, tps[-1]), np.r_[np.inf, s[last]]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise ``num / den`` with 0.0 where ``den`` is 0 (no warning)."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=np.asarray(den) != 0)
    return out


def _scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1, support and presence of a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0  # in the truth or in the predictions
    return dict(precision=precision, recall=recall, f1=f1, support=support, present=present)


def _macro(values: np.ndarray, present: np.ndarray) -> float:
    return float(values[present].mean()) if present.any() else 0.0


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of a K-class classifier (see the module conventions).

    Per-class lists follow ``class_names``; ``auc[k]`` is None when class k is absent from the
    truth (or is the only class present). ``confusion`` has the truth on the rows.
    """

    class_names: list[str]
    n: int
    accuracy: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    auc: list[float | None]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    macro_auc: float | None
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    confusion: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready nested dictionaries (the confusion matrix as lists of ints)."""
        keys = (*_PRF, "support", "auc")
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "class_names": list(self.class_names),
            "per_class": {
                name: {key: getattr(self, key)[i] for key in keys}
                for i, name in enumerate(self.class_names)
            },
            "macro": {key: getattr(self, f"macro_{key}") for key in (*_PRF, "auc")},
            "weighted": {key: getattr(self, f"weighted_{key}") for key in _PRF},
            "confusion_matrix": self.confusion.astype(int).tolist(),
        }


def classification_report(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> ClassificationReport:
    """Score (N, K) class probabilities against true class indices; prediction = argmax.

    Parameters
    ----------
    y_true, probs, class_names
        True index in ``0..K-1`` per sample; probabilities (or scores); K names, column order.

    Raises
    ------
    ValueError
        If there is no sample, shapes disagree, an index is out of range or a score is not finite.
    """
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probs must be (N, {k}) for {k} class names, got {probs.shape}")
    truth = _as_labels(y_true, k, "y_true")
    if truth.size != probs.shape[0] or truth.size == 0 or not np.isfinite(probs).all():
        raise ValueError(f"need >= 1 sample, one label per row of finite probs: {truth.size}")
    cm = confusion_matrix(truth, probs.argmax(axis=1), k)
    sc = _scores(cm)
    auc = [roc_auc(truth == c, probs[:, c]) for c in range(k)]
    defined = [a for a in auc if a is not None]
    support = sc["support"].astype(np.float64)
    return ClassificationReport(
        class_names=list(class_names),
        n=int(truth.size),
        accuracy=_div(np.trace(cm), cm.sum()),
        **{key: sc[key].tolist() for key in _PRF},
        support=[int(v) for v in sc["support"]],
        auc=auc,
        **{f"macro_{key}": _macro(sc[key], sc["present"]) for key in _PRF},
        macro_auc=float(np.mean(defined)) if defined else None,
        **{f"weighted_{key}": _div((sc[key] * support).sum(), support.sum()) for key in _PRF},
        confusion=cm,
    )


@dataclass(frozen=True)
class BinaryReport:
    """Scores of a binary call (positive = score >= threshold).

    ``confusion`` is 2x2 with index 0 = negative, 1 = positive, truth on the rows. ``f1`` is the
    positive class's F1; ``precision`` is the positive predictive value, ``npv`` the negative one.
    """

    threshold: float
    positive_name: str
    negative_name: str
    n: int
    n_positive: int
    accuracy: float
    sensitivity: float
    specificity: float
    balanced_accuracy: float
    precision: float
    npv: float
    f1: float
    macro_f1: float
    auc: float | None
    confusion: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the confusion matrix as lists of ints)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "confusion"}
        out["confusion_matrix"] = self.confusion.astype(int).tolist()
        return out


def binary_report(
    y_true_bool: Sequence[bool] | np.ndarray,
    p_positive: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    positive_name: str = "abnormal",
    negative_name: str = "normal",
) -> BinaryReport:
    """Score a binary classifier from its positive-class probability.

    Parameters
    ----------
    y_true_bool, p_positive
        True when the sample is positive (e.g. needs review); probability (or score) of it.
    threshold
        A sample is called positive when its score is >= threshold.
    positive_name, negative_name
        Labels carried into the report.

    Raises
    ------
    ValueError
        If there is no sample, the lengths differ, a label is not 0/1 or a score is not finite.
    """
    y, s = _binary_inputs(y_true_bool, p_positive)
    if y.size == 0:
        raise ValueError("need at least one sample")
    cm = confusion_matrix(y.astype(int), (s >= threshold).astype(int), 2)
    sc = _scores(cm)
    sens, spec = float(sc["recall"][1]), float(sc["recall"][0])
    return BinaryReport(
        threshold=float(threshold), positive_name=positive_name, negative_name=negative_name,
        n=int(y.size), n_positive=int(y.sum()), accuracy=_div(np.trace(cm), cm.sum()),
        sensitivity=sens, specificity=spec, balanced_accuracy=(sens + spec) / 2.0,
        precision=float(sc["precision"][1]), npv=float(sc["precision"][0]), f1=float(sc["f1"][1]),
        macro_f1=_macro(sc["f1"], sc["present"]), auc=roc_auc(y, s), confusion=cm,
    )  # fmt: skip


def derive_binary(
    probs: np.ndarray, class_names: Sequence[str], not_revisable: set[str] | frozenset[str]
) -> np.ndarray:
    """(N,) P(revisable): summed probabilities of the classes not in ``not_revisable``.

    Parameters
    ----------
    probs, class_names
        (N, K) class probabilities and the K class names in column order.
    not_revisable
        Classes that mean "no review needed" (e.g. ``{"NILM"}``). The result is clipped to
        [0, 1] against rounding.

    Raises
    ------
    UnknownClassError
        If a not-revisable name is not among ``class_names``.
    ValueError
        If ``probs`` is not (N, K).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must be (N, {len(class_names)}), got {probs.shape}")
    unknown = set(not_revisable) - set(class_names)
    if unknown:
        raise UnknownClassError(f"unknown classes {sorted(unknown)}; valid: {list(class_names)}")
    revisable = np.array([name not in not_revisable for name in class_names], dtype=bool)
    return np.clip(probs[:, revisable].sum(axis=1), 0.0, 1.0)


def wilcoxon_compare(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    alternative: str = "two-sided",
    higher_is_better: bool = True,
) -> dict:
    """Wilcoxon signed-rank test of paired scores, e.g. two models over the same CV folds.

    Parameters
    ----------
    scores_a, scores_b
        One finite score per fold, same fold order.
    alternative
        ``"two-sided"``, ``"greater"`` (a > b) or ``"less"`` (a < b), as in scipy.
    higher_is_better
        Direction of ``better``.

    Returns
    -------
    dict
        ``statistic``, ``p_value`` (scipy's default method: exact or exhaustive permutations
        for few folds), ``n`` (pairs), ``n_nonzero`` (pairs with a difference; scipy drops the
        others), ``mean_difference`` and ``median_difference`` (a - b), ``better`` (``"a"``,
        ``"b"`` or ``"neither"``, from the sign of the mean difference), ``alternative`` and
        ``min_attainable_p``: the smallest p-value the test can give with ``n_nonzero`` pairs,
        2^(1-n) two-sided (0.0625 for 5 folds) and 2^-n one-sided. A p-value at that floor is
        the strongest evidence few folds can give, not a sign of a large effect. All differences
        zero gives statistic 0.0 and p-value 1.0.

    Raises
    ------
    ValueError
        If the lists are empty, of different lengths, not finite, or ``alternative`` is unknown.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {', '.join(_ALTERNATIVES)}")
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0 or not np.isfinite(a - b).all():
        raise ValueError(f"need two non-empty lists of finite scores of one length: {a}, {b}")
    diff = a - b
    n_nonzero = int(np.count_nonzero(diff))
    if n_nonzero == 0:  # scipy would warn and return nan for the normal approximation
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.wilcoxon(a, b, alternative=alternative)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    mean_diff = float(diff.mean())
    better = "neither" if mean_diff == 0 else ("a" if (mean_diff > 0) == higher_is_better else "b")
    floor = 2.0 ** (-n_nonzero) * (2 if alternative == "two-sided" else 1)
    return dict(
        statistic=statistic, p_value=p_value, n=int(a.size), n_nonzero=n_nonzero,
        mean_difference=mean_diff, median_difference=float(np.median(diff)), better=better,
        alternative=alternative, min_attainable_p=min(1.0, floor),
    )  # fmt: skip


def inference_timing(seconds_per_image: Sequence[float]) -> dict:
    """Summary of per-image inference times, in seconds.

    Returns
    -------
    dict
        ``n``, ``mean``, ``median``, ``p95`` (linear interpolation), ``min``, ``max`` and
        ``images_per_second`` (1 / mean); every value but ``n`` is None when the list is empty.

    Raises
    ------
    ValueError
        If a time is negative or not finite.
    """
    t = np.asarray(seconds_per_image, dtype=np.float64).ravel()
    if not (np.isfinite(t).all() and (t >= 0).all()):
        raise ValueError("times must be finite, non-negative numbers of seconds")
    if t.size == 0:
        return {"n": 0, **dict.fromkeys(_TIMING_KEYS)}
    mean, median, p95 = float(t.mean()), float(np.median(t)), float(np.percentile(t, 95))
    rate = 1.0 / mean if mean > 0 else None
    values = (mean, median, p95, float(t.min()), float(t.max()), rate)
    return {"n": int(t.size), **dict(zip(_TIMING_KEYS, values, strict=True))}
