"""Per-cell measurements of a label mask: areas, N:C ratio, nucleus shape and intensity.

Conventions
-----------
- **Cells.** A cell is a connected component of the foreground (labels 1 and 2, 8-connectivity).
  A component holding k >= 2 nuclei (connected components of label 2, 8-connectivity) is split
  into k cells by a watershed on the negated distance transform of the component, seeded with
  the nuclei: the cut falls on the narrowest part (the "neck") between touching cells. A
  binucleated cell is therefore counted as two cells; pass ``split_touching=False`` to keep one
  cell per component (then ``nucleus_count`` may exceed 1). A component without nucleus is a
  cell with ``nucleus_count == 0``; a nucleus touching no cytoplasm is a cell with
  ``cytoplasm_area_px == 0`` ("bare nucleus").
- **N:C ratio** is nucleus area / cytoplasm area, as in the cytology literature (cytoplasm
  pixels only, the nucleus excluded). It is ``nan`` (``None`` in dictionaries) for a bare
  nucleus, whose N:C is infinite. ``nucleus_fraction`` = nucleus area / cell area is always
  defined and in [0, 1] (1.0 for a bare nucleus).
- **Perimeter** is the Crofton estimate, 4 directions (:func:`skimage.measure.perimeter_crofton`).
  On digital discs of radius 8-30 px it is 0.5-4 % below 2πr, a circularity of 0.99-1.06
  before clipping to 1, and it stays unbiased on large discs (1.001 at r = 80 px), where the
  contour length of :func:`skimage.measure.perimeter` (regionprops ``perimeter``) gives
  1.01 at r = 8 falling to 0.93 at r = 30 and 0.91 at r = 80.
  Shapes of a few pixels have no meaningful perimeter (a 1-pixel nucleus measures 2.68 px).
- **A cell with several nuclei** (only with ``split_touching=False``): perimeter, circularity
  and eccentricity are those of its largest nucleus; area and intensity cover all its nuclei.
- **Intensity** is the mean grey level of the nucleus pixels, grey = 0.299 R + 0.587 G + 0.114 B
  (ITU-R BT.601 luma, as OpenCV's RGB-to-grey), 0-255: lower is darker (hyperchromasia).
- **Main cell** of an image is the cell with the largest nucleus (ties: the larger cell, then
  the first in raster order). Nuclear enlargement is the first criterion of the Bethesda
  squamous categories and the nucleus area is robust to a cytoplasm cut by the image border or
  poorly segmented, whereas the largest N:C tends to pick bare nuclei and cut-off fragments.
  The worst N:C is exposed separately as ``max_nc_ratio`` (over cells with cytoplasm).
- Undefined values are ``nan`` in the dataclasses and ``None`` in ``to_dict`` / ``row``; µm
  values are ``None`` when no pixel size is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import perimeter_crofton, regionprops
from skimage.segmentation import watershed

from cytoreview.defaults import check_pixel_size
from cytoreview.types import CYTOPLASM, NUCLEUS

_EIGHT = np.ones((3, 3), dtype=bool)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class CellMeasurements:
    """Measurements of one cell (see the module conventions; ``nan`` = undefined).

    Attributes
    ----------
    label
        Value of the cell in :func:`label_cells` (1-based, raster order of first pixel).
    nucleus_count
        Nuclei of the cell (0 or 1 when touching cells are split).
    nucleus_area_px, cytoplasm_area_px, cell_area_px
        Pixel counts; cytoplasm excludes the nucleus, cell = nucleus + cytoplasm.
    nc_ratio, nucleus_fraction
        Nucleus area / cytoplasm area (``nan`` without cytoplasm); nucleus area / cell area.
    nucleus_perimeter_px, nucleus_circularity
        Crofton perimeter P of the (largest) nucleus; 4πA/P² clipped to [0, 1], 1 for a disc.
    nucleus_eccentricity
        Of the ellipse with the nucleus's second moments: 0 for a disc, sqrt(1 - b²/a²) for an
        ellipse of semi-axes a >= b.
    nucleus_mean_intensity
        Mean grey level (0-255) of the nucleus pixels; ``nan`` without image or nucleus.
    nucleus_area_um2, cytoplasm_area_um2, cell_area_um2, nucleus_perimeter_um
        The same in µm² / µm; ``None`` when the pixel size is unknown.
    centroid, bbox
        (row, col) of the cell's pixels; (min_row, min_col, max_row, max_col), max exclusive.
    touches_border
        True when the cell touches the image border (its areas may be truncated).
    """

    label: int
    nucleus_count: int
    nucleus_area_px: int
    cytoplasm_area_px: int
    cell_area_px: int
    nc_ratio: float
    nucleus_fraction: float
    nucleus_perimeter_px: float
    nucleus_circularity: float
    nucleus_eccentricity: float
    nucleus_mean_intensity: float
    nucleus_area_um2: float | None
    cytoplasm_area_um2: float | None
    cell_area_um2: float | None
    nucleus_perimeter_um: float | None
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    touches_border: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: tuples become lists, ``nan`` becomes ``None``."""
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    """Python scalars for JSON: ``nan``/``inf`` become ``None``, tuples become lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


#: Columns of :meth:`ImageMeasurements.row`, in CSV order. Unprefixed nucleus/cytoplasm/cell
#: values are those of the main cell; ``total_*`` sum over all cells.
_COLUMNS: tuple[str, ...] = (
    "cell_count", "nucleus_count",
    "nucleus_area_px", "nucleus_area_um2", "cytoplasm_area_px", "cytoplasm_area_um2",
    "cell_area_px", "cell_area_um2", "nc_ratio", "nucleus_fraction",
    "nucleus_perimeter_px", "nucleus_perimeter_um", "nucleus_circularity",
    "nucleus_eccentricity", "nucleus_mean_intensity", "max_nc_ratio",
    "total_nucleus_area_px", "total_nucleus_area_um2", "total_cytoplasm_area_px",
    "total_cytoplasm_area_um2", "total_cell_area_px", "total_cell_area_um2", "pixel_size_um",
)  # fmt: skip
_MAIN_FIELDS = _COLUMNS[2:15]


def morphometry_columns() -> list[str]:
    """Ordered column names of :meth:`ImageMeasurements.row` (snake_case, units in the name).

    The unprefixed ``nucleus_*``, ``cytoplasm_*``, ``cell_*``, ``nc_ratio`` and
    ``nucleus_fraction`` columns describe the image's main cell (largest nucleus);
    ``max_nc_ratio`` is the worst N:C over all cells; ``total_*`` sum over all cells.
    """
    return list(_COLUMNS)


@dataclass(frozen=True)
class ImageMeasurements:
    """Measurements of all cells of one image and their summary.

    Attributes
    ----------
    cells
        One entry per cell, in raster order of their first pixel.
    pixel_size_um
        Micrometres per pixel, or None when unknown.
    main_cell_index
        Index in ``cells`` of the main cell (largest nucleus), None without cells.
    """

    cells: list[CellMeasurements]
    pixel_size_um: float | None
    main_cell_index: int | None

    @property
    def main(self) -> CellMeasurements | None:
        """The main cell (largest nucleus), None when the image has no cell."""
        return None if self.main_cell_index is None else self.cells[self.main_cell_index]

    @property
    def max_nc_cell_index(self) -> int | None:
        """Index of the cell with the largest defined N:C ratio, None when there is none."""
        defined = [(c.nc_ratio, -i) for i, c in enumerate(self.cells) if not math.isnan(c.nc_ratio)]
        return -max(defined)[1] if defined else None

    @property
    def max_nc_ratio(self) -> float | None:
        """Largest N:C ratio over cells with cytoplasm (bare nuclei skipped), or None."""
        index = self.max_nc_cell_index
        return None if index is None else self.cells[index].nc_ratio

    def row(self) -> dict[str, float | int | None]:
        """One flat CSV row with exactly the keys of :func:`morphometry_columns`.

        An image without cells has counts and totals 0 and every other value None.
        """
        s, cells, main = self.pixel_size_um, self.cells, self.main
        out = {key: None if main is None else getattr(main, key) for key in _MAIN_FIELDS}
        out.update(cell_count=len(cells), max_nc_ratio=self.max_nc_ratio, pixel_size_um=s)
        out["nucleus_count"] = sum(c.nucleus_count for c in cells)
        for name in ("nucleus_area", "cytoplasm_area", "cell_area"):
            px = sum(getattr(c, f"{name}_px") for c in cells)
            out[f"total_{name}_px"] = px
            out[f"total_{name}_um2"] = None if s is None else px * s * s
        return {key: _plain(out[key]) for key in _COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the summary row, the main cell index and every cell."""
        return {
            "summary": self.row(),
            "main_cell_index": self.main_cell_index,
            "max_nc_cell_index": self.max_nc_cell_index,
            "cells": [c.to_dict() for c in self.cells],
        }


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a label mask must be 2-D, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"a label mask must be of integer type, got dtype {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > NUCLEUS):
        raise ValueError(f"label mask values must be 0, 1 or 2, got {mask.min()}..{mask.max()}")
    return mask


