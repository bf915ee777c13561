"""From class probabilities to labels: the arg-max, shifted by offsets chosen on validation images.

A segmenter trained on a few dozen cells and averaged over 8 views is under-confident at the
edge of a cell: where the cytoplasm is a ring of one or two pixels around a large nucleus, its
probability is spread over the ring and the background beside it, and the plain arg-max calls
much of the ring background. On Herlev (80 seeds, the other 530 cells auto-masked) the commonest
error was true cytoplasm called background. Adding a constant to the log-probability of every
cell class (cytoplasm and nucleus alike) before the arg-max moves the cell's outline and
nothing else: the nucleus-cytoplasm border, where both classes gain the same, stays where it
was. :func:`fit_offsets` chooses that one constant on the training run's validation images,
which the network never learnt from, by the score the masks are judged by (the mean over
images of each class's Dice, after the clean-up rules).

One number, not one per class: with a free offset per class, 15 validation cells chose a
nucleus offset that their nucleus Dice liked and the other cells' did not (Herlev, split 3:
nucleus Dice on the 530 other cells depends on the difference of the two offsets alone, and
is highest where it is 0). The offsets are stored with the model and applied wherever its
masks are made (see :class:`cytoreview.inference.segment.SegmenterSpec`); the probabilities,
and the uncertainty computed from them, are left as the network gave them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cytoreview.inference.postprocess import PostprocessConfig, clean_mask
from cytoreview.metrics.segmentation import evaluate_masks
from cytoreview.types import CYTOPLASM, NUCLEUS

#: The cell offsets tried (the background's stays 0: only differences count). Steps of 0.2 in
#: log-probability (a factor of 1.22 on the odds of cell against background), up to +-1.2 (3.3x).
OFFSET_GRID: tuple[float, ...] = tuple(round(0.2 * k, 1) for k in range(-6, 7))
#: Offsets are kept only when they raise the validation score by at least this much; a smaller
#: gain on a dozen images is noise.
MIN_GAIN = 0.002
#: Fewer validation cells than this (connected parts of the masks' foreground): no offset. An
#: outline's bias is measured cell by cell; a handful of crops cannot tell it from noise (the
#: demo's 4 validation cells chose -1.2, the grid's end, with cytoplasm Dice falling and nucleus
#: rising there).
MIN_CELLS = 10
_SCORED = {"cytoplasm": CYTOPLASM, "nucleus": NUCLEUS}
_FLOOR = np.float32(1e-8)  # log(0) guard: a dropped class keeps a log-probability of -18


def decide(probs: np.ndarray, offsets: Sequence[float] | None = None) -> np.ndarray:
    """Labels (H, W) uint8 from probabilities (C, H, W): the arg-max of log p + offset."""
    if offsets is None or not any(offsets):
        return argmax_classes(probs)
    scores = np.maximum(probs, _FLOOR)  # a new array; the log and the shift go into it in place
    np.log(scores, out=scores)
    scores += np.asarray(offsets, np.float32)[:, None, None]
    return argmax_classes(scores)


def _decide_log(log_probs: np.ndarray, offsets: Sequence[float]) -> np.ndarray:
    shift = np.asarray(offsets, np.float32)[:, None, None]
    return argmax_classes(log_probs + shift)


def argmax_classes(scores: np.ndarray) -> np.ndarray:
    """``scores.argmax(axis=0)`` as uint8 labels, for a few classes on large images.

    The same labels, ties to the lower class included, computed plane by plane: numpy's
    arg-max along the first of three axes walks the planes with a stride per pixel and took
    1.0-1.5 ms on a 256 px image, this 0.1-0.2 ms (2 CPU cores; ``segment`` calls it on every
    image, the offset fit on every validation image for each offset tried).
    """
    if scores.ndim != 3 or scores.shape[0] < 1:
        raise ValueError(f"scores must be (C, H, W) with C >= 1, got shape {scores.shape}")
    if scores.shape[0] > 255:
        raise ValueError(f"{scores.shape[0]} classes do not fit uint8 labels")
    labels = np.zeros(scores.shape[1:], np.uint8)
    best = scores[0].copy()
    for label in range(1, scores.shape[0]):
        # Strictly greater: a tie keeps the lower class, as numpy's arg-max does. NaN never
        # wins a comparison, unlike numpy's (which picks the first NaN); probabilities have none.
        wins = scores[label] > best
        labels[wins] = label
        if label + 1 < scores.shape[0]:
            np.maximum(best, scores[label], out=best)
    return labels


def _count_cells(mask: np.ndarray) -> int:
    """Connected parts of a mask's foreground (cytoplasm and nucleus together, 8-connected)."""
    return cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)[0] - 1


