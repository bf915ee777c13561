"""Segmenting images of any size with a trained model: probabilities → cleaned label masks.

Crops are letterboxed to the model's input size and batched across images; fields (larger than
the tiling threshold, or every image of a model trained on fields) are brought to the model's
working scale, tiled and blended. Optional test-time augmentation averages the model over the
8 rotations and mirror images. Classes the model was not trained on are never predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cytoreview.data.datasets import rescale_pair
from cytoreview.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    letterbox_image,
    to_tensor_layout,
    unletterbox_probs,
)
from cytoreview.inference.decision import decide
from cytoreview.inference.postprocess import PostprocessConfig, clean_mask
from cytoreview.inference.tiling import predict_tiled
from cytoreview.inference.uncertainty import image_uncertainty
from cytoreview.inference.views import DIHEDRAL_VIEWS, check_square, dihedral_view, undo_view
from cytoreview.types import CYTOPLASM

#: A model call: (N, 3, H, W) float32 normalised → (N, C, H, W) probabilities.
BatchPredictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SegmenterSpec:
    """How a model wants its input (read from the checkpoint's config)."""

    input_size: int = 256
    tile_threshold: int = 1024
    tile_overlap: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: Fields are resized by this before tiling (see cytoreview.data.geometry).
    scale: float = 1.0
    #: Which classes the model was trained on; the others are never predicted.
    classes_present: tuple[bool, ...] = (True, True, True)
    #: Trained on windows of whole fields (not on cell crops).
    fields: bool = False
    #: Added to each class's log-probability before the arg-max (chosen on the training run's
    #: validation images, see cytoreview.inference.decision); zeros: the plain arg-max.
    offsets: tuple[float, ...] = (0.0, 0.0, 0.0)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SegmenterSpec:
        """Build from a checkpoint config (older configs lack scale and classes: 1, all)."""
        norm = config.get("normalisation", {})
        return cls(
            input_size=int(config.get("input_size", 256)),
            tile_threshold=int(config.get("tile_threshold", 1024)),
            tile_overlap=int(config.get("tile_overlap", 64)),
            mean=tuple(norm.get("mean", IMAGENET_MEAN)),
            std=tuple(norm.get("std", IMAGENET_STD)),
            scale=float(config.get("scale", 1.0)),
            classes_present=tuple(bool(p) for p in config.get("classes_present", (1, 1, 1))),
            fields=config.get("geometry") == "fields",
            offsets=tuple(float(v) for v in config.get("class_offsets", (0.0, 0.0, 0.0))),
        )

    @property
    def postprocess(self) -> PostprocessConfig:
        """The clean-up rules that fit the classes: no cytoplasm rules without cytoplasm."""
        return PostprocessConfig(require_cytoplasm=self.classes_present[CYTOPLASM])


@dataclass
class SegmentedImage:
    """One result: the cleaned mask, its uncertainty and the class probabilities."""

    mask: np.ndarray
    uncertainty: float
    probs: np.ndarray = field(repr=False)


#: The views of :func:`with_tta`: (quarter turns, mirrored) for the 8 symmetries of a square.
TTA_VIEWS = DIHEDRAL_VIEWS


def with_tta(predict: BatchPredictor) -> BatchPredictor:
    """Average ``predict`` over the 8 rotations and mirror images of its square inputs.

    A cell on a slide has no "up": a model's answer for the cell turned by 90 degrees or
    mirrored is as good as the original, and averaging the 8 views (each turned back) removes
    much of a small model's orientation noise. On the Herlev benchmark the auto masks' Dice
    went from 0.758 to 0.779 (cytoplasm) and 0.899 to 0.915 (nucleus); flips alone gave 0.773
    and 0.906. Costs 8 predictions per input. Inputs are ``(N, C, S, S)`` (letterboxed crops
    and tiles are square).
    """

    def tta(batch: np.ndarray) -> np.ndarray:
        check_square(batch)
        total: np.ndarray | None = None
        for turns, mirrored in TTA_VIEWS:
            out = np.asarray(predict(dihedral_view(batch, turns, mirrored)))
            out = undo_view(out, turns, mirrored)
            total = out.astype(np.float32) if total is None else total + out
        assert total is not None
        return np.ascontiguousarray(total / np.float32(len(TTA_VIEWS)))

    return tta


def predict_probs(
    images: Sequence[np.ndarray], predict: BatchPredictor, spec: SegmenterSpec
) -> list[np.ndarray]:
    """Class probabilities (C, H, W) at each image's own size.

    Parameters
    ----------
    images
        RGB uint8 images of any sizes; crops are batched together in one model call.
    predict
        The model (wrap it with :func:`with_tta` for test-time augmentation).
    spec
        Input size, tiling threshold and normalisation.
    """
    results: list[np.ndarray | None] = [None] * len(images)
    crops = [i for i, im in enumerate(images) if max(im.shape[:2]) <= spec.tile_threshold]
    if crops:
        boxed = [letterbox_image(images[i], spec.input_size) for i in crops]
        batch = to_tensor_layout(np.stack([b[0] for b in boxed]), spec.mean, spec.std)
        probs = predict(batch)
        for k, i in enumerate(crops):
            results[i] = unletterbox_probs(probs[k], boxed[k][1])

    for i, image in enumerate(images):
        if results[i] is None:
            results[i] = field_probs(image, predict, spec)
    return [_drop_absent(r, spec.classes_present) for r in results if r is not None]


def field_probs(image: np.ndarray, predict: BatchPredictor, spec: SegmenterSpec) -> np.ndarray:
    """Class probabilities (C, H, W) of a field: native-resolution tiles at the working scale.

    The image is brought to the model's working scale (``spec.scale``), cut into overlapping
    tiles, predicted, blended and brought back to its own size. Classes the model never saw
    are not yet dropped (see :func:`predict_probs`, which does).
    """

    def tiles(batch: np.ndarray) -> np.ndarray:
        return predict(to_tensor_layout(batch, spec.mean, spec.std))

    scaled, _ = rescale_pair(image, None, spec.scale)
    probs = predict_tiled(scaled, tiles, spec.input_size, spec.tile_overlap)
    assert probs is not None  # no cancel callback: never None
    return _resize_probs(probs, image.shape[:2])


def drop_absent_classes(probs: np.ndarray, spec: SegmenterSpec) -> np.ndarray:
    """Probabilities with the classes the model was not trained on removed (see below)."""
    return _drop_absent(probs, spec.classes_present)


def _resize_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Probabilities (C, h, w) brought back to an image's (H, W) (bilinear; identity if equal)."""
    if probs.shape[1:] == shape:
        return probs
    h, w = shape
    planes = [cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in probs]
    return np.ascontiguousarray(np.stack(planes), dtype=np.float32)


def _drop_absent(probs: np.ndarray, present: tuple[bool, ...]) -> np.ndarray:
    """Zero the classes the model never saw in training and renormalise the rest.

    Training leaves such a class out of the softmax (see the segmentation loss); doing the same
    here makes the ONNX and torch engines, which output a softmax over all channels, agree.
    """
    if all(present) or len(present) != probs.shape[0]:
        return probs
    keep = np.array(present, bool)
    out = probs.copy()
    out[~keep] = 0.0
    total = out.sum(axis=0, keepdims=True)
    # Where the dropped class had all the mass (float32 leaves nothing for the others), the
    # model says nothing about the rest: spread it evenly over the classes it knows.
    lost = total < np.float32(1e-6)
    out = np.where(lost & keep[:, None, None], np.float32(1.0 / keep.sum()), out)
    out /= np.where(lost, np.float32(1.0), total)
    return np.ascontiguousarray(out, dtype=np.float32)


def probs_to_result(
    probs: np.ndarray,
    post: PostprocessConfig | None = None,
    offsets: Sequence[float] | None = None,
) -> SegmentedImage:
    """Arg-max labels, cleaned, with the image's uncertainty (mean entropy near the cells).

    ``offsets`` (the model's, see :mod:`cytoreview.inference.decision`) shift the arg-max; the
    uncertainty is computed from the probabilities as the network gave them.
    """
    raw = decide(probs, offsets)
    mask = clean_mask(raw, post or PostprocessConfig())
    return SegmentedImage(
        mask=mask, uncertainty=image_uncertainty(probs, _near_cells(raw)), probs=probs
    )


def _near_cells(labels: np.ndarray) -> np.ndarray | None:
    """Foreground grown by a margin, so a large empty background does not dilute uncertainty."""
    fg = (labels > 0).astype(np.uint8)
    if not fg.any():
        return None
    radius = max(2, round(0.05 * max(labels.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(fg, kernel).astype(bool)


def segment_images(
    images: Sequence[np.ndarray],
    predict: BatchPredictor,
    spec: SegmenterSpec,
    post: PostprocessConfig | None = None,
) -> list[SegmentedImage]:
    """Masks and uncertainties for a batch of images (see :func:`predict_probs`).

    ``post`` defaults to the rules that fit the model's classes (:attr:`SegmenterSpec.postprocess`).
    """
    post = post or spec.postprocess
    return [probs_to_result(p, post, spec.offsets) for p in predict_probs(images, predict, spec)]
