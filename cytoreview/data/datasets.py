"""Training samples for the segmenter: images of any size brought to the model's input size.

Two geometries, the same at training and at inference time:
- *crops* (single cells, the usual case): resize-and-pad ("letterbox") to a square input;
- *fields* (larger than ``tile_threshold`` on a side): native-resolution windows of the input
  size, random while training, a regular grid for validation (inference tiles and blends).
"""

from __future__ import annotations

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

#: Spatial sizes of U-Net inputs must be multiples of this.
SIZE_MULTIPLE = 32
#: Images with a side above this are treated as fields (tiled), not crops (letterboxed).
DEFAULT_TILE_THRESHOLD = 1024


def is_field(shape: tuple[int, ...], tile_threshold: int = DEFAULT_TILE_THRESHOLD) -> bool:
    """True when an image is large enough to be tiled at native resolution."""
    return max(shape[:2]) > tile_threshold


def choose_input_size(
    shapes: Sequence[tuple[int, ...]],
    minimum: int = 64,
    maximum: int = 256,
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
) -> int:
    """A model input size that fits the data: the median crop side, rounded up to 32.

    Upsampling a 40 px crop to 256 px adds no information but costs 40 times the compute, so
    small crops train at a small size. Fields always use ``maximum`` (their tiles).
    """
    crops = [max(s[:2]) for s in shapes if not is_field(s, tile_threshold)]
    if not crops:
        return maximum
    side = float(np.median(crops))
    size = int(np.ceil(side / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    return int(np.clip(size, minimum, maximum))


def _field_window(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window (random, or centred without rng), padded if the image is smaller."""
    h, w = mask.shape
    if h < size or w < size:
        pad = ((0, max(0, size - h)), (0, max(0, size - w)))
        image = np.pad(image, (*pad, (0, 0)), mode="reflect")
        mask = np.pad(mask, pad, mode="reflect")
        h, w = mask.shape
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
    else:
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[y : y + size, x : x + size], mask[y : y + size, x : x + size]


def prepare_pair(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    rng: np.random.Generator | None = None,
    augment: AugmentConfig | None = None,
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair at the model's input size, augmented when ``rng`` is given."""
    if is_field(mask.shape, tile_threshold):
        image, mask = _field_window(image, mask, size, rng)
    else:
        image, box = letterbox_image(image, size)
        mask = letterbox_mask(mask, box)
    if rng is not None and augment is not None:
        image, mask = augment_pair(image, mask, rng, augment)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and label masks in memory, served at the input size as normalised tensors.

    Parameters
    ----------
    images, masks
        RGB uint8 images and their 0/1/2 masks, any sizes.
    size
        Model input side.
    augment
        Augmentation for training; None for validation (deterministic samples).
    seed
        With :meth:`set_epoch`, makes every epoch's augmentation reproducible.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        tile_threshold: int = DEFAULT_TILE_THRESHOLD,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks = list(images), list(masks)
        self.size, self.augment, self.seed = size, augment, seed
        self.tile_threshold = tile_threshold
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = None
        if self.augment is not None:
            # One stream per (seed, epoch, sample): reproducible whatever the batch order.
            rng = np.random.default_rng([self.seed, self.epoch, index])
        image, mask = prepare_pair(
            self.images[index], self.masks[index], self.size, rng, self.augment,
            self.tile_threshold,
        )  # fmt: skip
        return torch.from_numpy(to_tensor_layout(image)), torch.from_numpy(mask.astype(np.int64))
