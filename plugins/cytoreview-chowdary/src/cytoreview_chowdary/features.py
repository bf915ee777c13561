"""Hand-crafted features and the PCA of the feature-fusion classifier.

* :func:`lbp_codes` / :func:`lbp_histogram`: local binary patterns with 8 neighbours at
  radius 1, in torch, computed exactly as ``skimage.feature.local_binary_pattern(image, 8, 1)``
  (``method="default"``): neighbours on a circle, diagonal ones bilinearly interpolated,
  ``code = sum_p [g_p >= g_c] 2^p``, pixels outside the image read as 0. The histogram has 256
  bins over every pixel and sums to 1 (Chowdary et al.: "the histogram of the frequency of each
  integer from the entire image").
* :class:`SiftBagOfWords`: SIFT descriptors (OpenCV; the paper's SURF is patented and absent
  from OpenCV's free build) assigned to the nearest word of a k-means codebook fitted on the
  training images, histogram normalised to sum 1 (all zero for an image with no keypoint).
  OpenCV runs on numpy, outside autograd: a model with this group cannot be exported to ONNX.
* :class:`PcaProjection`: a fitted PCA (mean, components, one scale per group) as fixed
  buffers; :func:`fit_pca` keeps the fewest components reaching ``p`` % of the variance.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

__all__ = [
    "LBP_BINS",
    "SIFT_DIM",
    "PcaProjection",
    "SiftBagOfWords",
    "fit_codebook",
    "fit_pca",
    "grey_from_input",
    "lbp_codes",
    "lbp_histogram",
]

LBP_BINS = 256
SIFT_DIM = 128
_P, _R = 8, 1.0
# ImageNet statistics of the core's input layout (cytoreview.data.transforms).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2.cvtColor(..., COLOR_RGB2GRAY)


def grey_from_input(rgb: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` float64 grey levels 0-255 (integers) of normalised ``(N, 3, H, W)`` crops.

    The crop is un-normalised to 0-255 and rounded, as a uint8 grey image would be, so the
    hand-crafted features see the picture itself.
    """
    mean = torch.tensor(_MEAN, dtype=torch.float64, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, dtype=torch.float64, device=rgb.device).view(1, 3, 1, 1)
    weights = torch.tensor(_GREY, dtype=torch.float64, device=rgb.device).view(1, 3, 1, 1)
    pixels = (rgb.detach().double() * std + mean) * 255.0
    return (pixels * weights).sum(dim=1).round().clamp(0, 255)


def _neighbour_offsets() -> tuple[np.ndarray, np.ndarray]:
    # skimage rounds the circle's coordinates to 5 decimals; so do we, to match it bit for bit.
    angles = 2 * np.pi * np.arange(_P, dtype=np.float64) / _P
    return np.round(-_R * np.sin(angles), 5), np.round(_R * np.cos(angles), 5)


