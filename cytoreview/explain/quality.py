"""Quality figures of one heatmap: focus, faithfulness and where its mass lies.

* :func:`heatmap_entropy`: how spread the heatmap is (0 = one pixel, 1 = uniform).
* :func:`pixel_flipping_curve` and :func:`flipping_auc`: faithfulness. The pixels the map
  calls most relevant are removed first; a faithful map makes the target confidence fall
  fast, i.e. gives a low area under the curve. :func:`random_flipping_curve` is the
  reference a map must beat.
* :func:`mass_by_region` and :func:`looks_at_background`: how much of the map lies on the
  nucleus, the cytoplasm and the background; a model that looks mostly at the background is
  flagged for review.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.special import xlogy

from cytoreview.errors import ConfigError
from cytoreview.types import BACKGROUND, CYTOPLASM, LABEL_NAMES, NUCLEUS, VALID_LABELS

BASELINES: tuple[str, ...] = ("mean", "zero", "blur")
Predict = Callable[[np.ndarray], np.ndarray]


def _as_heatmap(heatmap: np.ndarray) -> np.ndarray:
    h = np.asarray(heatmap, np.float64)
    if h.ndim != 2 or h.size == 0:
        raise ValueError(f"expected a 2-D (H, W) heatmap, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise ValueError("the heatmap has NaN or infinite values")
    return np.maximum(h, 0.0)  # a heatmap is a non-negative relevance


def heatmap_entropy(heatmap: np.ndarray) -> float:
    """Shannon entropy of the heatmap read as a distribution over its pixels.

    Parameters
    ----------
    heatmap
        ``(H, W)`` non-negative map (negative values are clipped to 0).

    Returns
    -------
    float
        Entropy divided by ``log(H * W)``, in [0, 1]: 1 for a uniform map, 0 when all the
        mass is on one pixel. An all-zero map points nowhere and scores 1 (no focus at all);
        a one-pixel map scores 0.
    """
    h = _as_heatmap(heatmap)
    total = h.sum()
    if h.size == 1:
        return 0.0
    if total <= 0:
        return 1.0
    p = h.ravel() / total
    entropy = -xlogy(p, p).sum() / np.log(h.size)  # xlogy: 0 log 0 = 0 exactly
    return float(np.clip(entropy, 0.0, 1.0))


# --- Pixel flipping ---------------------------------------------------------------------------
def _check_input(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[0] < 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected one (C >= 3, S, S) model input, got shape {x.shape}")
    return x


def _baseline(image: np.ndarray, baseline: str) -> np.ndarray:
    """``(3, S, S)`` replacement values for the normalised image channels."""
    if baseline == "zero":
        return np.zeros_like(image)  # 0 after ImageNet normalisation: the ImageNet mean colour
    if baseline == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).copy()
    if baseline == "blur":
        # Strong blur: removes the cell's texture and edges but keeps its colour and layout.
        sigma = max(1.0, image.shape[-1] / 16)
        hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
        return cv2.GaussianBlur(hwc, (0, 0), sigma).transpose(2, 0, 1).astype(np.float32)
    raise ConfigError(
        f"unknown pixel-flipping baseline {baseline!r}; valid: {', '.join(BASELINES)}"
    )


def _flip_curve(
    predict: Predict,
    x: np.ndarray,
    order: np.ndarray,
    target: int,
    steps: int,
    baseline: str,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base = _baseline(x[:3], baseline).reshape(3, -1)
    n = order.size
    counts = np.round(np.linspace(0.0, 1.0, steps + 1) * n).astype(np.int64)
    batch = np.repeat(x[None], steps + 1, axis=0)  # a new C-contiguous array
    flat = batch.reshape(steps + 1, x.shape[0], n)  # so this is a view of it
    for k, count in enumerate(counts):
        image = flat[k, :3]
        image[:, order[:count]] = base[:, order[:count]]
    probs = [
        np.asarray(predict(batch[i : i + batch_size])) for i in range(0, len(batch), batch_size)
    ]
    p = np.concatenate(probs, axis=0)
    if p.ndim != 2 or p.shape[0] != len(batch):
        raise ValueError(f"predict must return (N, K) probabilities, got shape {p.shape}")
    if not 0 <= target < p.shape[1]:
        raise ValueError(f"target class {target} out of range for {p.shape[1]} classes")
    if not np.isfinite(p).all() or p.min() < -1e-3 or p.max() > 1 + 1e-3:
        raise ValueError("predict must return probabilities in [0, 1] (softmax the logits)")
    return counts / n, np.clip(p[:, target], 0.0, 1.0).astype(np.float64)


def pixel_flipping_curve(
    predict: Predict,
    x: np.ndarray,
    heatmap: np.ndarray,
    target: int,
    steps: int = 10,
    baseline: str = "mean",
    *,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence of the target class as the most relevant pixels are removed first.

    Parameters
    ----------
    predict
        Maps ``(N, 6, S, S)`` model inputs to ``(N, K)`` class probabilities.
    x
        One ``(6, S, S)`` model input (channels 0-2 normalised RGB, 3-5 the one-hot mask).
    heatmap
        ``(S, S)`` relevance at the input resolution (e.g. :func:`upsample_heatmap`).
    target
        The class whose confidence is followed.
    steps
        Number of increments: after step ``k``, the top ``k / steps`` of the pixels are
        replaced. Ties (e.g. the zero area of a CAM) are broken at random (``seed``), not in
        raster order, which would favour one side of the image.
    baseline
        What a removed pixel becomes: ``"mean"`` (this image's mean colour), ``"zero"`` (0 in
        the normalised input, i.e. the ImageNet mean colour) or ``"blur"`` (a strongly
        blurred copy of the image, sigma S/16).
    batch_size
        Inputs per ``predict`` call.
    seed
        Seed of the random tie-breaking.

    Returns
    -------
    fractions, confidences : np.ndarray
        ``steps + 1`` values each: the share of pixels removed (0 first, 1 last) and the
        target probability after that step.

    Notes
    -----
    Only the image channels are flipped; the mask channels stay as they are. The heatmap
    explains the image branch (the CAM layer is the image encoder's last block), so the test
    is whether removing the image evidence it points at lowers the confidence. Flipping the
    mask too would mix in the mask branch, which the map does not describe, and would feed
    the model masks that are no longer one-hot (a "mean" of a one-hot mask is no label).
    """
    x = _check_input(x)
    h = _as_heatmap(heatmap)
    if h.shape != x.shape[1:]:
        raise ValueError(f"heatmap {h.shape} does not match the input {x.shape[1:]}")
    rng = np.random.default_rng(seed)
    flat = h.ravel()
    order = np.lexsort((rng.random(flat.size), -flat))  # last key is primary: relevance desc
    return _flip_curve(predict, x, order, int(target), steps, baseline, batch_size)


