"""Segmentation scores of predicted label masks against reference masks.

Scores per class (cytoplasm, nucleus, the whole cell), per image and over a set of images, all
from one 3x3 confusion matrix per image: an image is read once whatever the number of classes.

Conventions
-----------
- A class absent from both the truth and the prediction of an image (no positive pixel on
  either side) is perfect agreement: IoU, Dice, precision and recall are 1.0. Specificity follows
  the same rule for the negative side (a class covering every scored pixel in both masks has
  specificity 1.0).
- Any other 0/0 is undefined and gives ``nan`` (e.g. precision when nothing was predicted but the
  truth has the class). ``nan`` is skipped by the mean over images and becomes ``None`` in
  :meth:`SegmentationReport.to_dict`. No numpy warning is raised.
- An image whose pixels are all ignored has no scored pixel: every score is ``nan``.
- Under the key ``"overall"``, ``accuracy`` is the 3-class pixel accuracy (share of scored pixels
  whose predicted label equals the true one); its other fields are ``nan`` (not defined).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, astuple, dataclass, fields

import numpy as np

from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

#: Scored classes and the label values each one covers ("cell" is the whole cell).
SCORED_CLASSES: dict[str, tuple[int, ...]] = {
    "cytoplasm": (CYTOPLASM,),
    "nucleus": (NUCLEUS,),
    "cell": (CYTOPLASM, NUCLEUS),
}
#: Key of the 3-class pixel accuracy in the score dictionaries.
OVERALL = "overall"
_N_LABELS = max(BACKGROUND, CYTOPLASM, NUCLEUS) + 1


@dataclass(frozen=True)
class Counts:
    """Pixel counts of one class: true/false positives, false/true negatives."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def total(self) -> int:
        """Number of scored pixels."""
        return sum(astuple(self))


@dataclass(frozen=True)
class ClassScores:
    """Scores of one class, each in [0, 1] or ``nan`` when undefined.

    ``dice`` is also the Zijdenbos similarity index; ``recall`` is the sensitivity.
    """

    iou: float
    dice: float
    precision: float
    recall: float
    specificity: float
    accuracy: float


def _ratio(num: int, den: int, both_absent: bool) -> float:
    """``num / den``; for 0/0, 1.0 when the class is absent on both sides, else ``nan``."""
    if den:
        return num / den
    return 1.0 if both_absent else math.nan


