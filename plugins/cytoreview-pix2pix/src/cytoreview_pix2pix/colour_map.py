"""Label masks to Castro Cortes et al.'s colour maps and back, exactly.

The paper trains Pix2Pix to paint a colour map of a cell: the nucleus blue (0, 0, 255), the
cytoplasm red (255, 0, 0), the background white (255, 255, 255), and "both the cytoplasm and the
nucleus were joined by a black border" (0, 0, 0). CytoReview stores label masks (0 background,
1 cytoplasm, 2 nucleus), so the map must go both ways without losing a pixel.

Where the black border goes
---------------------------
A border drawn over the nucleus or the background would make the way back guess which of the two
it covered. Here the border is drawn only on **cytoplasm** pixels, those with a 4-neighbour
(up, down, left, right) that is nucleus or background: the ring of cytoplasm that joins it to
the nucleus and the outline that closes the cell. Black therefore always means cytoplasm, and
:func:`labels_from_colours` inverts :func:`colours_from_labels` exactly for every label mask,
including a cytoplasm ring one pixel wide (all black) and a nucleus that touches the background
(no border between them: no cytoplasm to draw it on). Pixels outside the image are no
neighbours: a cell cut by the image edge is not outlined along the edge.

Decoding a generated image
--------------------------
A generator paints colours near, not on, the palette. :func:`labels_from_colours` gives each pixel
the label of the nearest palette colour (Euclidean distance in RGB; ties go to the earlier colour
of :data:`PALETTE`): white is background, red and black are cytoplasm, blue is nucleus. The
paper instead thresholds each colour channel at 200; the nearest colour needs no threshold and
labels every pixel.

Everything here is pure numpy on arrays of any leading shape (a batch of masks at once).
"""

from __future__ import annotations

import numpy as np

from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

__all__ = [
    "BLACK",
    "BLUE",
    "PALETTE",
    "PALETTE_LABELS",
    "RED",
    "WHITE",
    "border_of_cytoplasm",
    "colours_from_labels",
    "labels_from_colours",
    "nearest_palette_index",
]

WHITE = (255, 255, 255)
RED = (255, 0, 0)
BLACK = (0, 0, 0)
BLUE = (0, 0, 255)

#: The four colours of the map, in this order (the generator's output channels are R, G, B).
PALETTE = np.array([WHITE, RED, BLACK, BLUE], dtype=np.uint8)
#: The label each palette colour decodes to: black (the border) is cytoplasm.
PALETTE_LABELS = np.array([BACKGROUND, CYTOPLASM, CYTOPLASM, NUCLEUS], dtype=np.uint8)


def border_of_cytoplasm(labels: np.ndarray) -> np.ndarray:
    """Cytoplasm pixels with a 4-neighbour that is not cytoplasm (nucleus or background).

    Parameters
    ----------
    labels
        ``(..., H, W)`` label masks (0, 1, 2).

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` bool: where the black border is drawn.

    Examples
    --------
    >>> ring = np.array([[0, 0, 0, 0, 0],
    ...                  [0, 1, 1, 1, 0],
    ...                  [0, 1, 2, 1, 0],
    ...                  [0, 1, 1, 1, 0],
    ...                  [0, 0, 0, 0, 0]], np.uint8)
    >>> int(border_of_cytoplasm(ring).sum())  # a 1-px ring: every cytoplasm pixel is border
    8
    """
    labels = np.asarray(labels)
    cytoplasm = labels == CYTOPLASM
    other = ~cytoplasm
    touches = np.zeros_like(cytoplasm)
    # Each shifted comparison looks at one neighbour; the image edge has none (no border).
    touches[..., 1:, :] |= other[..., :-1, :]
    touches[..., :-1, :] |= other[..., 1:, :]
    touches[..., :, 1:] |= other[..., :, :-1]
    touches[..., :, :-1] |= other[..., :, 1:]
    return cytoplasm & touches


def colours_from_labels(labels: np.ndarray) -> np.ndarray:
    """The colour map of label masks: the training target of the generator.

    Parameters
    ----------
    labels
        ``(..., H, W)`` label masks (0 background, 1 cytoplasm, 2 nucleus).

    Returns
    -------
    numpy.ndarray
        ``(..., H, W, 3)`` uint8 RGB: background white, cytoplasm red with its border black,
        nucleus blue.

    Raises
    ------
    ValueError
        If a label is not 0, 1 or 2.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < BACKGROUND or labels.max() > NUCLEUS):
        raise ValueError(f"labels must be 0, 1 or 2, found {np.unique(labels).tolist()}")
    # Palette index per pixel: the label picks white, red or blue (PALETTE order 0, 1, 3) ...
    index = np.array([0, 1, 3], np.uint8)[labels.astype(np.intp)]
    # ... and the border turns red into black.
    index[border_of_cytoplasm(labels)] = 2
    return PALETTE[index]


def nearest_palette_index(rgb: np.ndarray) -> np.ndarray:
    """Index into :data:`PALETTE` of the colour nearest to each pixel (Euclidean in RGB).

    Parameters
    ----------
    rgb
        ``(..., 3)`` colours, uint8 or float on the 0-255 scale.

    Returns
    -------
    numpy.ndarray
        ``(...)`` int64 indices; a tie goes to the earlier palette colour.
    """
    rgb = np.asarray(rgb, np.float32)
    distances = ((rgb[..., None, :] - PALETTE.astype(np.float32)) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def labels_from_colours(rgb: np.ndarray) -> np.ndarray:
    """Labels of a colour map (exact inverse of :func:`colours_from_labels`) or of a generated one.

    Parameters
    ----------
    rgb
        ``(..., H, W, 3)`` colours on the 0-255 scale.

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` uint8 labels: the label of each pixel's nearest palette colour (white 0,
        red 1, black 1, blue 2).
    """
    return PALETTE_LABELS[nearest_palette_index(rgb)]
