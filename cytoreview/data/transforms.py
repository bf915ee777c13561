"""Model-input geometry, normalisation and training augmentation (pure numpy/OpenCV, no files).

* Letterbox: fit a crop of any size and aspect into the square model input on a pad of slide
  background colour, and map the model's class probabilities back onto the original pixels.
* Normalisation: uint8 RGB to the float32, channel-first, ImageNet-normalised encoder input.
* Augmentation: the published protocol (rotation, zoom, shift, shear, flips, Keras'
  ``fill_mode="nearest"``) plus the colour variation between scanners and staining labs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_LUMA = np.array([0.299, 0.587, 0.114], np.float64)  # ITU-R BT.601, as cv2's RGB2GRAY


# --- Letterbox --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterboxed image: everything needed to undo it."""

    orig_shape: tuple[int, int]  # (H, W) of the original image
    size: int  # side of the square model input
    scale: float  # size / max(H, W): the resize factor of the longer side
    top: int  # offsets of the resized image inside the padded square
    left: int
    new_shape: tuple[int, int]  # (h, w) of the resized image before padding


def _letterbox_geometry(shape: tuple[int, int], size: int) -> Letterbox:
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1 or size < 1:
        raise ValueError(f"cannot letterbox an image of {h}x{w} into {size}x{size}")
    scale = size / max(h, w)
    nh = min(size, max(1, round(h * scale)))
    nw = min(size, max(1, round(w * scale)))
    return Letterbox((h, w), size, scale, (size - nh) // 2, (size - nw) // 2, (nh, nw))


def letterbox_geometry(shape: tuple[int, int], size: int) -> Letterbox:
    """The :class:`Letterbox` that :func:`letterbox_image` uses for an image of ``shape``."""
    return _letterbox_geometry(shape, size)


def _resize(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    if array.shape[:2] == shape:
        return array.copy()
    out = cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)
    return out.reshape(shape + array.shape[2:])  # cv2 drops a trailing channel axis of 1


def _border_median(image: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost rows and columns (mostly slide background)."""
    edges = [image[0], image[-1], image[:, 0], image[:, -1]]
    pixels = np.concatenate([e.reshape(-1, *image.shape[2:]) for e in edges])
    return np.median(pixels, axis=0)


def letterbox_image(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` so its longer side is ``size``, keep its aspect and pad it square.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB crop, any size (even 1 px wide).
    size
        Side of the square model input.

    Returns
    -------
    padded : np.ndarray
        ``(size, size, 3)`` image of the same dtype. Shrinking uses ``INTER_AREA`` (no
        aliasing), enlarging ``INTER_LINEAR``. The pad is the median colour of the image
        border, which looks like slide background: black bars would be a strong artificial
        edge for the network.
    box : Letterbox
        The geometry, for :func:`letterbox_mask` and :func:`unletterbox_probs`.
    """
    box = _letterbox_geometry(image.shape[:2], size)
    interp = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR
    resized = _resize(image, box.new_shape, interp)
    fill = np.round(_border_median(image)).astype(image.dtype)
    out = np.empty((size, size, *image.shape[2:]), image.dtype)
    out[...] = fill
    nh, nw = box.new_shape
    out[box.top : box.top + nh, box.left : box.left + nw] = resized
    return out, box


def letterbox_mask(mask: np.ndarray, box: Letterbox) -> np.ndarray:
    """Apply the geometry of ``box`` to a label mask (nearest neighbour, pad 0 = background)."""
    if mask.shape[:2] != box.orig_shape:
        raise ValueError(f"mask {mask.shape[:2]} does not match the letterbox {box.orig_shape}")
    # NEAREST_EXACT samples at pixel centres like the image's resize; plain INTER_NEAREST
    # samples at corners and would shift the mask by half a source pixel against the image.
    resized = _resize(mask.astype(np.uint8, copy=False), box.new_shape, cv2.INTER_NEAREST_EXACT)
    out = np.zeros((box.size, box.size), mask.dtype)
    nh, nw = box.new_shape
    out[box.top : box.top + nh, box.left : box.left + nw] = resized
    return out


def unletterbox_probs(probs: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map ``(C, size, size)`` class probabilities back to ``(C, H, W)`` of the original.

    The padding is cropped, the rest resized (bilinear) to the original shape and each pixel
    renormalised to sum 1 over the classes.
    """
    if probs.ndim != 3 or probs.shape[1:] != (box.size, box.size):
        raise ValueError(f"expected (C, {box.size}, {box.size}) probabilities, got {probs.shape}")
    nh, nw = box.new_shape
    h, w = box.orig_shape
    crop = probs[:, box.top : box.top + nh, box.left : box.left + nw]
    # Plane by plane, straight into the output: the same numbers as resizing the (H, W, C)
    # stack, 5-10x faster than that with its two transposed copies (0.1 against 1.1 ms at
    # 256 px; ``segment`` runs it on every crop).
    out = np.empty((probs.shape[0], h, w), np.float32)
    if (nh, nw) == (h, w):  # no resize: the crop is the image
        out[...] = crop
    else:
        for plane, target in zip(crop, out, strict=True):
            source = np.ascontiguousarray(plane, dtype=np.float32)
            cv2.resize(source, (w, h), dst=target, interpolation=cv2.INTER_LINEAR)
    total = out.sum(axis=0)
    np.maximum(total, np.float32(1e-12), out=total)
    out /= total
    return out


# --- Normalisation ----------------------------------------------------------------------------
def to_tensor_layout(
    images: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Turn uint8 RGB into the normalised, channel-first float32 layout of the encoders.

    Parameters
    ----------
    images
        ``(N, H, W, 3)`` or ``(H, W, 3)`` uint8 RGB.
    mean, std
        Per-channel statistics on the [0, 1] scale: ``(x / 255 - mean) / std``.

    Returns
    -------
    np.ndarray
        ``(N, 3, H, W)`` or ``(3, H, W)`` float32, C-contiguous.

    Raises
    ------
    TypeError
        If ``images`` is not uint8: a float image already in [0, 1] would be silently wrong.
    """
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) images, got {images.shape}")
    scale = 1 / (255 * np.asarray(std, np.float64))
    offset = -np.asarray(mean, np.float64) / np.asarray(std, np.float64)
    out = np.empty((*images.shape[:-3], 3, *images.shape[-3:-1]), np.float32)
    for c in range(3):  # one multiply-add per channel, written straight into its plane
        plane = out[..., c, :, :]
        np.multiply(images[..., c], np.float32(scale[c]), out=plane, casting="unsafe")
        plane += np.float32(offset[c])
    return out


# --- Augmentation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random training augmentation; every draw is uniform in its range.

    Parameters
    ----------
    rotation_deg
        Rotation within ±``rotation_deg`` degrees.
    zoom
        Isotropic scale factor in ``[1 - zoom, 1 + zoom]``. Isotropic (unlike Keras, which
        draws x and y apart) so that nuclear shape is kept; shear covers anisotropy.
    shift
        Translation within ±``shift`` times the image width (x) and height (y). 0.05, not
        the published protocol's 0.2 (Keras' ``width_shift_range``): a letterboxed crop is
        mostly cell, and a shift of a fifth of it fills the uncovered edge with streaks of
        repeated edge pixels (``BORDER_REPLICATE``), cytoplasm in the mask included, that no
        real crop has; field windows are drawn at random places anyway. Herlev, 80 seeds,
        4 seed splits (``bench_seg_quality_herlev.py --augment shift=0.2`` for the old value):
        cytoplasm Dice higher on every split (mean 0.782 against 0.769), whole cell too (0.906
        against 0.896), nucleus 0.901 against 0.905 (one split stopped early); classifier: see
        ``tests/benchmarks/README.md``.
    shear
        Shear angle within ±``shear`` **radians** (0.15 rad is about 8.6 degrees), as the
        ``shear_range`` of Keras before 2.1.3; later Keras reads degrees (keras#8868).
    hflip, vflip
        Mirror with probability 0.5 (cytology has no up or left).
    brightness, contrast, saturation
        Factors in ``[1 - x, 1 + x]``: scale, spread around the mean grey, blend with grey.
    hue_deg
        Hue rotation within ±``hue_deg`` degrees.
    stain
        Stain variation between labs: in optical density (Beer-Lambert) space each channel's
        density is scaled by ``[1 - stain, 1 + stain]`` and shifted by ±``stain``, as the
        HED jitter of Tellez et al. (2018) but per RGB channel, since Pap stains have no
        standard deconvolution vectors.
    blur_prob, blur_sigma
        Probability of a Gaussian blur (slight defocus) and the range of its sigma in px.
    """

    rotation_deg: float = 10.0
    zoom: float = 0.15
    shift: float = 0.05
    shear: float = 0.15
    hflip: bool = True
    vflip: bool = True
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue_deg: float = 6.0
    stain: float = 0.05
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blur_sigma", tuple(float(s) for s in self.blur_sigma))
        fields = dataclasses.fields(self)
        if negative := [f.name for f in fields if f.type == "float" and getattr(self, f.name) < 0]:
            raise ValueError(f"augmentation ranges must be >= 0: {', '.join(negative)}")
        for name in ("zoom", "brightness", "contrast", "saturation"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be < 1 (a factor of 1 - {name} must stay > 0)")
        if not 0 <= self.blur_prob <= 1:
            raise ValueError(f"blur_prob must be in [0, 1], got {self.blur_prob}")
        low, high = self.blur_sigma
        if not 0 < low <= high:
            raise ValueError(f"blur_sigma must be (low, high) with 0 < low <= high: {low, high}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (stored with a checkpoint's training settings)."""
        data = dataclasses.asdict(self)
        data["blur_sigma"] = list(self.blur_sigma)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises
        ------
        ValueError
            On an unknown key (a typo would otherwise silently fall back to a default).
        """
        names = sorted(f.name for f in dataclasses.fields(cls))
        if unknown := set(data) - set(names):
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}; valid: {names}")
        return cls(**data)


#: Identity augmentation (validation, tests).
NO_AUGMENT = AugmentConfig(0, 0, 0, 0, False, False, 0, 0, 0, 0, 0, 0)


def random_affine(
    shape: tuple[int, int], rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Draw a random 2x3 affine matrix about the image centre.

    Parameters
    ----------
    shape
        ``(H, W)`` of the image.
    rng
        Source of randomness (same state, same matrix).
    cfg
        Ranges: rotation, zoom, shear, flips (about the centre) and shift (a fraction of the
        width for x, of the height for y).

    Returns
    -------
    np.ndarray
        ``(2, 3)`` float64 forward matrix (source to destination, x right, y down) for
        :func:`cv2.warpAffine`. Flips map pixel ``x`` to ``W - 1 - x`` exactly.
    """
    h, w = shape
    angle = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    zoom = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)
    shear = rng.uniform(-cfg.shear, cfg.shear)
    shift = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    fx = -1.0 if cfg.hflip and rng.random() < 0.5 else 1.0
    fy = -1.0 if cfg.vflip and rng.random() < 0.5 else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    rotate = np.array([[cos, -sin], [sin, cos]])
    shear_m = np.array([[1.0, -math.sin(shear)], [0.0, math.cos(shear)]])  # Keras' form
    linear = rotate @ shear_m @ (zoom * np.diag([fx, fy]))
    centre = np.array([(w - 1) / 2, (h - 1) / 2])  # pixel centres: flips stay on the grid
    return np.hstack([linear, (centre + shift - linear @ centre)[:, None]])


def _stain_lut(rng: np.random.Generator, strength: float) -> np.ndarray:
    """``(256, 1, 3)`` uint8 lookup that rescales and shifts each channel's optical density."""
    alpha = rng.uniform(1 - strength, 1 + strength, 3)
    beta = rng.uniform(-strength, strength, 3)
    # (v + 1) / 256 keeps the density of v = 0 finite; v = 255 has density 0 (no stain).
    od = -np.log((np.arange(256, dtype=np.float64)[:, None] + 1) / 256)
    values = 256 * np.exp(-(od * alpha + beta)) - 1
    return np.clip(np.round(values), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def _hue_matrix(degrees: float) -> np.ndarray:
    """Rotation of RGB about the grey axis (the SVG ``hueRotate`` matrix): keeps greys grey."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    base = np.array([[0.213, 0.715, 0.072]] * 3)
    cos_m = np.array([[0.787, -0.715, -0.072], [-0.213, 0.285, -0.072], [-0.213, -0.715, 0.928]])
    sin_m = np.array([[-0.213, -0.715, 0.928], [0.143, 0.140, -0.283], [-0.787, 0.715, 0.072]])
    return base + c * cos_m + s * sin_m


def colour_jitter(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random stain, brightness, contrast, saturation and hue change of an RGB image.

    Every step is a per-pixel colour map, so the geometry is untouched. The stain change (the
    slide) comes first, then the camera's: one 3x4 colour matrix applied by
    :func:`cv2.transform`, which saturates at 0 and 255 like a sensor.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB.
    rng
        Source of randomness.
    cfg
        Ranges ``stain``, ``brightness``, ``contrast``, ``saturation`` and ``hue_deg``.

    Returns
    -------
    np.ndarray
        A new ``(H, W, 3)`` uint8 image.
    """
    out = cv2.LUT(image, _stain_lut(rng, cfg.stain)) if cfg.stain > 0 else image.copy()
    b = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    s = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    hue = rng.uniform(-cfg.hue_deg, cfg.hue_deg)
    if b == c == s == 1 and hue == 0:
        return out
    saturate = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), _LUMA)  # blend with the grey
    grey = float(np.dot(cv2.mean(out)[:3], _LUMA))
    matrix = np.empty((3, 4))
    matrix[:, :3] = b * c * _hue_matrix(hue) @ saturate
    matrix[:, 3] = b * (1 - c) * grey  # contrast spreads around the mean grey
    return cv2.transform(out, matrix)


