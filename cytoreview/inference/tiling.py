"""Sliding-window prediction of images larger than the model input.

A whole field (thousands of pixels) does not fit the network at once, and shrinking it would
lose the nuclear detail the masks depend on. The image is cut into overlapping square tiles at
full resolution, predicted in batches, and the tile probabilities are blended with a window
that fades towards each tile's border: a network sees least context at the edges of its input,
so those pixels are the least trusted, and the smooth weights leave no seams.

Pure compute: the model is any callable on a batch of uint8 tiles. No files, no GUI.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Smallest blending weight: every pixel of a tile counts a little, so that the image's own
#: border pixels (covered by tile edges only) still get a well-defined average.
WINDOW_FLOOR = 1e-3


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)`` with at least ``overlap`` px overlap.

    Parameters
    ----------
    length
        Image extent along one axis (>= 1).
    tile
        Tile side (>= 1).
    overlap
        Minimum overlap of neighbouring tiles, ``0 <= overlap < tile``.

    Returns
    -------
    list[int]
        Increasing offsets: the first is 0 and the last is ``length - tile`` (flush with the
        end). The tiles in between are spread evenly, so no seam gets a much larger overlap
        than the others. ``[0]`` when ``length <= tile`` (the caller pads the image).
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile=}, {overlap=}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(v) for v in np.linspace(0, length - tile, count)]


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """Blending weights of one tile: 1 in the middle, a raised cosine over the outer ``overlap``.

    Parameters
    ----------
    tile
        Tile side.
    overlap
        Width of the ramp at each edge (0 gives uniform weights).

    Returns
    -------
    np.ndarray
        ``(tile, tile)`` float32, separable (outer product of one ramp with itself), symmetric,
        at least :data:`WINDOW_FLOOR` everywhere.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"need tile >= 1 and overlap >= 0, got {tile=}, {overlap=}")
    ramp = np.ones(tile, np.float64)
    if overlap > 0:
        edge = np.minimum(np.arange(tile), np.arange(tile)[::-1])  # distance to the nearer edge
        inside = edge < overlap
        ramp[inside] = 0.5 - 0.5 * np.cos(np.pi * (edge[inside] + 0.5) / overlap)
    return np.maximum(np.outer(ramp, ramp), WINDOW_FLOOR).astype(np.float32)


def predict_tiled(
    image: np.ndarray,
    predict_batch: Callable[[np.ndarray], np.ndarray],
    tile: int,
    overlap: int = 64,
    batch_size: int = 8,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """Predict class probabilities of an image of any size with overlapping tiles.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB, any size. A side shorter than ``tile`` is padded by
        reflection (on both sides, so the content sits in the middle of the tile) and the
        result cropped back.
    predict_batch
        Maps ``(N, tile, tile, 3)`` uint8 tiles to ``(N, C, tile, tile)`` float probabilities,
        ``N <= batch_size``. Normalisation is the callable's business (e.g.
        :func:`cytoreview.data.transforms.to_tensor_layout` before a predictor).
    tile
        Side of the square model input.
    overlap
        Minimum overlap of neighbouring tiles in px, also the width of the blending ramp.
    batch_size
        Tiles per call of ``predict_batch``.
    cancel
        Polled before each batch; when it returns True the job stops.

    Returns
    -------
    np.ndarray or None
        ``(C, H, W)`` float32 probabilities summing to 1 over ``C``: at each pixel the
        window-weighted mean of the tiles covering it. ``None`` when cancelled: a stop asked
        by the user is not an error, so no exception is raised.

    Raises
    ------
    ValueError
        On a bad image shape or when ``predict_batch`` returns the wrong shape.
    """
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    h, w = image.shape[:2]
    pad_y, pad_x = max(0, tile - h), max(0, tile - w)
    top, left = pad_y // 2, pad_x // 2
    if pad_y or pad_x:
        pads = ((top, pad_y - top), (left, pad_x - left), (0, 0))
        image = np.pad(image, pads, mode="reflect")
    ph, pw = image.shape[:2]
    origins = [
        (y, x) for y in tile_origins(ph, tile, overlap) for x in tile_origins(pw, tile, overlap)
    ]
    window = blend_window(tile, overlap)
    acc: np.ndarray | None = None
    for start in range(0, len(origins), batch_size):
        if cancel is not None and cancel():
            return None
        chunk = origins[start : start + batch_size]
        batch = np.stack([image[y : y + tile, x : x + tile] for y, x in chunk])
        probs = np.asarray(predict_batch(batch), dtype=np.float32)
        if acc is None and probs.ndim == 4:
            acc = np.zeros((probs.shape[1], ph, pw), np.float32)
            weighted = np.empty((probs.shape[1], tile, tile), np.float32)
        if acc is None or probs.shape != (len(chunk), acc.shape[0], tile, tile):
            expected = f"({len(chunk)}, C, {tile}, {tile})"
            raise ValueError(f"predict_batch returned {probs.shape}, expected {expected}")
        for (y, x), p in zip(chunk, probs, strict=True):
            np.multiply(p, window, out=weighted)  # a reused buffer: no temporary per tile
            acc[:, y : y + tile, x : x + tile] += weighted
    assert acc is not None  # at least one tile always exists
    out = acc[:, top : top + h, left : left + w]
    # Dividing by the summed class mass is dividing by the summed window weights (each tile's
    # probabilities sum to 1), so no separate weight image is needed; it also renormalises.
    out /= np.maximum(out.sum(axis=0, keepdims=True), np.float32(1e-12))
    return np.ascontiguousarray(out)