def _pixel(image: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``image[:, r, c]`` with 0 outside (``r``, ``c`` integer-valued float grids)."""
    h, w = image.shape[-2:]
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    ri = r.clamp(0, h - 1).long()
    ci = c.clamp(0, w - 1).long()
    return torch.where(inside, image[:, ri, ci], torch.zeros((), dtype=image.dtype))


def lbp_codes(grey: torch.Tensor) -> torch.Tensor:
    """LBP code (0-255) of every pixel of ``(N, H, W)`` grey images (float64 advised).

    Same arithmetic as scikit-image's ``local_binary_pattern(image, 8, 1)`` (default
    method; bilinear interpolation written in the same order), so the codes agree exactly
    on float64 input, the border included (outside pixels are 0 in both).
    """
    if grey.ndim != 3:
        raise ValueError(f"expected (N, H, W) grey images, got {tuple(grey.shape)}")
    image = grey.to(torch.float64)
    h, w = image.shape[-2:]
    rows = torch.arange(h, dtype=torch.float64, device=image.device).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64, device=image.device).view(1, w).expand(h, w)
    codes = torch.zeros(image.shape, dtype=torch.int64, device=image.device)
    for p, (dr_off, dc_off) in enumerate(zip(*_neighbour_offsets(), strict=True)):
        r, c = rows + float(dr_off), cols + float(dc_off)
        r0, c0, r1, c1 = r.floor(), c.floor(), r.ceil(), c.ceil()
        dr, dc = r - r0, c - c0
        top = (1 - dc) * _pixel(image, r0, c0) + dc * _pixel(image, r0, c1)
        bottom = (1 - dc) * _pixel(image, r1, c0) + dc * _pixel(image, r1, c1)
        value = (1 - dr) * top + dr * bottom
        codes += (value - image >= 0).long() << p
    return codes


def lbp_histogram(grey: torch.Tensor) -> torch.Tensor:
    """``(N, 256)`` float32 LBP histograms of ``(N, H, W)`` grey images, each summing to 1."""
    codes = lbp_codes(grey).flatten(1)
    counts = torch.zeros(codes.shape[0], LBP_BINS, dtype=torch.float64, device=codes.device)
    counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float64))
    return (counts / codes.shape[1]).float()


def _grid_keypoints(h: int, w: int) -> list[cv2.KeyPoint]:
    """A dense grid of SIFT keypoints, about 7 x 7 on any crop (size: two grid steps)."""
    step = max(4.0, min(h, w) / 8.0)
    ys = np.arange(step, h - step / 2, step)
    xs = np.arange(step, w - step / 2, step)
    return [cv2.KeyPoint(float(x), float(y), 2 * step) for y in ys for x in xs]


def sift_descriptors(grey: np.ndarray, keypoints: str) -> np.ndarray:
    """``(n, 128)`` float32 SIFT descriptors of one uint8 grey image (``(0, 128)`` if none).

    ``keypoints``: ``"dense"`` (a grid; small crops give the detector few or no points) or
    ``"detected"`` (SIFT's own difference-of-Gaussians detector, as the paper's SURF).
    """
    sift = cv2.SIFT_create()
    if keypoints == "dense":
        points = _grid_keypoints(*grey.shape)
        _, desc = sift.compute(grey, points) if points else (None, None)
    elif keypoints == "detected":
        _, desc = sift.detectAndCompute(grey, None)
    else:
        raise ValueError(f"unknown keypoints {keypoints!r}; valid: dense, detected")
    if desc is None:
        return np.zeros((0, SIFT_DIM), np.float32)
    return np.asarray(desc, np.float32)


def fit_codebook(descriptors: np.ndarray, words: int, seed: int) -> np.ndarray:
    """``(k, 128)`` k-means (k-means++ start) centres of training descriptors, k <= ``words``.

    Fewer distinct descriptors than ``words`` give a smaller codebook (one word per distinct
    descriptor); no descriptor at all gives one zero word.
    """
    data = np.unique(np.asarray(descriptors, np.float32), axis=0)
    if len(data) == 0:
        return np.zeros((1, SIFT_DIM), np.float32)
    k = min(words, len(data))
    if k == len(data):
        return data
    cv2.setRNGSeed(int(seed))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    _, _, centres = cv2.kmeans(data, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return np.asarray(centres, np.float32)


class SiftBagOfWords(nn.Module):
    """Bag of visual words: SIFT descriptors counted over a codebook (a buffer).

    Parameters
    ----------
    words
        Codebook size (the checkpoint records the fitted size, which may be smaller).
    keypoints
        ``"dense"`` or ``"detected"`` (see :func:`sift_descriptors`).
    """

    def __init__(self, words: int, keypoints: str) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.register_buffer("codebook", torch.zeros(words, SIFT_DIM))

    @property
    def words(self) -> int:
        """Number of visual words."""
        return int(self.codebook.shape[0])

    def descriptors(self, grey: torch.Tensor) -> list[np.ndarray]:
        """SIFT descriptors of each ``(N, H, W)`` grey image (0-255)."""
        images = grey.detach().to("cpu", torch.float64).round().clamp(0, 255).numpy()
        return [sift_descriptors(im.astype(np.uint8), self.keypoints) for im in images]

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """``(N, words)`` float32 histograms of ``(N, H, W)`` grey images (rows sum to 1 or 0)."""
        out = torch.zeros(grey.shape[0], self.words, dtype=torch.float32)
        codebook = self.codebook.detach().to("cpu", torch.float32)
        for i, desc in enumerate(self.descriptors(grey)):
            if len(desc):
                nearest = torch.cdist(torch.from_numpy(desc), codebook).argmin(dim=1)
                counts = torch.bincount(nearest, minlength=self.words).float()
                out[i] = counts / counts.sum()
        return out.to(self.codebook.device)


class PcaProjection(nn.Module):
    """``(x - mean) @ components.T * scale``: a fitted PCA as fixed buffers.

    Built unfitted it is the identity (``components`` = I, nothing reduced), so a model built
    without its fitted sizes still runs.
    """

    def __init__(self, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        if not 1 <= out_dim <= in_dim:
            raise ValueError(f"PCA output size must be in [1, {in_dim}], got {out_dim}")
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("components", torch.eye(out_dim, in_dim))
        self.register_buffer("scale", torch.ones(()))

    @property
    def out_dim(self) -> int:
        """Number of kept components."""
        return int(self.components.shape[0])

    def set_fitted(self, mean: np.ndarray, components: np.ndarray, scale: float) -> None:
        """Load a fit from :func:`fit_pca` (shapes must match this module's)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.components.copy_(torch.as_tensor(components, dtype=torch.float32))
        self.scale.fill_(float(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, out_dim)`` projection of ``(N, in_dim)`` features."""
        return (x.float() - self.mean) @ self.components.T * self.scale


def fit_pca(features: np.ndarray, percent: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """PCA of ``(N, D)`` training features keeping ``percent`` % of their variance.

    Returns
    -------
    mean, components, scale, kept
        ``(D,)`` mean; ``(k, D)`` principal axes, the fewest whose variance reaches
        ``percent`` % of the total (at least one); ``scale`` = 1 / sqrt(kept variance), so
        every group enters the MLP with unit total variance whatever its size (a 256-bin
        histogram's tiny values would otherwise be drowned by CNN activations); ``kept``, the
        fraction of the variance kept (1.0 for features without variance).
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (N, D) features with N >= 1, got {x.shape}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    variance = s**2
    total = float(variance.sum())
    if total <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)) ** 2):
        return mean, vt[:1], 1.0, 1.0
    cumulative = np.cumsum(variance) / total
    # The small tolerance: 100 % must not ask for components beyond round-off.
    k = int(np.searchsorted(cumulative, percent / 100.0 - 1e-9) + 1)
    k = max(1, min(k, int(np.count_nonzero(variance > 1e-12 * variance[0])), len(variance)))
    kept_var = float(variance[:k].sum())
    scale = 1.0 / math.sqrt(kept_var / len(x))
    return mean, vt[:k], scale, kept_var / total
