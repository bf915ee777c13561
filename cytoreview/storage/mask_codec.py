"""Encoding of label masks as lossless PNG bytes, and their validation."""

from __future__ import annotations

import cv2
import numpy as np

from cytoreview.types import VALID_LABELS


def validate_label_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Check a label mask against its image and return it as contiguous uint8.

    Parameters
    ----------
    mask
        (H, W) integer array with values 0, 1, 2.
    shape
        (height, width) of the image it belongs to.

    Raises
    ------
    ValueError
        With a message saying what is wrong (shape, dtype or values).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height x width), got shape {mask.shape}")
    if mask.shape != tuple(shape):
        raise ValueError(
            f"mask is {mask.shape[1]} x {mask.shape[0]} (width x height) but its image is "
            f"{shape[1]} x {shape[0]}"
        )
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ValueError(f"a mask must hold integers, got {mask.dtype}")
    # The labels are 0..2: the extremes say whether all values are valid (0.01 ms at 256 px,
    # where np.unique took 0.2 ms); the values are listed only for the message.
    if mask.size and (int(mask.min()) < min(VALID_LABELS) or int(mask.max()) > max(VALID_LABELS)):
        values = sorted(int(v) for v in np.unique(mask))
        raise ValueError(f"mask values must be 0, 1 or 2 (found {values})")
    return np.ascontiguousarray(mask, dtype=np.uint8)


#: PNG settings for label masks: long runs of a few values compress best with run-length
#: deflate and no row filter (256 px synthetic cell masks: 1.1 kB in 0.11 ms, against 2.0 kB in
#: 0.38 ms with zlib's default strategy and adaptive filters; lossless either way).
_PNG_SETTINGS = {
    cv2.IMWRITE_PNG_COMPRESSION: 3,
    cv2.IMWRITE_PNG_STRATEGY: cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER: cv2.IMWRITE_PNG_FILTER_NONE,
}
_PNG_PARAMS = [value for pair in _PNG_SETTINGS.items() for value in pair]


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Lossless single-channel PNG bytes of a validated uint8 label mask."""
    ok, buffer = cv2.imencode(".png", mask, _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, validated before
        raise ValueError("could not encode the mask as PNG")
    return buffer.tobytes()


def decode_mask_png(data: bytes) -> np.ndarray | None:
    """Decode PNG bytes written by :func:`encode_mask_png`; None if they are not a valid PNG."""
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        return None
    return mask.astype(np.uint8, copy=False)