def _warp(array: np.ndarray, matrix: np.ndarray, interpolation: int) -> np.ndarray:
    size = (array.shape[1], array.shape[0])
    return cv2.warpAffine(array, matrix, size, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def augment_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Augment an image and its label mask with the same random geometry.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB.
    mask
        ``(H, W)`` label image.
    rng
        Source of randomness: the same state gives the same result.
    cfg
        The ranges; :data:`NO_AUGMENT` returns copies of the inputs.

    Returns
    -------
    image, mask : np.ndarray
        Same shapes and dtypes. The image is warped bilinearly, the mask by nearest neighbour
        (labels stay labels); both fill with the nearest edge pixel (``BORDER_REPLICATE``, as
        Keras' ``fill_mode="nearest"``), so they stay consistent outside the original frame.
        Then, on the image only: :func:`colour_jitter` and, with ``blur_prob``, a Gaussian blur.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
        raise ValueError(f"expected (H, W, 3) image, (H, W) mask: got {image.shape}, {mask.shape}")
    matrix = random_affine(mask.shape, rng, cfg)
    if np.array_equal(matrix, [[1, 0, 0], [0, 1, 0]]):
        out_image, out_mask = image.copy(), mask.copy()
    else:
        out_image = _warp(image, matrix, cv2.INTER_LINEAR)
        out_mask = _warp(mask.astype(np.uint8, copy=False), matrix, cv2.INTER_NEAREST)
        out_mask = out_mask.astype(mask.dtype, copy=False)
    out_image = colour_jitter(out_image, rng, cfg)
    if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        out_image = cv2.GaussianBlur(out_image, (0, 0), rng.uniform(*cfg.blur_sigma))
    return out_image, out_mask