def random_flipping_curve(
    predict: Predict,
    x: np.ndarray,
    target: int,
    steps: int = 10,
    baseline: str = "mean",
    *,
    repeats: int = 3,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference of :func:`pixel_flipping_curve`: pixels removed in random order.

    Same parameters, without the heatmap; the confidences are averaged over ``repeats``
    random orders. A heatmap that finds what matters has a lower AUC than this curve.
    """
    x = _check_input(x)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    n = x.shape[1] * x.shape[2]
    curves = [
        _flip_curve(predict, x, rng.permutation(n), int(target), steps, baseline, batch_size)
        for _ in range(repeats)
    ]
    return curves[0][0], np.mean([c for _, c in curves], axis=0)


def flipping_auc(fractions: np.ndarray, confidences: np.ndarray) -> float:
    """Area under a pixel-flipping curve, divided by the span of the fractions.

    Returns
    -------
    float
        The mean confidence over the curve (trapezoid rule), in [0, 1] for probabilities:
        lower means the heatmap found what matters.
    """
    f = np.asarray(fractions, np.float64)
    c = np.asarray(confidences, np.float64)
    if f.ndim != 1 or f.shape != c.shape or f.size < 2:
        raise ValueError(f"expected two 1-D arrays of >= 2 equal length, got {f.shape}, {c.shape}")
    span = f[-1] - f[0]
    if np.any(np.diff(f) < 0) or span <= 0:
        raise ValueError("fractions must increase from the first to the last value")
    return float(np.trapezoid(c, f) / span)


# --- Where the mass lies ----------------------------------------------------------------------
def mass_by_region(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Share of the heatmap's mass on the nucleus, the cytoplasm and the background.

    Parameters
    ----------
    heatmap
        ``(H, W)`` non-negative map at the image's own shape (e.g. :func:`heatmap_to_image`).
    mask
        ``(H, W)`` label image (0 background, 1 cytoplasm, 2 nucleus).

    Returns
    -------
    dict
        ``{"nucleus": f, "cytoplasm": f, "background": f}`` summing to 1; all three 0.0 for
        an all-zero heatmap (it points nowhere, so no region gets a share).
    """
    h = _as_heatmap(heatmap)
    mask = np.asarray(mask)
    if mask.shape != h.shape:
        raise ValueError(f"mask {mask.shape} does not match the heatmap {h.shape}")
    if not set(np.unique(mask).tolist()) <= VALID_LABELS:
        raise ValueError(f"mask values must be in {sorted(VALID_LABELS)}")
    total = h.sum()
    labels = (NUCLEUS, CYTOPLASM, BACKGROUND)
    if total <= 0:
        return {LABEL_NAMES[lab]: 0.0 for lab in labels}
    return {LABEL_NAMES[lab]: float(h[mask == lab].sum() / total) for lab in labels}


def area_by_region(mask: np.ndarray) -> dict[str, float]:
    """Share of the image's area that is nucleus, cytoplasm and background (sums to 1)."""
    mask = np.asarray(mask)
    n = max(mask.size, 1)
    return {
        LABEL_NAMES[lab]: float((mask == lab).sum() / n) for lab in (NUCLEUS, CYTOPLASM, BACKGROUND)
    }


def looks_at_background(
    shares: dict[str, float],
    threshold: float = 0.5,
    areas: dict[str, float] | None = None,
) -> bool:
    """True when the heatmap rests mostly on the background (the call deserves a review).

    Parameters
    ----------
    shares
        :func:`mass_by_region` of the heatmap.
    threshold
        Share of the mass on the background above which the heatmap is suspect.
    areas
        :func:`area_by_region` of the mask. When given, the background must also hold more of
        the mass than of the area: a crop that is 70 % slide would otherwise be flagged for a
        heatmap that is merely coarse (a 4 x 4 feature map upsampled covers the slide around
        the cell too) rather than drawn to the background.
    """
    background = float(shares.get("background", 0.0))
    if background <= threshold:
        return False
    return areas is None or background > float(areas.get("background", 0.0))


@dataclass(frozen=True)
class HeatmapQuality:
    """The quality figures of one heatmap.

    Parameters
    ----------
    entropy
        :func:`heatmap_entropy` (0 focused, 1 spread).
    shares
        :func:`mass_by_region`.
    areas
        :func:`area_by_region` of the mask: what the shares would be for a uniform heatmap.
    looks_at_background
        :func:`looks_at_background` of the shares, relative to the areas.
    flipping_auc, random_flipping_auc
        :func:`flipping_auc` of the heatmap's and the random-order curve, when computed.
    """

    entropy: float
    shares: dict[str, float] = field(default_factory=dict)
    areas: dict[str, float] = field(default_factory=dict)
    looks_at_background: bool = False
    flipping_auc: float | None = None
    random_flipping_auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        return {
            "entropy": self.entropy,
            "shares": dict(self.shares),
            "areas": dict(self.areas),
            "looks_at_background": self.looks_at_background,
            "flipping_auc": self.flipping_auc,
            "random_flipping_auc": self.random_flipping_auc,
        }


def heatmap_quality(
    heatmap: np.ndarray,
    mask: np.ndarray,
    *,
    flipping_auc: float | None = None,
    random_flipping_auc: float | None = None,
    threshold: float = 0.5,
) -> HeatmapQuality:
    """Bundle the figures of one image-shaped heatmap and its label mask.

    The flipping AUCs need the model, so they are computed by the caller (with
    :func:`pixel_flipping_curve` at the input resolution) and only passed through.
    """
    shares = mass_by_region(heatmap, mask)
    areas = area_by_region(mask)
    return HeatmapQuality(
        entropy=heatmap_entropy(heatmap),
        shares=shares,
        areas=areas,
        looks_at_background=looks_at_background(shares, threshold, areas),
        flipping_auc=flipping_auc,
        random_flipping_auc=random_flipping_auc,
    )