@dataclass(frozen=True)
class OffsetFit:
    """The chosen offsets and what they did on the validation images.

    Attributes
    ----------
    offsets
        One per class (background, cytoplasm, nucleus): 0 for the background, the cell offset
        for the classes the masks contain; all 0 when none helped enough.
    n_images
        Validation images they were chosen on.
    before, after
        Mean Dice per scored class over those images with no offsets and with the chosen ones.
    reason
        Why the offsets are 0, when they are (empty otherwise).
    """

    offsets: tuple[float, ...]
    n_images: int
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (stored in the model's config)."""
        return {
            "offsets": list(self.offsets),
            "n_images": self.n_images,
            "dice_before": self.before,
            "dice_after": self.after,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OffsetFit:
        """The inverse of :meth:`to_dict`."""
        return cls(
            tuple(float(v) for v in data.get("offsets", ())),
            int(data.get("n_images", 0)),
            dict(data.get("dice_before", {})),
            dict(data.get("dice_after", {})),
            str(data.get("reason", "")),
        )

    def describe(self) -> str:
        """One line for the training log and the report."""
        if not any(self.offsets):
            return f"decision offsets: none ({self.reason})"
        scores = ", ".join(
            f"{name} {self.before[name]:.3f} -> {self.after[name]:.3f}" for name in self.after
        )
        return (
            f"decision offset {max(self.offsets, key=abs):+.1f} on the cells' log-probability "
            f"against background, chosen on {self.n_images} validation images: Dice {scores}"
        )


def fit_offsets(
    probs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    present: Sequence[bool],
    post: PostprocessConfig | None = None,
    grid: Sequence[float] = OFFSET_GRID,
) -> OffsetFit:
    """Choose the cell offset that maximises the validation images' mean Dice.

    Parameters
    ----------
    probs
        Each validation image's probabilities (C, H, W) at its own size, as the model's masks
        are made (same views, same resizing).
    truths
        The person's masks (H, W), labels 0/1/2.
    present
        Which classes the training masks contain; those are scored and shifted.
    post
        The clean-up rules applied before scoring (the masks a user gets).
    grid
        The offsets tried.

    Returns
    -------
    OffsetFit
        The best offset (the smallest among equals), or zeros when it gains less than
        :data:`MIN_GAIN` over none or the masks hold fewer than :data:`MIN_CELLS` cells.
    """
    n_classes = len(present)
    zeros = (0.0,) * n_classes
    if len(probs) != len(truths):
        raise ValueError(f"{len(probs)} probability maps for {len(truths)} masks")
    cells = sum(_count_cells(t) for t in truths)
    if cells < MIN_CELLS:
        return OffsetFit(
            zeros, len(probs), reason=f"{cells} cell(s) in {len(probs)} validation image(s)"
        )
    scored = {name: label for name, label in _SCORED.items() if present[label]}
    if not scored:
        return OffsetFit(zeros, len(probs), reason="no foreground class in the masks")
    post = post or PostprocessConfig(require_cytoplasm=bool(present[CYTOPLASM]))
    logs = [np.log(np.maximum(p, _FLOOR)) for p in probs]

    def shifted(value: float) -> tuple[float, ...]:
        return tuple(
            float(value) if label in scored.values() else 0.0 for label in range(n_classes)
        )

    def score(offsets: tuple[float, ...]) -> tuple[float, dict[str, float]]:
        masks = (clean_mask(_decide_log(lp, offsets), post) for lp in logs)
        items = ((str(i), m, t, None) for i, (m, t) in enumerate(zip(masks, truths, strict=True)))
        mean = evaluate_masks(items).mean
        dice = {name: mean[name].dice for name in scored}
        finite = [d for d in dice.values() if not math.isnan(d)]
        return (sum(finite) / len(finite) if finite else -1.0), dice

    base_score, base_dice = score(zeros)
    best = (base_score, zeros, base_dice)
    for value in sorted(grid, key=abs):  # the smallest offset wins a tie
        offsets = shifted(value)
        result, dice = score(offsets)
        if result > best[0] + 1e-9:
            best = (result, offsets, dice)
    if best[0] - base_score < MIN_GAIN:
        reason = f"none raised the validation Dice by {MIN_GAIN} or more"
        return OffsetFit(zeros, len(probs), base_dice, base_dice, reason=reason)
    return OffsetFit(best[1], len(probs), base_dice, best[2])
