"""The measurement vector of a crop: sizes, colours and nucleus shape read off the mask."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cytoreview.morphometry.features import FEATURE_NAMES, cell_features, feature_matrix

BACK, CYTO, NUC = (230, 230, 230), (200, 150, 180), (60, 40, 120)


def crop(nucleus_axes=(8, 8), nuclei=((32, 32),), size=64):
    """A synthetic cell: a disc of cytoplasm with flat-coloured elliptic nuclei."""
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), 24, 1, -1)
    for centre in nuclei:
        cv2.ellipse(mask, centre, nucleus_axes, 0, 0, 360, 2, -1)
    image = np.empty((size, size, 3), np.uint8)
    for label, colour in enumerate((BACK, CYTO, NUC)):
        image[mask == label] = colour
    return image, mask


def named(vector: np.ndarray) -> dict[str, float]:
    assert vector.shape == (len(FEATURE_NAMES),) and vector.dtype == np.float32
    return dict(zip(FEATURE_NAMES, vector.tolist(), strict=True))


def test_sizes_and_colours_are_those_of_the_mask():
    image, mask = crop()
    f = named(cell_features(image, mask))
    n, c = int((mask == 2).sum()), int((mask == 1).sum())
    assert f["nucleus_log_area"] == pytest.approx(math.log1p(n), rel=1e-6)
    assert f["cytoplasm_log_area"] == pytest.approx(math.log1p(c), rel=1e-6)
    assert f["nucleus_fraction"] == pytest.approx(n / (n + c), rel=1e-6)
    assert f["log_nc_ratio"] == pytest.approx(math.log1p(n) - math.log1p(c), rel=1e-5)
    assert (f["nucleus_red"], f["nucleus_green"], f["nucleus_blue"]) == pytest.approx(
        tuple(v / 255 for v in NUC), abs=1e-6
    )
    assert f["nucleus_red_sd"] == pytest.approx(0, abs=1e-6)
    assert f["cytoplasm_grey"] == pytest.approx(
        (0.299 * CYTO[0] + 0.587 * CYTO[1] + 0.114 * CYTO[2]) / 255, abs=1e-5
    )
    assert f["background_grey"] == pytest.approx(230 / 255, abs=1e-5)
    assert f["nucleus_count"] == 1


def test_shape_features_tell_round_from_elongated_and_count_nuclei():
    round_ = named(cell_features(*crop(nucleus_axes=(8, 8))))
    long_ = named(cell_features(*crop(nucleus_axes=(14, 4))))
    assert round_["nucleus_circularity"] > 0.85 and long_["nucleus_circularity"] < 0.8
    assert round_["nucleus_eccentricity"] < 0.3 < 0.9 < long_["nucleus_eccentricity"]
    assert round_["nucleus_axis_ratio"] > 0.9 and long_["nucleus_axis_ratio"] < 0.4
    assert round_["nucleus_solidity"] > 0.9
    two = named(cell_features(*crop(nucleus_axes=(5, 5), nuclei=((24, 32), (40, 32)))))
    assert two["nucleus_count"] == 2
    bigger = named(cell_features(*crop(nucleus_axes=(12, 12))))
    assert bigger["nucleus_log_area"] > round_["nucleus_log_area"]
    assert bigger["log_nc_ratio"] > round_["log_nc_ratio"]


def test_grey_images_and_empty_masks_give_defined_vectors():
    image, mask = crop()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    f = named(cell_features(grey, mask))
    assert f["nucleus_red"] == f["nucleus_green"] == f["nucleus_blue"]
    empty = named(cell_features(image, np.zeros_like(mask)))  # all of it background
    assert empty["background_grey"] == pytest.approx(grey.mean() / 255, abs=2e-3)
    assert all(v == 0 for k, v in empty.items() if k != "background_grey")
    assert np.isfinite(cell_features(image, np.full_like(mask, 2))).all()  # no background


def test_feature_matrix_stacks_and_checks_shapes():
    image, mask = crop()
    matrix = feature_matrix([image, image], [mask, mask])
    assert matrix.shape == (2, len(FEATURE_NAMES))
    assert np.array_equal(matrix[0], cell_features(image, mask))
    assert feature_matrix([], []).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(ValueError, match="does not match"):
        cell_features(image, mask[:-1])
    with pytest.raises(ValueError, match="1 images but 2 masks"):
        feature_matrix([image], [mask, mask])


def test_nucleus_position_is_its_offset_from_the_cell_centre_in_cell_radii():
    central = named(cell_features(*crop(nuclei=((32, 32),))))
    eccentric = named(cell_features(*crop(nucleus_axes=(5, 5), nuclei=((44, 32),))))
    assert central["nucleus_position"] == pytest.approx(0, abs=0.02)
    # The cell is the disc of radius 24 with the nucleus in it: the centres lie 12 px apart
    # (the disc's own centre barely moves, the nucleus is part of it).
    assert eccentric["nucleus_position"] == pytest.approx(12 / 24, abs=0.05)
    image, mask = crop()
    assert named(cell_features(image, np.where(mask == 2, 1, mask)))["nucleus_position"] == 0


def test_texture_reads_the_inside_of_a_region_not_its_edge():
    image, mask = crop(nucleus_axes=(10, 10))
    flat = named(cell_features(image, mask))
    # Flat colours: the edges between regions have a large Laplacian, their insides none.
    assert flat["nucleus_texture"] == pytest.approx(0, abs=1e-6)
    assert flat["cytoplasm_texture"] == pytest.approx(0, abs=1e-6)
    grainy = image.copy()
    rng = np.random.default_rng(0)
    noise = rng.integers(-30, 31, size=mask.shape)
    grainy[mask == 2] = np.clip(grainy[mask == 2] + noise[mask == 2, None], 0, 255)
    coarse = named(cell_features(grainy, mask))
    assert coarse["nucleus_texture"] > 0.1  # grey levels in [0, 1]: a 30-level grain
    assert coarse["cytoplasm_texture"] < 0.01 * coarse["nucleus_texture"] + 1e-3
    # A nucleus too small to have an inside is read whole, not left at zero.
    tiny_image, tiny_mask = crop(nucleus_axes=(1, 1))
    tiny_image[tiny_mask == 2] = (0, 0, 0)
    assert named(cell_features(tiny_image, tiny_mask))["nucleus_texture"] > 0


def test_a_model_reads_the_features_it_was_fitted_on_by_name():
    image, mask = crop()
    every = feature_matrix([image], [mask])
    older = FEATURE_NAMES[:27]  # a model fitted before position and texture were measured
    assert np.array_equal(feature_matrix([image], [mask], older), every[:, :27])
    picked = feature_matrix([image], [mask], ("nucleus_texture", "nucleus_log_area"))
    assert np.array_equal(picked[0], every[0, [FEATURE_NAMES.index("nucleus_texture"), 0]])
    with pytest.raises(ValueError, match="newer CytoReview"):
        feature_matrix([image], [mask], ("nucleus_log_area", "nucleus_halo"))
