"""One rule for a plausible pixel size: typed (CLI, GUI), read from TIFF tags, stored, measured."""

from __future__ import annotations

import pytest

from cytoreview.defaults import PIXEL_SIZE_UM_RANGE, check_pixel_size
from cytoreview.errors import ProjectError
from cytoreview.morphometry import measure_image
from cytoreview.storage.images import pixel_size_from_tiff_resolution
from cytoreview.storage.project import Project

LOW, HIGH = PIXEL_SIZE_UM_RANGE


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        ((10_000, 1), 3, 1.0),  # 10000 px/cm
        (40_000.0, "centimeter", 0.25),
        ((254_000, 10), 2, 1.0),  # 25400 px/inch
        ((50_800, 1), "INCH", 0.5),
        ((4, 1), 5, 0.25),  # tifffile's micrometre unit
        ((10_000, 1), 1, None),  # no absolute unit
        ((10_000, 0), 3, None),  # malformed rational
        (0, 3, None),
        ((72, 1), 2, None),  # an image editor's default: not a calibration
        ((10_000, 1), 9, None),  # unknown unit
        ("abc", 3, None),
    ],
)
def test_pixel_size_from_tiff_resolution(resolution, unit, expected) -> None:
    got = pixel_size_from_tiff_resolution(resolution, unit)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("size", [LOW, 0.25, HIGH])
def test_every_entry_point_takes_a_size_inside_the_range(size, tmp_path) -> None:
    assert check_pixel_size(size) == size
    assert pixel_size_from_tiff_resolution((1.0, size), 5) == pytest.approx(size)
    project = Project.init(tmp_path / "p", actor="t")
    project.set_pixel_size(size, actor="t")
    assert float(project.catalog.get_meta("pixel_size_um")) == size
    assert measure_image(_cell(), pixel_size_um=size).pixel_size_um == size


@pytest.mark.parametrize("size", [0.0, -0.25, LOW / 2, HIGH * 1.01, 353.0, float("nan")])
def test_every_entry_point_refuses_a_size_outside_it(size, tmp_path) -> None:
    with pytest.raises(ValueError, match="not a microscope pixel size"):
        check_pixel_size(size)
    assert pixel_size_from_tiff_resolution((1.0, size), 5) is None
    project = Project.init(tmp_path / "p", actor="t")
    with pytest.raises(ProjectError, match="not a microscope pixel size"):
        project.set_pixel_size(size, actor="t")
    with pytest.raises(ValueError, match="not a microscope pixel size"):
        measure_image(_cell(), pixel_size_um=size)


def _cell():
    import numpy as np

    mask = np.zeros((20, 20), np.uint8)
    mask[4:16, 4:16] = 1
    mask[8:12, 8:12] = 2
    return mask
