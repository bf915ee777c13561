"""The data a review report shows: plain dataclasses of numbers, strings and arrays.

The workflow layer fills these from the project (counts, stored metrics, model predictions); the
renderer only draws them. Every section but the title and the class names is optional, so a
project with nothing trained yet still gets a report (its data summary). Scores are plain floats
in [0, 1] or ``None`` when undefined; ``nan`` is accepted and shown as "n/a" too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

#: Column of :class:`ClassCounts` and its display name, in display order.
COUNT_FIELDS: dict[str, str] = {
    "images": "Images",
    "human_masks": "Human masks",
    "auto_masks": "Auto masks",
    "seeds": "Seeds",
    "predicted": "Predicted",
}


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None for ``None``, text, ``nan`` and infinities."""
    if isinstance(value, str):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class ClassCounts:
    """How many images of one class the project holds, and how far each got.

    ``images`` counts images whose (true) label is the class; ``predicted`` counts images the
    classifier assigned to it.
    """

    images: int = 0
    human_masks: int = 0
    auto_masks: int = 0
    seeds: int = 0
    predicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counts by field name, in :data:`COUNT_FIELDS` order."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingCurve:
    """Per-epoch history of one training run.

    Parameters
    ----------
    epochs
        Epoch numbers (x axis).
    train_loss, val_loss
        Losses per epoch; ``val_loss`` may be empty when no validation set was used.
    metrics
        Validation scores in [0, 1] per epoch, by display name (``"IoU nucleus"``, ``"accuracy"``).
    best_epoch
        The epoch whose weights were kept (marked on the plot), if known.
    """

    epochs: Sequence[int]
    train_loss: Sequence[float]
    val_loss: Sequence[float] = ()
    metrics: dict[str, Sequence[float]] = field(default_factory=dict)
    best_epoch: int | None = None

    def __post_init__(self) -> None:
        n = len(self.epochs)
        series = {"train_loss": self.train_loss, "val_loss": self.val_loss, **self.metrics}
        for name, values in series.items():
            if len(values) not in (0, n) or (name == "train_loss" and len(values) != n):
                raise ValueError(f"training curve {name!r} has {len(values)} values for {n} epochs")


