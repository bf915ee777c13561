"""Segmentation losses: class-weighted soft Dice + cross-entropy (default), + focal, or Jaccard.

The soft Dice, weighted by class, keeps small structures such as nuclei from being swamped by
background. It is pooled over the batch, so it says little about any one pixel; the default
adds the plain per-pixel cross-entropy (as nnU-Net does), whose gradient is largest on the
pixels the model gets wrong, at cell borders. The published protocol adds a focal term instead
(alpha 0.25, gamma 2), which scales each pixel's cross-entropy by a quarter and by (1 - p)^2:
once the model is roughly right it adds almost nothing, and the borders are left to the pooled
Dice (Herlev, 4 seed splits: Dice 0.784 / 0.901 cytoplasm / nucleus with it, 0.793 / 0.907 with
the cross-entropy; ``cytoreview.defaults.SegRecipe.loss``).
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


def classes_present(masks: Sequence[np.ndarray], n_classes: int = 3) -> list[bool]:
    """Which labels occur in at least one mask (a nucleus-only project has no cytoplasm)."""
    seen = np.zeros(n_classes, bool)
    for mask in masks:
        seen |= np.bincount(mask.ravel(), minlength=n_classes)[:n_classes] > 0
    return seen.tolist()


def class_weights_from_masks(masks: Sequence[np.ndarray], n_classes: int = 3) -> list[float]:
    """Median-frequency balancing weights, normalised to mean 1 over the classes present.

    A class absent from every mask gets weight 0: nothing tells the model what it looks like,
    and a Dice term for it would only push its probability to 0 with a weight unrelated to
    the data (see :class:`SegmentationLoss`, which also leaves it out of the softmax). With no
    labelled pixel at all every class gets 1.
    """
    counts = np.zeros(n_classes, np.float64)
    for mask in masks:
        counts += np.bincount(mask.ravel(), minlength=n_classes)[:n_classes]
    present = counts > 0
    if not present.any():
        return [1.0] * n_classes
    freq = counts / counts.sum()
    weights = np.zeros(n_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    weights[present] /= weights[present].mean()
    return weights.tolist()


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
        ``dice_ce`` (default), ``dice_focal``, ``jaccard`` or ``dice``.
    class_weights
        One weight per class for the Dice/Jaccard term.
    alpha, gamma
        Focal-loss parameters.
    present
        Which classes the training masks contain (default: all); absent ones are masked out.
    """

    def __init__(
        self,
        name: str = "dice_ce",
        class_weights: Sequence[float] = (1.0, 1.0, 1.0),
        alpha: float = 0.25,
        gamma: float = 2.0,
        present: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
        self.name = name
        self.alpha, self.gamma = alpha, gamma
        self.register_buffer("weights", torch.tensor(list(class_weights), dtype=torch.float32))
        absent = [not p for p in present] if present is not None else [False] * len(class_weights)
        self.register_buffer("absent", torch.tensor(absent, dtype=torch.bool))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (N, C, H, W) against integer ``target`` (N, H, W)."""
        logits = logits.float()  # losses in fp32 even under mixed precision
        if bool(self.absent.any()):
            # A class no mask contains is left out of the softmax: the model is neither
            # taught nor penalised about it, and inference drops it the same way.
            logits = logits.masked_fill(self.absent.view(1, -1, 1, 1), -1e4)
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        if self.name == "jaccard":
            return soft_jaccard_loss(probs, onehot, self.weights)
        dice = soft_dice_loss(probs, onehot, self.weights)
        if self.name == "dice":
            return dice
        if self.name == "dice_ce":
            # Unweighted, as in nnU-Net: the Dice term already balances the classes.
            return dice + F.cross_entropy(logits, target)
        return dice + focal_loss(logits, target, self.alpha, self.gamma)
