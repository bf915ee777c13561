"""Training samples for the segmenter: images of any size brought to the model's input size.

Two geometries, the same at training and at inference time:
- *crops* (single cells, the usual case): resize-and-pad ("letterbox") to a square input;
- *fields* (larger than ``tile_threshold`` on a side, or every image of a fields project, see
  :mod:`cytoreview.data.geometry`): windows of the input size at the working scale, random
  while training, a grid for validation (inference tiles and blends).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from cytoreview.data.geometry import DEFAULT_TILE_THRESHOLD
from cytoreview.data.transforms import (
    AugmentConfig,
    augment_pair,
    colour_jitter,
    letterbox_image,
    letterbox_mask,
    to_tensor_layout,
)

#: Spatial sizes of U-Net inputs must be multiples of this.
SIZE_MULTIPLE = 32


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


def rescale_pair(
    image: np.ndarray, mask: np.ndarray | None, scale: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an image (area averaging) and its mask (nearest) by ``scale`` (1: unchanged)."""
    if scale == 1.0:
        return image, mask
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


def windows_per_field(shape: tuple[int, ...], size: int) -> int:
    """Training windows drawn from a field per epoch: about its area in windows (at least 1).

    A large field is then seen as often per pixel as a small one.
    """
    return max(1, round(shape[0] * shape[1] / (size * size)))


def grid_origins(shape: tuple[int, ...], size: int) -> list[tuple[int, int]]:
    """Top-left corners of windows covering a field, the last ones flush with its far edges."""
    h, w = shape[:2]
    ys = list(range(0, max(1, h - size + 1), size))
    xs = list(range(0, max(1, w - size + 1), size))
    if h > size and ys[-1] + size < h:
        ys.append(h - size)
    if w > size and xs[-1] + size < w:
        xs.append(w - size)
    return [(y, x) for y in ys for x in xs]


def _pad_to(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    if h >= size and w >= size:
        return image, mask
    pad = ((0, max(0, size - h)), (0, max(0, size - w)))
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(image, (*pad, (0, 0)), mode=mode), np.pad(mask, pad, mode=mode)


def _field_window(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    rng: np.random.Generator | None,
    origin: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window: random (``rng``), at ``origin``, or centred; padded if needed."""
    image, mask = _pad_to(image, mask, size)
    h, w = mask.shape
    if origin is not None:
        y, x = origin
    elif rng is None:
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
    origin: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair at the model's input size, augmented when ``rng`` is given.

    Fields (see :func:`is_field`; already at the working scale) give a window: random with
    ``rng``, at ``origin`` when given, else the centre one; crops are letterboxed.
    """
    if is_field(mask.shape, tile_threshold):
        image, mask = _field_window(image, mask, size, rng, origin)
    else:
        image, box = letterbox_image(image, size)
        mask = letterbox_mask(mask, box)
    if rng is not None and augment is not None:
        image, mask = augment_pair(image, mask, rng, augment)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and label masks in memory, served at the input size as normalised tensors.

    A crop is one sample. A field (at the working ``scale``) is several: while training,
    :func:`windows_per_field` random windows per epoch; for validation, the windows of a grid
    covering it, so that every part of a painted field is scored.

    Samples are addressed by ``index`` or by ``(epoch, index)``: the epoch travels with the
    index, so that DataLoader worker processes (which hold their own copy of the dataset) draw
    the same augmentation as the main process would.

    Parameters
    ----------
    images, masks
        RGB uint8 images and their 0/1/2 masks, any sizes (native resolution).
    size
        Model input side.
    augment
        Augmentation for training; None for validation (deterministic samples).
    seed
        With the epoch, makes every epoch's augmentation reproducible.
    tile_threshold
        Images with a side above this are fields (0: every image).
    scale
        Fields are resized by this factor first (the geometry's working scale).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        tile_threshold: int = DEFAULT_TILE_THRESHOLD,
        scale: float = 1.0,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.size, self.augment, self.seed = size, augment, seed
        self.tile_threshold = tile_threshold
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        #: (image index, window origin or None) of each sample.
        self.samples: list[tuple[int, tuple[int, int] | None]] = []
        for image, mask in zip(images, masks, strict=True):
            field = is_field(mask.shape, tile_threshold)
            if field:
                image, scaled = rescale_pair(image, mask, scale)
                assert scaled is not None
                mask = scaled
            k = len(self.images)
            self.images.append(image)
            self.masks.append(mask)
            if not field:
                self.samples.append((k, None))
            elif augment is not None:
                self.samples += [(k, None)] * windows_per_field(mask.shape, size)
            else:
                self.samples += [(k, o) for o in grid_origins(_padded(mask.shape, size), size)]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (for plain integer indices)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        k, origin = self.samples[index]
        rng = None
        if self.augment is not None:
            # One stream per (seed, epoch, sample): reproducible whatever the batch order.
            rng = np.random.default_rng([self.seed, epoch, index])
        image, mask = prepare_pair(
            self.images[k], self.masks[k], self.size, rng, self.augment, self.tile_threshold,
            origin,
        )  # fmt: skip
        return torch.from_numpy(to_tensor_layout(image)), torch.from_numpy(mask.astype(np.int64))


def _padded(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """A field's shape once padded to at least one window."""
    return max(shape[0], size), max(shape[1], size)


#: Geometry only: the weak view of an unlabelled image (what the teacher labels).
WEAK_VIEW = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue_deg=0.0, stain=0.0,
                          blur_prob=0.0)  # fmt: skip
#: The strong view's extra colour and focus changes (what the student must still get right).
STRONG_VIEW = AugmentConfig(brightness=0.35, contrast=0.35, saturation=0.35, hue_deg=15.0,
                            stain=0.12, blur_prob=0.5, blur_sigma=(0.5, 1.8))  # fmt: skip


class UnlabelledViews(torch.utils.data.Dataset):
    """Images without a person's mask, served as (weak, strong) views of the same geometry.

    For semi-supervised training (FixMatch-style consistency): a teacher labels the weak view,
    the student learns those labels from the strong view. Both views share one random warp, so
    their pixels correspond; only colour, stain and focus differ. Keys are ``(epoch, index)``
    as for :class:`SegmentationDataset`, and the geometry (crops letterboxed, fields windowed
    at the working scale) is the same.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        size: int,
        seed: int = 0,
        tile_threshold: int = DEFAULT_TILE_THRESHOLD,
        scale: float = 1.0,
    ) -> None:
        blank = [np.zeros(im.shape[:2], np.uint8) for im in images]
        self._base = SegmentationDataset(images, blank, size, WEAK_VIEW, seed, tile_threshold,
                                         scale)  # fmt: skip
        self.seed = seed

    def __len__(self) -> int:
        return len(self._base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        k, origin = self._base.samples[index]
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        blank = self._base.masks[k]
        weak, _ = prepare_pair(self._base.images[k], blank, self._base.size, rng, WEAK_VIEW,
                               self._base.tile_threshold, origin)  # fmt: skip
        strong = colour_jitter(weak, rng, STRONG_VIEW)
        if rng.random() < STRONG_VIEW.blur_prob:
            strong = cv2.GaussianBlur(strong, (0, 0), rng.uniform(*STRONG_VIEW.blur_sigma))
        return (
            torch.from_numpy(to_tensor_layout(np.ascontiguousarray(weak))),
            torch.from_numpy(to_tensor_layout(np.ascontiguousarray(strong))),
        )