@dataclass(frozen=True)
class SegmentationSection:
    """Segmentation scores of one model on one set of images.

    Parameters
    ----------
    n_images
        Images scored.
    mean, pooled
        Region name (``"cytoplasm"``, ``"nucleus"``, ``"cell"``...) to metric name (``"dice"``,
        ``"iou"``, ``"precision"``, ``"recall"``...) to value: the mean over images and the
        score of the summed pixel counts. The ``to_dict()`` form of the metrics layer fits as is.
    evaluated_on
        What the images were and how they were scored, in words ("validation images of the
        training run, at the model's input size", "auto masks against the ground truth in
        truth/, at each image's own size").
    title
        A heading for this set of scores ("Auto masks", "Validation during training").
    """

    n_images: int
    mean: dict[str, dict[str, float | None]] = field(default_factory=dict)
    pooled: dict[str, dict[str, float | None]] = field(default_factory=dict)
    evaluated_on: str = ""
    model_id: str = ""
    arch: str = ""
    curve: TrainingCurve | None = None
    title: str = ""

    @classmethod
    def from_metrics_dict(cls, scores: dict[str, Any], **kwargs: Any) -> SegmentationSection:
        """Build from ``SegmentationReport.to_dict()`` (``n_images``, ``mean``, ``pooled``)."""
        return cls(
            n_images=int(scores.get("n_images", 0)),
            mean=dict(scores.get("mean", {})),
            pooled=dict(scores.get("pooled", {})),
            **kwargs,
        )


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve: false and true positive rates (same length) and the area under it."""

    fpr: Sequence[float]
    tpr: Sequence[float]
    auc: float | None

    def __post_init__(self) -> None:
        if len(self.fpr) != len(self.tpr) or len(self.fpr) < 2:
            raise ValueError(f"ROC needs >= 2 matching points, got {len(self.fpr)}/{len(self.tpr)}")


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support (true images) of one class."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int


def _square(matrix: Any, n: int, what: str) -> np.ndarray:
    """The matrix as an int64 (n, n) array; ValueError when its shape does not fit the labels."""
    arr = np.asarray(matrix)
    if arr.shape != (n, n):
        raise ValueError(f"{what} confusion matrix has shape {arr.shape}, expected ({n}, {n})")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class BinarySection:
    """The normal / "needs review" call, scored as a two-class problem (abnormal = positive).

    ``confusion`` rows are the truth, columns the prediction, in ``labels`` order
    (normal first).
    """

    f1_abnormal: float | None
    macro_f1: float | None
    sensitivity: float | None
    specificity: float | None
    auc: float | None
    confusion: Any
    roc: RocCurve | None = None
    labels: tuple[str, str] = ("normal", "needs review")

    def __post_init__(self) -> None:
        object.__setattr__(self, "confusion", _square(self.confusion, 2, "binary"))


@dataclass(frozen=True)
class ClassificationSection:
    """Scores of the Bethesda classifier on one set of images.

    ``confusion`` rows are the true class, columns the predicted one, in ``class_names`` order.
    ``roc`` holds one-vs-rest curves by class name.
    """

    class_names: Sequence[str]
    accuracy: float | None
    macro_f1: float | None
    per_class: dict[str, ClassScores]
    confusion: Any
    n_images: int = 0
    evaluated_on: str = ""
    roc: dict[str, RocCurve] = field(default_factory=dict)
    binary: BinarySection | None = None
    curve: TrainingCurve | None = None
    model_id: str = ""
    arch: str = ""
    inference_s_per_image: float | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        object.__setattr__(self, "confusion", _square(self.confusion, n, "classification"))


@dataclass(frozen=True)
class GalleryItem:
    """One reviewed image: picture, masks, heatmap, the call and why it may need a look.

    Parameters
    ----------
    name
        Image name as the user gave it (escaped when shown).
    true_class, pred_class
        Class names; ``None`` when unknown (unlabelled image, no classifier yet).
    probabilities
        Class name to predicted probability.
    image
        (H, W, 3) uint8 RGB.
    mask
        (H, W) label mask (0 background, 1 cytoplasm, 2 nucleus) or ``None``.
    heatmap
        2-D float map in [0, 1] (Grad-CAM++); any size, it is resized to the image.
    mask_provenance
        ``"manual"``, ``"auto"``... or ``""`` when there is no mask.
    needs_review, p_review
        The stored binary call (True: needs review) and its probability, as the
        classification run stored them (``None``: no call stored); the report shows these,
        never a call of its own.
    flags
        Short warnings ("looks at background", "low confidence").
    measurements
        Display name to value ("N:C ratio", "Nucleus area (µm²)").
    """

    name: str
    image: np.ndarray
    true_class: str | None = None
    pred_class: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    mask_provenance: str = ""
    flags: Sequence[str] = ()
    measurements: dict[str, float | int | str | None] = field(default_factory=dict)
    needs_review: bool | None = None
    p_review: float | None = None

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
            raise ValueError(f"{self.name!r}: image must be (H, W, 3) uint8, got {img.shape}")
        if self.mask is not None and np.shape(self.mask) != img.shape[:2]:
            raise ValueError(
                f"{self.name!r}: mask {np.shape(self.mask)} differs from image {img.shape[:2]}"
            )
        if self.heatmap is not None and (np.ndim(self.heatmap) != 2 or np.size(self.heatmap) == 0):
            raise ValueError(f"{self.name!r}: heatmap must be 2-D, got {np.shape(self.heatmap)}")


@dataclass(frozen=True)
class MorphometryTable:
    """Measurements per image (or per cell), one dict per row.

    Parameters
    ----------
    columns
        Keys of the rows in display order.
    rows
        Values by key; a missing key or ``None`` shows as blank.
    labels, units
        Header text and unit by key (``"nc_ratio"`` -> ``"N:C ratio"``, ``"nucleus_area"`` ->
        ``"µm²"``); keys without a label are shown with underscores as spaces.
    class_column, ratio_column
        Keys of the class and of the value plotted per class (the N:C ratio by default).
    """

    columns: Sequence[str]
    rows: Sequence[dict[str, Any]]
    labels: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    class_column: str = "class"
    ratio_column: str = "nc_ratio"

    def header(self, key: str) -> str:
        """Column header with its unit, e.g. ``"Nucleus area (µm²)"``."""
        text = self.labels.get(key, key.replace("_", " ").capitalize())
        unit = self.units.get(key, "")
        return f"{text} ({unit})" if unit else text


@dataclass(frozen=True)
class MethodsSection:
    """Segmentation methods side by side (see :mod:`cytoreview.workflows.method_comparison`).

    Parameters
    ----------
    trained
        One mapping per trained segmenter: ``model_id``, ``method``, ``preset``, ``n_train``,
        ``n_val``, ``input_size``, ``seconds``, ``scores`` (``dice_cytoplasm``...),
        ``split_tag`` (equal tags: the same validation images), ``current``.
    scored
        One mapping per automatic source scored against the ground truth: ``source``,
        ``method``, ``n_images``, ``mean`` (region to metric).
    shared_images
        Images every scored source masked (and with ground truth).
    truth_dir
        Where the ground truth came from ("" when not scored).
    """

    trained: Sequence[dict[str, Any]] = ()
    scored: Sequence[dict[str, Any]] = ()
    shared_images: int = 0
    truth_dir: str = ""


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows. Only ``title`` and ``class_names`` are required.

    Parameters
    ----------
    title
        Page title.
    class_names
        The project's classes in display order.
    normal_classes
        Classes of the binary "normal" call (every other class needs review).
    data_summary
        Counts by class name; classes missing here count as zero.
    notes
        Warnings shown at the top, one line each.
    segmentation
        The current segmenter and what its training run measured on its validation images.
    mask_quality
        The project's current masks scored against ground truth at native resolution (what
        ``cytoreview evaluate-seg`` measures), one section per kind of mask (auto, manual...).
    methods
        Segmentation methods side by side (shown when there is more than one to compare).
    gallery
        Images to show, already chosen by the caller; the renderer caps their number.
    """

    title: str
    class_names: Sequence[str]
    project_name: str = ""
    created_at: datetime | None = None
    software_version: str = ""
    normal_classes: Sequence[str] = ()
    data_summary: dict[str, ClassCounts] = field(default_factory=dict)
    segmentation: SegmentationSection | None = None
    classification: ClassificationSection | None = None
    gallery: Sequence[GalleryItem] = ()
    morphometry: MorphometryTable | None = None
    notes: Sequence[str] = ()
    mask_quality: Sequence[SegmentationSection] = ()
    methods: MethodsSection | None = None

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ValueError("a report needs the project's class names")
