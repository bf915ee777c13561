"""Morphometry on drawn shapes whose areas, ratios and shape values are known by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from cytoreview.morphometry import (
    label_cells,
    measure_image,
    morphometry_columns,
)
from cytoreview.types import CYTOPLASM, NUCLEUS


def rect_cell(h: int = 40, w: int = 60) -> np.ndarray:
    """Cytoplasm 20x30 = 600 px at rows 5-24, cols 5-34 with a 10x10 nucleus inside."""
    mask = np.zeros((h, w), np.uint8)
    mask[5:25, 5:35] = CYTOPLASM
    mask[10:20, 10:20] = NUCLEUS
    return mask


def disc_cell(mask: np.ndarray, center: tuple[int, int], r_cell: int, r_nuc: int) -> None:
    rr, cc = disk(center, r_cell, shape=mask.shape)
    mask[rr, cc] = CYTOPLASM
    rr, cc = disk(center, r_nuc, shape=mask.shape)
    mask[rr, cc] = NUCLEUS


def disc_area(r: int) -> int:
    return int(disk((r + 2, r + 2), r)[0].size)


def test_rectangle_exact_areas_and_nc_ratio() -> None:
    result = measure_image(rect_cell())
    assert len(result.cells) == 1
    cell = result.cells[0]
    assert (cell.nucleus_area_px, cell.cytoplasm_area_px, cell.cell_area_px) == (100, 500, 600)
    assert cell.nc_ratio == pytest.approx(100 / 500)
    assert cell.nucleus_fraction == pytest.approx(100 / 600)
    assert cell.nucleus_count == 1
    assert cell.centroid == pytest.approx((14.5, 19.5))
    assert cell.bbox == (5, 5, 25, 35)
    assert not cell.touches_border
    # A 10x10 square: between the pixel-centre (36) and the outer-edge (40) perimeters.
    assert 36.0 <= cell.nucleus_perimeter_px <= 40.0
    assert cell.nucleus_eccentricity == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(cell.nucleus_mean_intensity)  # no image given
    assert cell.nucleus_area_um2 is None and cell.nucleus_perimeter_um is None


@pytest.mark.parametrize("radius", [10, 15, 20])
def test_disc_is_circular(radius: int) -> None:
    mask = np.zeros((64, 64), np.uint8)
    disc_cell(mask, (32, 32), radius + 8, radius)
    cell = measure_image(mask).cells[0]
    assert cell.nucleus_area_px == disc_area(radius)
    # Measured: circularity 0.995-1.0 (clipped), perimeter 0.965-0.991 of 2*pi*r.
    assert 0.99 <= cell.nucleus_circularity <= 1.0
    assert cell.nucleus_perimeter_px == pytest.approx(2 * math.pi * radius, rel=0.04)
    assert cell.nucleus_eccentricity < 0.05


@pytest.mark.parametrize(("a", "b"), [(20, 10), (18, 12), (24, 8)])
def test_ellipse_eccentricity(a: int, b: int) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[2:62, 2:62] = CYTOPLASM
    rr, cc = ellipse(32, 32, b, a)  # row radius b, column radius a
    mask[rr, cc] = NUCLEUS
    cell = measure_image(mask).cells[0]
    # Measured deviation from sqrt(1 - b^2/a^2): 0.002-0.007.
    assert cell.nucleus_eccentricity == pytest.approx(math.sqrt(1 - b**2 / a**2), abs=0.01)
    assert cell.nucleus_circularity < 0.97


def test_ellipse_circularity_matches_ramanujan_perimeter() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[2:62, 2:62] = CYTOPLASM
    mask[ellipse(32, 32, 10, 20)] = NUCLEUS
    cell = measure_image(mask).cells[0]
    a, b = 20, 10
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    expected = 4 * math.pi * (math.pi * a * b) / perimeter**2  # 0.841; measured 0.850
    assert cell.nucleus_circularity == pytest.approx(expected, abs=0.02)


def test_two_separate_cells() -> None:
    mask = np.zeros((40, 80), np.uint8)
    mask[5:25, 5:35] = CYTOPLASM
    mask[10:20, 10:20] = NUCLEUS
    mask[5:15, 50:70] = CYTOPLASM  # 200 px
    mask[8:12, 55:60] = NUCLEUS  # 20 px
    result = measure_image(mask)
    assert len(result.cells) == 2
    areas = sorted((c.nucleus_area_px, c.cytoplasm_area_px) for c in result.cells)
    assert areas == [(20, 180), (100, 500)]
    assert result.main is not None and result.main.nucleus_area_px == 100
    assert result.max_nc_ratio == pytest.approx(100 / 500)  # 0.2 > 20 / 180
    row = result.row()
    assert row["cell_count"] == 2 and row["nucleus_count"] == 2
    assert row["total_cell_area_px"] == 800
    assert row["nucleus_area_px"] == 100 and row["nc_ratio"] == pytest.approx(0.2)


def test_main_cell_is_largest_nucleus_and_max_nc_is_the_worst_cell() -> None:
    mask = np.zeros((40, 80), np.uint8)
    mask[2:38, 2:38] = CYTOPLASM  # big cell: 1296 px, nucleus 100 -> N:C 100/1196
    mask[10:20, 10:20] = NUCLEUS
    mask[5:15, 50:60] = CYTOPLASM  # small cell: 100 px, nucleus 64 -> N:C 64/36
    mask[6:14, 51:59] = NUCLEUS
    result = measure_image(mask)
    assert result.main.nucleus_area_px == 100
    assert result.max_nc_ratio == pytest.approx(64 / 36)
    assert result.cells[result.max_nc_cell_index].nucleus_area_px == 64
    assert result.row()["max_nc_ratio"] == pytest.approx(64 / 36)


def test_touching_cells_are_split_at_nuclei() -> None:
    mask = np.zeros((40, 72), np.uint8)
    disc_cell(mask, (20, 20), 13, 4)
    disc_cell(mask, (20, 44), 13, 4)  # centres 24 apart < 26: the discs overlap
    assert label_cells(mask, split_touching=False).max() == 1  # one connected component ...
    assert label_cells(mask).max() == 2  # ... split into two cells
    result = measure_image(mask)
    assert len(result.cells) == 2
    single, nucleus = disc_area(13), disc_area(4)
    total = int((mask > 0).sum())
    assert sum(c.cell_area_px for c in result.cells) == total
    for cell in result.cells:
        assert cell.nucleus_count == 1
        assert cell.nucleus_area_px == nucleus
        # Each cell gets its own disc minus part of the overlap lens (measured 528 and 517 of 529).
        assert single - (2 * single - total) <= cell.cell_area_px <= single
    left, right = sorted(result.cells, key=lambda c: c.centroid[1])
    assert left.centroid[1] < 32 < right.centroid[1]


def test_touching_cells_of_different_sizes_split_at_the_neck() -> None:
    mask = np.zeros((50, 80), np.uint8)
    disc_cell(mask, (25, 22), 18, 6)
    disc_cell(mask, (25, 47), 9, 3)  # touches the big one: centres 25 apart < 27
    result = measure_image(mask)
    big, small = sorted(result.cells, key=lambda c: -c.cell_area_px)
    lens = disc_area(18) + disc_area(9) - int((mask > 0).sum())  # pixels of both discs
    assert big.cell_area_px + small.cell_area_px == int((mask > 0).sum())
    # Each cell keeps its own disc, give or take the overlap lens.
    assert disc_area(18) - lens <= big.cell_area_px <= disc_area(18)
    assert disc_area(9) - lens <= small.cell_area_px <= disc_area(9)
    assert (big.nucleus_area_px, small.nucleus_area_px) == (disc_area(6), disc_area(3))


def test_split_touching_off_keeps_one_cell_with_two_nuclei() -> None:
    mask = np.zeros((40, 72), np.uint8)
    disc_cell(mask, (20, 20), 13, 4)
    disc_cell(mask, (20, 44), 13, 5)
    cell = measure_image(mask, split_touching=False).cells[0]
    assert cell.nucleus_count == 2
    assert cell.nucleus_area_px == disc_area(4) + disc_area(5)
    # Shape values are those of the largest nucleus (r = 5).
    assert cell.nucleus_perimeter_px == pytest.approx(measure_one_disc(5), rel=1e-9)


def measure_one_disc(r: int) -> float:
    mask = np.zeros((40, 40), np.uint8)
    disc_cell(mask, (20, 20), 13, r)
    return measure_image(mask).cells[0].nucleus_perimeter_px


def test_micrometre_conversion_scales_with_pixel_size() -> None:
    plain = measure_image(rect_cell()).cells[0]
    result = measure_image(rect_cell(), pixel_size_um=0.5)
    cell = result.cells[0]
    assert cell.nucleus_area_um2 == pytest.approx(100 * 0.25)
    assert cell.cytoplasm_area_um2 == pytest.approx(500 * 0.25)
    assert cell.cell_area_um2 == pytest.approx(600 * 0.25)
    assert cell.nucleus_perimeter_um == pytest.approx(plain.nucleus_perimeter_px * 0.5)
    assert cell.nc_ratio == plain.nc_ratio  # dimensionless
    row = result.row()
    assert row["nucleus_area_um2"] == pytest.approx(25.0)
    assert row["total_cell_area_um2"] == pytest.approx(150.0)
    assert row["pixel_size_um"] == 0.5


def test_nucleus_intensity_is_its_grey_level() -> None:
    mask = rect_cell()
    rgb = np.full((*mask.shape, 3), 230, np.uint8)
    rgb[mask == NUCLEUS] = 80
    assert measure_image(mask, rgb).cells[0].nucleus_mean_intensity == pytest.approx(80.0)
    rgb[mask == NUCLEUS] = (100, 50, 200)  # luma 0.299*100 + 0.587*50 + 0.114*200 = 82.05
    assert measure_image(mask, rgb).cells[0].nucleus_mean_intensity == pytest.approx(82.05)
    grey = np.full(mask.shape, 200, np.uint8)
    grey[10:15, 10:20] = 40  # half the nucleus at 40, half at 200
    assert measure_image(mask, grey).cells[0].nucleus_mean_intensity == pytest.approx(120.0)


def test_empty_mask_has_no_cell_and_empty_summary() -> None:
    result = measure_image(np.zeros((32, 32), np.uint8), pixel_size_um=0.3)
    assert result.cells == [] and result.main is None and result.max_nc_ratio is None
    row = result.row()
    assert list(row) == morphometry_columns()
    assert row["cell_count"] == 0 and row["nucleus_count"] == 0
    assert row["total_nucleus_area_px"] == 0 and row["total_cell_area_um2"] == 0.0
    prefixes = ("nucleus_", "cytoplasm_", "cell_area", "nc_")
    main_keys = [k for k in row if k.startswith(prefixes) and k != "nucleus_count"]
    assert len(main_keys) == 13
    assert all(row[k] is None for k in [*main_keys, "max_nc_ratio"])


def test_nucleus_without_cytoplasm_is_a_bare_nucleus_cell() -> None:
    mask = rect_cell(40, 80)
    mask[disk((20, 60), 7)] = NUCLEUS  # lone nucleus of 149 px, larger than the rectangle's 100
    rgb = np.full((*mask.shape, 3), 50, np.uint8)
    result = measure_image(mask, rgb)
    assert len(result.cells) == 2
    bare = next(c for c in result.cells if c.cytoplasm_area_px == 0)
    assert bare.nucleus_area_px == bare.cell_area_px > 0
    assert math.isnan(bare.nc_ratio) and bare.nucleus_fraction == 1.0
    assert bare.to_dict()["nc_ratio"] is None
    # The bare nucleus is the main cell (largest nucleus) but the worst N:C skips it.
    assert result.main is bare and result.row()["nc_ratio"] is None
    assert result.max_nc_ratio == pytest.approx(0.2)
    json.dumps(result.to_dict(), allow_nan=False)


def test_cell_without_nucleus() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:12, 2:12] = CYTOPLASM
    cell = measure_image(mask, np.zeros((20, 20, 3), np.uint8)).cells[0]
    assert (cell.nucleus_count, cell.nucleus_area_px, cell.cytoplasm_area_px) == (0, 0, 100)
    assert cell.nc_ratio == 0.0 and cell.nucleus_fraction == 0.0
    assert math.isnan(cell.nucleus_circularity) and math.isnan(cell.nucleus_mean_intensity)


def test_row_keys_and_json() -> None:
    result = measure_image(rect_cell(), np.zeros((40, 60, 3), np.uint8), pixel_size_um=0.25)
    row = result.row()
    assert list(row) == morphometry_columns()
    assert all(k == k.lower() and " " not in k for k in row)
    for name in ("nucleus_area_px", "nucleus_area_um2", "cytoplasm_area_px", "nc_ratio"):
        assert name in row
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["cells"][0]["bbox"] == [5, 5, 25, 35]


def test_label_cells_raster_order_and_border_flag() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[0:5, 10:15] = CYTOPLASM  # first in raster order, touches the top border
    mask[8:12, 2:6] = CYTOPLASM
    labels = label_cells(mask)
    assert labels[0, 10] == 1 and labels[8, 2] == 2
    cells = measure_image(mask).cells
    assert [c.touches_border for c in cells] == [True, False]


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="0, 1 or 2"):
        measure_image(np.full((4, 4), 3, np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        measure_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="must be"):
        measure_image(rect_cell(), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        measure_image(rect_cell(), np.zeros((40, 60, 3), np.float32))
    for size in (0.0, -1.0, float("nan"), 353.0):  # 353: a 72-dpi screenshot's tag
        with pytest.raises(ValueError, match="not a microscope pixel size"):
            measure_image(rect_cell(), pixel_size_um=size)
