"""Segmentation losses: class-weighted soft Dice + categorical focal (default), or Jaccard.

The default follows the published protocol (Dice + focal with alpha 0.25, gamma 2): Dice keeps
small structures such as nuclei from being swamped by background, focal concentrates on the
hard pixels at cell borders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

# LOSSES lives in the torch-free choices module (the CLI parser lists it without torch).
from cytoreview.choices import LOSSES
from cytoreview.errors import ConfigError

_EPS = 1e-6


def class_weights_from_masks(masks: Sequence[np.ndarray], n_classes: int = 3) -> list[float]:
    """Median-frequency balancing weights, normalised to mean 1.

    A class absent from every mask gets weight 1 (neither boosted nor ignored).
    """
    counts = np.zeros(n_classes, np.float64)
    for mask in masks:
        counts += np.bincount(mask.ravel(), minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1.0)
    present = freq > 0
    weights = np.ones(n_classes)
    if present.any():
        weights[present] = np.median(freq[present]) / freq[present]
    return (weights / weights.mean()).tolist()


def soft_dice_loss(
    probs: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """1 − weighted mean over classes of the soft Dice, pooled over the batch."""
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + _EPS) / (denom + _EPS)
    return 1 - (weights * dice).sum() / weights.sum()


def soft_jaccard_loss(
    probs: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """1 − weighted mean over classes of the soft Jaccard index (IoU)."""
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    union = probs.sum(dims) + onehot.sum(dims) - inter
    iou = (inter + _EPS) / (union + _EPS)
    return 1 - (weights * iou).sum() / weights.sum()


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Categorical focal loss: mean over pixels of −alpha (1 − p_t)^gamma log p_t."""
    log_p = F.log_softmax(logits, dim=1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    pt = log_pt.exp()
    return (-alpha * (1 - pt) ** gamma * log_pt).mean()


class SegmentationLoss(torch.nn.Module):
    """The training loss, chosen by name.

    Parameters
    ----------
    name
        ``dice_focal`` (default), ``jaccard`` or ``dice``.
    class_weights
        One weight per class for the Dice/Jaccard term.
    alpha, gamma
        Focal-loss parameters.
    """

    def __init__(
        self,
        name: str = "dice_focal",
        class_weights: Sequence[float] = (1.0, 1.0, 1.0),
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
        self.name = name
        self.alpha, self.gamma = alpha, gamma
        self.register_buffer("weights", torch.tensor(list(class_weights), dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (N, C, H, W) against integer ``target`` (N, H, W)."""
        logits = logits.float()  # losses in fp32 even under mixed precision
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        if self.name == "jaccard":
            return soft_jaccard_loss(probs, onehot, self.weights)
        dice = soft_dice_loss(probs, onehot, self.weights)
        if self.name == "dice":
            return dice
        return dice + focal_loss(logits, target, self.alpha, self.gamma)
