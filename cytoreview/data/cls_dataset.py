"""Classifier inputs: an RGB crop and its label mask as one 6-channel tensor, and class balancing.

The layout, shared by training, inference and explanations (:func:`make_input` is the one
place that builds it): channels 0-2 the crop letterboxed to ``S x S`` and ImageNet-normalised,
channels 3-5 the one-hot label mask (background, cytoplasm, nucleus) letterboxed the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from cytoreview.data.transforms import (
    AugmentConfig,
    augment_pair,
    letterbox_image,
    letterbox_mask,
    to_tensor_layout,
)
from cytoreview.types import NUCLEUS

__all__ = [
    "INPUT_CHANNELS",
    "ClassificationDataset",
    "balanced_order",
    "make_input",
    "make_inputs",
    "one_hot_mask",
]

INPUT_CHANNELS = 6
_N_LABELS = NUCLEUS + 1  # background, cytoplasm, nucleus


def _check_pair(image: np.ndarray, mask: np.ndarray | None) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")


def one_hot_mask(mask: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float32 one-hot of a 0/1/2 label mask (background, cytoplasm, nucleus).

    Raises
    ------
    ValueError
        If the mask holds a value other than 0, 1 or 2.
    """
    if mask.size and int(mask.max()) >= _N_LABELS:
        raise ValueError(f"mask values must be 0, 1 or 2, found {int(mask.max())}")
    labels = mask.astype(np.intp, copy=False)
    return (labels[None] == np.arange(_N_LABELS)[:, None, None]).astype(np.float32)


def _layout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Letterboxed pair (same size) to the ``(6, S, S)`` float32 model input."""
    out = np.empty((INPUT_CHANNELS, *mask.shape), np.float32)
    out[:3] = to_tensor_layout(image)
    out[3:] = one_hot_mask(mask)
    return out


def _letterbox_pair(
    image: np.ndarray, mask: np.ndarray | None, input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    _check_pair(image, mask)
    boxed, box = letterbox_image(image, input_size)
    if mask is None:
        return boxed, np.zeros((input_size, input_size), np.uint8)
    return boxed, letterbox_mask(mask, box)


def make_input(image: np.ndarray, mask: np.ndarray | None, input_size: int) -> np.ndarray:
    """The classifier input of one crop, exactly as the model saw it in training (no augment).

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB crop, any size.
    mask
        ``(H, W)`` 0/1/2 label mask of the crop. ``None`` fills the mask channels with
        background: only meaningful for image-only models, which ignore them.
    input_size
        Side ``S`` of the square model input.

    Returns
    -------
    np.ndarray
        ``(6, S, S)`` float32: normalised RGB, then the one-hot mask.
    """
    return _layout(*_letterbox_pair(image, mask, input_size))


def make_inputs(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None, input_size: int
) -> np.ndarray:
    """:func:`make_input` for a batch: ``(N, 6, S, S)`` float32 (``masks`` None: no masks)."""
    if masks is None:
        masks = [None] * len(images)
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    out = np.empty((len(images), INPUT_CHANNELS, input_size, input_size), np.float32)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        out[i] = make_input(image, mask, input_size)
    return out


def balanced_order(
    labels: Sequence[int], rng: np.random.Generator, length: int | None = None
) -> list[int]:
    """Indices of one epoch in which every class appears equally often.

    By default every class appears as often as the largest one and every sample at least once;
    a minority class is topped up by cycling through fresh
    random permutations of its members (so copies spread evenly over the members). The whole
    order is shuffled. Augmentation makes the repeated copies differ.

    Parameters
    ----------
    labels
        Class index of every sample.
    rng
        Source of randomness (same state, same order).
    length
        None: every class is topped up to the majority's count (every sample appears). A
        number: the epoch has this many samples, each class an equal share (the remainder
        going to randomly chosen classes), so the epoch costs what an unbalanced one costs; a
        class larger than its share shows a fresh random subset each epoch.

    Returns
    -------
    list of int
        ``n_classes * majority_count`` sample indices, or ``length`` of them.
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[int(label)].append(index)
    if not by_class:
        return []
    classes = sorted(by_class)
    if length is None:
        targets = dict.fromkeys(classes, max(len(members) for members in by_class.values()))
        first = {k: list(by_class[k]) for k in classes}  # every sample at least once
    else:
        share, extra = divmod(length, len(classes))
        lucky = set(rng.permutation(len(classes))[:extra].tolist())
        targets = {k: share + (i in lucky) for i, k in enumerate(classes)}
        first = {k: [] for k in classes}
    order: list[int] = []
    for k in classes:
        members, picked = by_class[k], first[k]
        while len(picked) < targets[k]:
            fresh = [members[i] for i in rng.permutation(len(members))]
            picked.extend(fresh[: targets[k] - len(picked)])
        order.extend(picked)
    return [order[i] for i in rng.permutation(len(order))]


class ClassificationDataset(torch.utils.data.Dataset):
    """Crops, masks and class indices in memory, served as ``(6, S, S)`` tensors.

    Parameters
    ----------
    images
        ``(H, W, 3)`` uint8 RGB crops, any sizes.
    masks
        ``(H, W)`` 0/1/2 label masks, one per image.
    labels
        Class index of every image.
    input_size
        Side ``S`` of the model input.
    augment
        Augmentation for training (geometry shared by image and mask, colour on the image);
        None for validation (deterministic, equal to :func:`make_input`).
    seed
        With :meth:`set_epoch`, makes every epoch's augmentation (and order) reproducible.
    balance
        ``"majority"``: oversample minority classes up to the majority count each epoch;
        ``"epoch"``: epochs as long as the data set, every class an equal share (both by
        :func:`balanced_order`, drawn anew per epoch; ``len()`` is the epoch's length); None:
        every sample once, as it is.

    Notes
    -----
    Position ``i`` of an epoch draws its augmentation from the stream ``(seed, epoch, i)``, so
    two copies of one oversampled image in the same epoch are augmented differently.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        labels: Sequence[int],
        input_size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        balance: str | None = None,
    ) -> None:
        if not len(images) == len(masks) == len(labels):
            raise ValueError(f"{len(images)} images, {len(masks)} masks, {len(labels)} labels")
        for image, mask in zip(images, masks, strict=True):
            _check_pair(image, mask)
        self.images, self.masks = list(images), list(masks)
        self.labels = [int(label) for label in labels]
        self.input_size, self.augment, self.seed = input_size, augment, seed
        if balance not in (None, "majority", "epoch"):
            raise ValueError(f"balance must be None, 'majority' or 'epoch', got {balance!r}")
        self.balance = balance
        self.epoch = 0
        self.order: list[int] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream (and the balanced order) of an epoch."""
        self.epoch = epoch
        if self.balance is not None:
            length = len(self.labels) if self.balance == "epoch" else None
            rng = np.random.default_rng([self.seed, epoch])
            self.order = balanced_order(self.labels, rng, length)
        else:
            self.order = list(range(len(self.images)))

    def __len__(self) -> int:
        return len(self.order)

    def label_at(self, position: int) -> int:
        """Class index of the sample at ``position`` of this epoch's order."""
        return self.labels[self.order[position]]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.order[position]
        image, mask = _letterbox_pair(self.images[index], self.masks[index], self.input_size)
        if self.augment is not None:
            # Per (seed, epoch, position): reproducible whatever the batch order.
            rng = np.random.default_rng([self.seed, self.epoch, position])
            image, mask = augment_pair(image, mask, rng, self.augment)
        x = torch.from_numpy(_layout(image, mask))
        return x, torch.tensor(self.labels[index], dtype=torch.int64)
