"""How good an explanation method is: mean image entropy and pixel flipping (the paper's III-D).

Both figures are CytoReview's own (:mod:`cytoreview.explain.quality`), computed on the maps
that the grouping receives (:func:`cytoreview_xai.explain.explain_batch`, at 128 px):

* **entropy** (:func:`~cytoreview.explain.quality.heatmap_entropy`): how spread the map is,
  divided by ``log(pixels)`` so it lies in [0, 1] (the paper reports the raw Shannon entropy,
  5.37 for Grad-CAM++ and 3.37-3.93 for LRP, which depends on the image size; the order is
  what compares). Low = focused.
* **pixel flipping** (:func:`~cytoreview.explain.quality.pixel_flipping_curve`,
  :func:`~cytoreview.explain.quality.flipping_auc`): the most relevant pixels are replaced by
  the image's mean colour first, in ten steps, and the explained class's probability is
  followed; the area under that curve is low when the map found what the classifier uses.
  The same curve with pixels in random order is the reference a map must beat.

Pixel flipping runs the classifier eleven times per image, so it is measured on a sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cytoreview.data.transforms import to_tensor_layout
from cytoreview.explain.quality import (
    flipping_auc,
    heatmap_entropy,
    pixel_flipping_curve,
    random_flipping_curve,
)
from cytoreview_xai.explain import explain_batch
from cytoreview_xai.networks import XaiVgg

__all__ = ["explanation_quality"]


def _predictor(model: XaiVgg) -> Any:
    device = next(model.parameters()).device

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    return predict


def explanation_quality(
    model: XaiVgg,
    letterboxed: np.ndarray,
    method: str,
    *,
    steps: int = 10,
    random_reference: bool = True,
    batch_size: int = 8,
) -> dict[str, float]:
    """Mean entropy and pixel-flipping AUC of ``method``'s maps over a sample of images.

    Parameters
    ----------
    model
        The classifier (eval mode is set).
    letterboxed
        ``(N, 128, 128, 3)`` uint8 letterboxed images (the sample).
    method
        An explanation (:data:`~cytoreview_xai.settings.EXPLANATIONS`).
    steps
        Pixel-flipping steps.
    random_reference
        Also the random-order AUC (three random orders per image).
    batch_size
        Images explained at once.

    Returns
    -------
    dict
        ``n``, ``entropy`` (mean), ``flipping_auc`` (mean) and, if asked,
        ``random_flipping_auc`` (mean); lower AUC = more faithful.
    """
    model.eval()
    device = next(model.parameters()).device
    predict = _predictor(model)
    entropies, aucs, randoms = [], [], []
    for start in range(0, len(letterboxed), batch_size):
        chunk = letterboxed[start : start + batch_size]
        x = to_tensor_layout(chunk)
        maps, probs = explain_batch(model, torch.from_numpy(x).to(device), method)
        for image, heatmap, p in zip(x, maps, probs, strict=True):
            target = int(p.argmax())
            entropies.append(heatmap_entropy(heatmap))
            fractions, confidences = pixel_flipping_curve(predict, image, heatmap, target, steps)
            aucs.append(flipping_auc(fractions, confidences))
            if random_reference:
                randoms.append(flipping_auc(*random_flipping_curve(predict, image, target, steps)))
    out = {
        "n": float(len(entropies)),
        "entropy": float(np.mean(entropies)) if entropies else float("nan"),
        "flipping_auc": float(np.mean(aucs)) if aucs else float("nan"),
    }
    if random_reference:
        out["random_flipping_auc"] = float(np.mean(randoms)) if randoms else float("nan")
    return out