def _check(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None) -> None:
    """Raise ValueError for mismatched shapes, non-integer masks or labels outside 0..2."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if ignore is not None and np.shape(ignore) != truth.shape:
        raise ValueError(f"ignore shape {np.shape(ignore)} differs from truth shape {truth.shape}")
    for name, arr in (("prediction", pred), ("truth", truth)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"{name} must be an integer label mask, got dtype {arr.dtype}")
        low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if low < 0 or high >= _N_LABELS:
            raise ValueError(f"{name} has labels outside 0..2 (min {low}, max {high})")


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None
) -> np.ndarray:
    """3x3 pixel confusion matrix of one image.

    Parameters
    ----------
    pred, truth
        Integer label masks of the same shape: 0 background, 1 cytoplasm, 2 nucleus.
    ignore
        Optional boolean mask of that shape; True pixels are left out of every count.

    Returns
    -------
    numpy.ndarray
        int64 array ``m`` where ``m[t, p]`` counts pixels of true label ``t`` predicted as ``p``.

    Raises
    ------
    ValueError
        If shapes differ, a mask is not of integer type or a label is outside 0..2.
    """
    _check(pred, truth, ignore)
    # One bincount over a combined index is far faster than one boolean pass per class pair.
    index = np.asarray(truth, dtype=np.intp) * _N_LABELS + np.asarray(pred, dtype=np.intp)
    if ignore is not None:
        index = index[~np.asarray(ignore, dtype=bool)]
    return np.bincount(index.ravel(), minlength=_N_LABELS**2).reshape(_N_LABELS, _N_LABELS)


def counts_from_confusion(matrix: np.ndarray, labels: tuple[int, ...]) -> Counts:
    """Counts of the class made of ``labels`` (one-vs-rest) from a confusion matrix."""
    inside = np.zeros(_N_LABELS, dtype=bool)
    inside[list(labels)] = True
    return Counts(
        tp=int(matrix[np.ix_(inside, inside)].sum()),
        fp=int(matrix[np.ix_(~inside, inside)].sum()),
        fn=int(matrix[np.ix_(inside, ~inside)].sum()),
        tn=int(matrix[np.ix_(~inside, ~inside)].sum()),
    )


def class_counts(
    pred: np.ndarray,
    truth: np.ndarray,
    labels: tuple[int, ...],
    ignore: np.ndarray | None = None,
) -> Counts:
    """Pixel counts of one class in one image.

    Parameters
    ----------
    pred, truth, ignore
        As in :func:`confusion_matrix` (which raises ValueError on bad input).
    labels
        Label values that make up the class, e.g. ``(1, 2)`` for the whole cell.

    Returns
    -------
    Counts
        True/false positives and negatives of the class.
    """
    return counts_from_confusion(confusion_matrix(pred, truth, ignore), labels)


def scores_from_counts(c: Counts) -> ClassScores:
    """Scores of one class from its pixel counts ``c`` (see the module conventions for 0/0)."""
    if c.total == 0:
        return ClassScores(*(math.nan,) * 6)
    absent = c.tp + c.fp + c.fn == 0  # no positive pixel in truth nor prediction
    negatives_absent = c.tn + c.fp + c.fn == 0
    return ClassScores(
        iou=_ratio(c.tp, c.tp + c.fp + c.fn, absent),
        dice=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, absent),
        precision=_ratio(c.tp, c.tp + c.fp, absent),
        recall=_ratio(c.tp, c.tp + c.fn, absent),
        specificity=_ratio(c.tn, c.tn + c.fp, negatives_absent),
        accuracy=(c.tp + c.tn) / c.total,
    )


def _scores_from_matrix(matrix: np.ndarray) -> dict[str, ClassScores]:
    scores = {
        name: scores_from_counts(counts_from_confusion(matrix, labels))
        for name, labels in SCORED_CLASSES.items()
    }
    total = int(matrix.sum())
    accuracy = int(np.trace(matrix)) / total if total else math.nan
    scores[OVERALL] = ClassScores(*(math.nan,) * 5, accuracy=accuracy)  # only accuracy defined
    return scores


def image_scores(
    pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None
) -> dict[str, ClassScores]:
    """All scores of one image.

    Parameters
    ----------
    pred, truth, ignore
        As in :func:`confusion_matrix` (which raises ValueError on bad input).

    Returns
    -------
    dict
        One :class:`ClassScores` per key of :data:`SCORED_CLASSES`, plus ``"overall"`` whose
        ``accuracy`` is the 3-class pixel accuracy and whose other fields are ``nan``.
    """
    return _scores_from_matrix(confusion_matrix(pred, truth, ignore))


def _mean_scores(per_image: list[dict[str, ClassScores]]) -> dict[str, ClassScores]:
    def mean_of(name: str, field: str) -> float:
        # nan-aware by hand: np.nanmean warns when every value is nan.
        defined = [v for img in per_image if not math.isnan(v := getattr(img[name], field))]
        return sum(defined) / len(defined) if defined else math.nan

    return {
        name: ClassScores(*(mean_of(name, f.name) for f in fields(ClassScores)))
        for name in [*SCORED_CLASSES, OVERALL]
    }


def _plain(scores: dict[str, ClassScores]) -> dict[str, dict[str, float | None]]:
    return {
        name: {k: (None if math.isnan(v) else float(v)) for k, v in asdict(s).items()}
        for name, s in scores.items()
    }


@dataclass
class SegmentationReport:
    """Scores of a set of images.

    Attributes
    ----------
    per_image
        Image name to class name to scores.
    mean
        Mean over images of the per-image scores (macro average), skipping ``nan``.
    pooled
        Scores from the counts summed over all images (micro average): large images weigh more.
    """

    per_image: dict[str, dict[str, ClassScores]]
    mean: dict[str, ClassScores]
    pooled: dict[str, ClassScores]

    def to_dict(self) -> dict:
        """JSON-ready nested dictionaries of floats, with ``nan`` written as ``None``."""
        return {
            "n_images": len(self.per_image),
            "per_image": {name: _plain(s) for name, s in self.per_image.items()},
            "mean": _plain(self.mean),
            "pooled": _plain(self.pooled),
        }


def evaluate_masks(
    items: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
) -> SegmentationReport:
    """Score predicted masks against reference masks.

    Parameters
    ----------
    items
        ``(name, pred, truth, ignore)`` per image; ``ignore`` may be None. Masks are consumed
        one at a time, so a generator keeps memory flat on large sets.

    Returns
    -------
    SegmentationReport
        Per-image, mean and pooled scores. With no image, mean and pooled scores are ``nan``.

    Raises
    ------
    ValueError
        If an image name repeats, or as :func:`confusion_matrix` does.
    """
    per_image: dict[str, dict[str, ClassScores]] = {}
    pooled = np.zeros((_N_LABELS, _N_LABELS), dtype=np.int64)
    for name, pred, truth, ignore in items:
        if name in per_image:
            raise ValueError(f"image name {name!r} appears twice")
        matrix = confusion_matrix(pred, truth, ignore)
        per_image[name] = _scores_from_matrix(matrix)
        pooled += matrix
    return SegmentationReport(
        per_image=per_image,
        mean=_mean_scores(list(per_image.values())),
        pooled=_scores_from_matrix(pooled),
    )
