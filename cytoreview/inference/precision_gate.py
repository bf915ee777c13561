"""The quality gate of a faster model variant: its masks against the fp32 model's masks.

A variant (int8) may replace the fp32 model only if, on held-out images of the project, its
cleaned masks lose at most :data:`MAX_DICE_LOSS` Dice per class against the fp32 masks, the
fp32 masks standing in for the truth. Dice against a reference, not against ground truth, on
purpose: every image of the project can be used, and the loss bounds how far the variant can
move any score measured against real truth.

The gate uses the mean over images (the headline figure of the benchmarks and of
``evaluate-seg``), which is stricter than Dice pooled over all pixels: a few flipped pixels
cost a small nucleus more than a large one. The pooled loss, the worst image and the change in
the uncertainty scores are measured too, for the record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cytoreview.inference.segment import BatchPredictor, SegmenterSpec, segment_images
from cytoreview.types import CYTOPLASM, LABEL_NAMES, NUCLEUS

__all__ = [
    "GATED_CLASSES",
    "MAX_DICE_LOSS",
    "GateResult",
    "MaskAgreement",
    "gate",
    "mask_agreement",
]

#: Largest Dice a variant's masks may lose per class against the fp32 masks.
MAX_DICE_LOSS = 0.005
#: The classes the gate scores (background is what the others leave).
GATED_CLASSES: tuple[int, ...] = (CYTOPLASM, NUCLEUS)


@dataclass(frozen=True)
class MaskAgreement:
    """How far a variant's masks are from the reference masks, per class (1 - Dice).

    Attributes
    ----------
    dice_loss
        1 - the mean over images of the Dice of the variant's mask against the reference mask.
        An image where neither mask has the class counts as full agreement.
    dice_loss_pooled
        1 - the Dice over all pixels of all images at once.
    worst_image_loss
        The largest single-image loss.
    """

    dice_loss: dict[str, float]
    dice_loss_pooled: dict[str, float]
    worst_image_loss: dict[str, float]


def _dice(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Dice of two boolean masks, with its numerator and denominator (for pooling)."""
    both = int(np.count_nonzero(a & b))
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return (1.0 if total == 0 else 2.0 * both / total), 2 * both, total


def mask_agreement(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> MaskAgreement:
    """Per-class Dice loss of ``candidate`` label masks against ``reference`` ones.

    Parameters
    ----------
    reference, candidate
        Label masks (0/1/2) of the same images, pairwise of the same shape.

    Returns
    -------
    MaskAgreement
        The losses for :data:`GATED_CLASSES`, keyed by class name.
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError(
            f"need two non-empty mask lists of one length, got {len(reference)} and "
            f"{len(candidate)}"
        )
    mean, pooled, worst = {}, {}, {}
    for label in GATED_CLASSES:
        scores, numerator, denominator = [], 0, 0
        for ref, cand in zip(reference, candidate, strict=True):
            dice, num, den = _dice(ref == label, cand == label)
            scores.append(dice)
            numerator, denominator = numerator + num, denominator + den
        name = LABEL_NAMES[label]
        mean[name] = 1.0 - float(np.mean(scores))
        pooled[name] = 0.0 if denominator == 0 else 1.0 - numerator / denominator
        worst[name] = 1.0 - min(scores)
    return MaskAgreement(mean, pooled, worst)


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the measurements behind it."""

    agreement: MaskAgreement
    uncertainty_abs_diff: float
    n_images: int
    model_seconds: dict[str, float]
    max_dice_loss: float

    @property
    def passed(self) -> bool:
        """Whether every gated class lost at most :attr:`max_dice_loss` (mean over images)."""
        return all(v <= self.max_dice_loss for v in self.agreement.dice_loss.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain, rounded data for the precision record."""
        a = self.agreement

        def rounded(d: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 5) for k, v in d.items()}

        return {
            "passed": self.passed,
            "max_dice_loss": self.max_dice_loss,
            "dice_loss": rounded(a.dice_loss),
            "dice_loss_pooled": rounded(a.dice_loss_pooled),
            "worst_image_loss": rounded(a.worst_image_loss),
            "uncertainty_abs_diff": round(self.uncertainty_abs_diff, 5),
            "n_images": self.n_images,
            "model_seconds": {k: round(v, 3) for k, v in self.model_seconds.items()},
        }


def _timed(predict: BatchPredictor, totals: dict[str, float], key: str) -> BatchPredictor:
    def call(batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = predict(batch)
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
        return out

    return call


def gate(
    images: Sequence[np.ndarray],
    reference: BatchPredictor,
    candidate: BatchPredictor,
    spec: SegmenterSpec,
    *,
    max_dice_loss: float = MAX_DICE_LOSS,
    batch_size: int = 8,
) -> GateResult:
    """Segment ``images`` with both models as ``segment`` does and compare the masks.

    Parameters
    ----------
    images
        RGB uint8 images, ideally not those the variant was calibrated on.
    reference
        The fp32 model.
    candidate
        The variant under test.
    spec
        Input size, tiling and normalisation.
    max_dice_loss
        The largest Dice loss per class that passes.
    batch_size
        Images per model call, as in ``segment``.

    Returns
    -------
    GateResult
        Losses per class, the mean absolute change of the uncertainty score, and the time
        each model spent (the first calls include ONNX Runtime's warm-up).
    """
    if not images:
        raise ValueError("the gate needs at least one image")
    seconds: dict[str, float] = {"reference": 0.0, "candidate": 0.0}
    ref_model = _timed(reference, seconds, "reference")
    cand_model = _timed(candidate, seconds, "candidate")
    ref_results, cand_results = [], []
    for first in range(0, len(images), batch_size):
        chunk = images[first : first + batch_size]
        ref_results += segment_images(chunk, ref_model, spec)
        cand_results += segment_images(chunk, cand_model, spec)
    agreement = mask_agreement([r.mask for r in ref_results], [c.mask for c in cand_results])
    pairs = zip(ref_results, cand_results, strict=True)
    du = float(np.mean([abs(r.uncertainty - c.uncertainty) for r, c in pairs]))
    return GateResult(agreement, du, len(images), seconds, max_dice_loss)
