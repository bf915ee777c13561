"""Semi-supervised segmentation: a mean teacher labels unpainted images, the student learns.

FixMatch-style consistency (Sohn et al., 2020) with a mean teacher (Tarvainen & Valpola, 2017):
the teacher, an exponential moving average of the student's weights, predicts the weak view of
an unpainted image; where it is confident (max probability >= ``threshold``) its arg-max is a
pseudo-label that the student must reproduce from the strong view (same geometry, other colours,
stain and focus). The unlabelled term is a cross-entropy averaged over *all* pixels, the
unconfident ones counting zero, so it fades by itself where the teacher is unsure; its weight
ramps up from 0 over the first epochs (an untrained teacher knows nothing) and never exceeds
the weight of the person's masks (``weight <= 1``).

Pseudo-labels live only inside a training step: they are never stored, never shown as masks.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

from cytoreview.errors import ConfigError


@dataclass(frozen=True)
class SemiConfig:
    """Settings of the unlabelled term.

    Attributes
    ----------
    threshold
        Teacher confidence needed for a pixel's pseudo-label to count.
    weight
        Weight of the unlabelled loss once ramped up (<= 1: never above the person's masks).
    rampup_epochs
        Epochs over which the weight grows linearly from 0.
    ema_decay
        The teacher keeps this share of its weights at each step.
    max_images
        At most this many unpainted images take part (a random, seeded choice).
    """

    threshold: float = 0.9
    weight: float = 1.0
    rampup_epochs: int = 10
    ema_decay: float = 0.99
    max_images: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1:
            raise ConfigError(f"the unlabelled weight must be in (0, 1], got {self.weight}")
        if not 0 < self.threshold < 1 or not 0 < self.ema_decay < 1:
            raise ConfigError("threshold and ema_decay must lie strictly between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        return asdict(self)

    def weight_at(self, epoch: int) -> float:
        """The unlabelled weight in ``epoch`` (1-based): linear ramp, then ``weight``."""
        if self.rampup_epochs <= 0:
            return self.weight
        return self.weight * min(1.0, (epoch - 1) / self.rampup_epochs)


def make_teacher(student: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of the student in eval mode."""
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def warmed_up_decay(decay: float, step: int) -> float:
    """``decay``, lowered over the first steps so that the average follows the early weights.

    ``min(decay, (1 + step) / (10 + step))``: 0.1 at step 0, 0.55 at step 10, 0.92 at step 100.
    Without it a short run (a quick fine-tune, a one-minute budget) would keep mostly the
    initial weights.
    """
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    decay: float,
    average_buffers: bool = False,
) -> None:
    """Move the teacher towards the student: ``decay * teacher + (1 - decay) * student``.

    Buffers (batch-norm statistics) are copied, or with ``average_buffers`` averaged like the
    weights (floating-point ones; counters are copied): statistics that match the averaged
    weights rather than the last step's.
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if average_buffers and t.is_floating_point():
            t.mul_(decay).add_(s, alpha=1 - decay)
        else:
            t.copy_(s)


def pseudo_label_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    threshold: float,
    absent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Masked cross-entropy of the student against the teacher's confident arg-max.

    Parameters
    ----------
    student_logits, teacher_logits
        (N, C, H, W); the teacher's carry no gradient.
    threshold
        Confidence a pixel's pseudo-label needs.
    absent
        (C,) bool: classes no painted mask contains, left out of both softmaxes.

    Returns
    -------
    loss, share
        The mean over all pixels (unconfident ones count 0) and the share of confident pixels.
    """
    student_logits = student_logits.float()
    teacher_logits = teacher_logits.float()
    if absent is not None and bool(absent.any()):
        fill = absent.view(1, -1, 1, 1)
        student_logits = student_logits.masked_fill(fill, -1e4)
        teacher_logits = teacher_logits.masked_fill(fill, -1e4)
    confidence, labels = teacher_logits.softmax(dim=1).max(dim=1)
    keep = (confidence >= threshold).float()
    per_pixel = F.cross_entropy(student_logits, labels, reduction="none")
    return (per_pixel * keep).mean(), float(keep.mean())
