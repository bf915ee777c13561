"""Drawing masks over images and tiling images into overview sheets (pure numpy/OpenCV)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cytoreview.types import CYTOPLASM, NUCLEUS

#: Display colours (RGB) of the labels: the same in overlays, exports and the GUI palette.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    CYTOPLASM: (0, 200, 90),  # green
    NUCLEUS: (220, 40, 200),  # magenta: stands out against the blue-purple Pap nucleus stain
}


def overlay_mask(
    rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.35, outline: bool = True
) -> np.ndarray:
    """Blend label colours over an RGB image and outline each region.

    Parameters
    ----------
    rgb
        (H, W, 3) uint8 image.
    mask
        (H, W) label image (0 background, 1 cytoplasm, 2 nucleus).
    alpha
        Opacity of the fill; outlines are drawn opaque so borders stay visible.
    outline
        Draw the region borders.
    """
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} differ in size")
    out = rgb.astype(np.float32)
    for label, colour in LABEL_COLOURS.items():
        region = mask == label
        out[region] = (1 - alpha) * out[region] + alpha * np.asarray(colour, np.float32)
    out = out.astype(np.uint8)
    if outline:
        for label, colour in LABEL_COLOURS.items():
            region = (mask >= label).astype(np.uint8)
            contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, colour, 1)
    return out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Scale to fit a size x size tile (nearest for small crops keeps pixels honest), pad white."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp
    )
    tile = np.full((size, size, 3), 255, np.uint8)
    y0 = (size - resized.shape[0]) // 2
    x0 = (size - resized.shape[1]) // 2
    tile[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    return tile


def contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    columns: int = 6,
    tile: int = 160,
) -> np.ndarray:
    """Tile RGB images with a caption under each into one sheet (white background)."""
    if len(images) != len(captions):
        raise ValueError("one caption per image is needed")
    if not images:
        return np.full((tile, tile, 3), 255, np.uint8)
    caption_h = 18
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (tile + caption_h) + 4, columns * tile + 4, 3), 255, np.uint8)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(index, columns)
        y, x = 2 + r * (tile + caption_h), 2 + c * tile
        sheet[y : y + tile, x : x + tile] = _pad(_fit(image, tile - 4), tile)
        cv2.putText(sheet, caption[:26], (x + 3, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (30, 30, 30), 1, cv2.LINE_AA)  # fmt: skip
    return sheet


def _pad(image: np.ndarray, size: int) -> np.ndarray:
    out = np.full((size, size, 3), 255, np.uint8)
    off = (size - image.shape[0]) // 2
    out[off : off + image.shape[0], off : off + image.shape[1]] = image
    return out
