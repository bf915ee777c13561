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
    values = {int(v) for v in np.unique(mask)}
    if not values <= VALID_LABELS:
        raise ValueError(f"mask values must be 0, 1 or 2 (found {sorted(values)})")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Lossless single-channel PNG bytes of a validated uint8 label mask."""
    ok, buffer = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, validated before
        raise ValueError("could not encode the mask as PNG")
    return buffer.tobytes()


def decode_mask_png(data: bytes) -> np.ndarray | None:
    """Decode PNG bytes written by :func:`encode_mask_png`; None if they are not a valid PNG."""
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        return None
    return mask.astype(np.uint8, copy=False)