def label_cells(mask: np.ndarray, split_touching: bool = True) -> np.ndarray:
    """Label image of the cells of a mask (see the module conventions).

    Parameters
    ----------
    mask
        (H, W) integer label mask: 0 background, 1 cytoplasm, 2 nucleus.
    split_touching
        Split a component holding k >= 2 nuclei into k cells by a nucleus-seeded watershed.

    Returns
    -------
    numpy.ndarray
        (H, W) int32 array: 0 background, cells numbered 1..n in raster order of first pixel.

    Raises
    ------
    ValueError
        If the mask is not 2-D, not of integer type or has values other than 0, 1, 2.
    """
    mask = _check_mask(mask)
    cells, n_cells = ndi.label(mask > 0, structure=_EIGHT)
    if n_cells == 0 or not split_touching:
        return cells.astype(np.int32)
    nuclei, n_nuclei = ndi.label(mask == NUCLEUS, structure=_EIGHT)
    # Every pixel of a nucleus lies in the same foreground component.
    nucleus_cell = np.zeros(n_nuclei + 1, dtype=np.int64)
    nucleus_cell[nuclei.ravel()] = cells.ravel()
    per_cell = np.bincount(nucleus_cell[1:], minlength=n_cells + 1)
    crowded = per_cell >= 2  # per_cell[0] is 0: nucleus pixels are foreground
    if not crowded.any():
        return cells.astype(np.int32)
    region = crowded[cells]
    # -EDT: each nucleus floods its own cell first; the cut falls where the union is thinnest.
    elevation = -ndi.distance_transform_edt(region)
    split = watershed(elevation, np.where(region, nuclei, 0), mask=region, connectivity=2)
    merged = np.where(region, split + n_cells, cells)  # distinct ids: watershed ids are shifted
    # Renumber 1..n in raster order of first pixel, as ndi.label does.
    ids, first = np.unique(merged.ravel(), return_index=True)
    order = ids[np.argsort(first)]
    order = order[order != 0]
    lut = np.zeros(int(merged.max()) + 1, dtype=np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return lut[merged]


def _grey(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    image = np.asarray(image)
    if image.shape[:2] != shape or image.shape[2:] not in ((), (3,)):
        raise ValueError(f"image must be {shape} or {(*shape, 3)}, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    return image.astype(np.float64) if image.ndim == 2 else image.astype(np.float64) @ _LUMA


def _nucleus_shape(nucleus: np.ndarray) -> tuple[int, float, float, float]:
    """(count, perimeter, circularity, eccentricity) of the largest nucleus of a cell crop."""
    parts, count = ndi.label(nucleus, structure=_EIGHT)
    if count == 0:
        return 0, math.nan, math.nan, math.nan
    largest = parts == (np.argmax(np.bincount(parts.ravel())[1:]) + 1)
    perimeter = float(perimeter_crofton(largest, directions=4))
    area = int(largest.sum())
    circularity = min(1.0, 4.0 * math.pi * area / perimeter**2) if perimeter > 0 else math.nan
    eccentricity = float(regionprops(largest.astype(np.uint8))[0].eccentricity)
    return count, perimeter, circularity, eccentricity


def measure_image(
    mask: np.ndarray,
    image: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    split_touching: bool = True,
) -> ImageMeasurements:
    """Measure every cell of a label mask.

    Parameters
    ----------
    mask
        (H, W) integer label mask: 0 background, 1 cytoplasm, 2 nucleus.
    image
        Optional (H, W, 3) RGB (or (H, W) grey) uint8 image for the nucleus intensity.
    pixel_size_um
        Micrometres per pixel (square pixels), or None for pixel units only.
    split_touching
        Split a component with several nuclei into one cell per nucleus (see the module notes).

    Returns
    -------
    ImageMeasurements
        The cells and the image summary; no cell for an empty mask.

    Raises
    ------
    ValueError
        On a malformed mask or image, or a pixel size outside
        :data:`~cytoreview.defaults.PIXEL_SIZE_UM_RANGE`.
    """
    mask = _check_mask(mask)
    if pixel_size_um is not None:
        pixel_size_um = check_pixel_size(pixel_size_um)
    grey = None if image is None else _grey(image, mask.shape)
    s = pixel_size_um
    height, width = mask.shape
    cells_img = label_cells(mask, split_touching)
    cells: list[CellMeasurements] = []
    for index, box in enumerate(ndi.find_objects(cells_img)):
        if box is None:
            continue
        inside = cells_img[box] == index + 1
        nucleus = inside & (mask[box] == NUCLEUS)
        n_area = int(nucleus.sum())
        c_area = int((inside & (mask[box] == CYTOPLASM)).sum())
        cell_area = n_area + c_area
        areas = {"nucleus": n_area, "cytoplasm": c_area, "cell": cell_area}
        um2 = {f"{k}_area_um2": None if s is None else v * s * s for k, v in areas.items()}
        count, perimeter, circularity, eccentricity = _nucleus_shape(nucleus)
        intensity = float(grey[box][nucleus].mean()) if grey is not None and n_area else math.nan
        rows, cols = np.nonzero(inside)
        r0, c0, r1, c1 = box[0].start, box[1].start, box[0].stop, box[1].stop
        cells.append(
            CellMeasurements(
                label=index + 1,
                nucleus_count=count,
                nucleus_area_px=n_area,
                cytoplasm_area_px=c_area,
                cell_area_px=cell_area,
                nc_ratio=n_area / c_area if c_area else math.nan,
                nucleus_fraction=n_area / cell_area,
                nucleus_perimeter_px=perimeter,
                nucleus_circularity=circularity,
                nucleus_eccentricity=eccentricity,
                nucleus_mean_intensity=intensity,
                **um2,
                nucleus_perimeter_um=None if s is None else perimeter * s,
                centroid=(float(rows.mean() + r0), float(cols.mean() + c0)),
                bbox=(r0, c0, r1, c1),
                touches_border=r0 == 0 or c0 == 0 or r1 == height or c1 == width,
            )
        )
    # Largest nucleus, then the larger cell, then the first one.
    keys = [(c.nucleus_area_px, c.cell_area_px, -i) for i, c in enumerate(cells)]
    main = -max(keys)[2] if keys else None
    return ImageMeasurements(cells=cells, pixel_size_um=pixel_size_um, main_cell_index=main)
