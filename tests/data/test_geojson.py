"""Masks as QuPath GeoJSON and back: valid GeoJSON, QuPath's names, an exact round trip."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from cytoreview.data.geojson import (
    feature_collection,
    features_to_mask,
    mask_to_features,
    rasterise_features,
)
from cytoreview.data.pixel_polygons import fill_polygon
from tests.geojson_spec import collection_problems, ring_area


def synthetic_cells() -> np.ndarray:
    """A cell with a hole, two touching cells, a cell without nucleus, a thin and a pinched one."""
    m = np.zeros((64, 96), np.uint8)
    cv2.circle(m, (16, 16), 12, 1, -1)  # cell with a hole in its cytoplasm...
    cv2.circle(m, (16, 16), 4, 0, -1)
    cv2.circle(m, (22, 16), 2, 2, -1)  # ...and a nucleus beside the hole
    cv2.circle(m, (50, 16), 10, 1, -1)  # two touching cells: one component, two nuclei
    cv2.circle(m, (66, 16), 10, 1, -1)
    cv2.circle(m, (50, 16), 3, 2, -1)
    cv2.circle(m, (66, 16), 3, 2, -1)
    cv2.rectangle(m, (10, 40), (30, 55), 1, -1)  # a cell without nucleus
    m[40:60, 40] = 1  # a one-pixel-wide cell
    m[45, 60], m[46, 61], m[47, 62] = 2, 1, 1  # pixels joined only at corners
    m[50:54, 80:84] = 2  # a bare nucleus
    return m


def polygons(geometry: dict) -> list:
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def test_features_are_valid_geojson_with_qupath_names() -> None:
    mask = synthetic_cells()
    rows = [{"Cell: Area px": 1, "Nucleus/Cytoplasm area ratio": None}] * 6
    features = mask_to_features(mask, classification="HSIL", measurements=rows)
    collection = json.loads(json.dumps(feature_collection(features, image="x"), allow_nan=False))
    assert collection_problems(collection) == []
    assert collection["image"] == "x"
    assert len(features) == 6  # hole cell, touching pair, no-nucleus, thin, pinched + bare
    for feature in features:
        props = feature["properties"]
        assert props["objectType"] == "cell" and props["isLocked"] is False
        assert props["classification"]["name"] == "HSIL"
        assert props["measurements"] == {"Cell: Area px": 1}  # None left out: numbers only
    with_nucleus = [f for f in features if "nucleusGeometry" in f]
    assert len(with_nucleus) == 4  # not the cytoplasm-only rectangle and line
    pair = next(f for f in with_nucleus if f["nucleusGeometry"]["type"] == "MultiPolygon")
    assert len(pair["nucleusGeometry"]["coordinates"]) == 2  # the touching cells' nuclei
    holed = [f for f in features if any(len(p) > 1 for p in polygons(f["geometry"]))]
    assert len(holed) == 1


def test_validator_catches_broken_geojson() -> None:
    good = feature_collection(mask_to_features(synthetic_cells(), classification="NILM"))
    assert collection_problems(good) == []
    breakages = {
        "not closed": lambda r: r.pop(),
        "fewer than 4": lambda r: r.__delitem__(slice(1, -1)),
        "not counter-clockwise": lambda r: r.reverse(),
        "finite numbers": lambda r: r[1].__setitem__(0, "3"),
    }
    for expected, breakage in breakages.items():
        broken = copy.deepcopy(good)
        breakage(broken["features"][0]["geometry"]["coordinates"][0])
        assert any(expected in p for p in collection_problems(broken)), expected
    broken = copy.deepcopy(good)
    broken["features"][0]["properties"]["measurements"] = {"a": float("nan")}
    assert collection_problems(broken)


def test_round_trip_is_exact() -> None:
    mask = synthetic_cells()
    assert np.array_equal(features_to_mask(mask_to_features(mask), mask.shape), mask)


def test_round_trip_with_offset_and_downsample() -> None:
    mask = synthetic_cells()
    features = mask_to_features(mask, offset_xy=(100, 40), downsample=4.0)
    xs = [x for f in features for p in polygons(f["geometry"]) for r in p for x, _ in r]
    ys = [y for f in features for p in polygons(f["geometry"]) for r in p for _, y in r]
    # Pixel-edge outlines: from the left edge of column 0 to the right edge of the last one.
    assert min(xs) >= 100 * 4 and max(xs) <= (100 + mask.shape[1]) * 4
    assert min(ys) >= 40 * 4 and max(ys) <= (40 + mask.shape[0]) * 4
    back = features_to_mask(features, mask.shape, offset_xy=(100, 40), downsample=4.0)
    assert np.array_equal(back, mask)


def test_polygon_area_is_the_pixel_count() -> None:
    mask = synthetic_cells()
    features = mask_to_features(mask)
    total = sum(ring_area(r) for f in features for p in polygons(f["geometry"]) for r in p)
    assert total == int((mask > 0).sum())
    nuclei = [f["nucleusGeometry"] for f in features if "nucleusGeometry" in f]
    assert sum(ring_area(r) for g in nuclei for p in polygons(g) for r in p) == (mask == 2).sum()


def test_pixels_touching_at_corners_are_separate_polygons() -> None:
    """A diamond of four pixels around an empty one: four squares, not a polygon with a hole
    touching its outline at four corners (whose interior would be disconnected: not OGC)."""
    mask = np.zeros((5, 5), np.uint8)
    mask[1, 2] = mask[2, 1] = mask[2, 3] = mask[3, 2] = 1
    (feature,) = mask_to_features(mask)
    parts = feature["geometry"]["coordinates"]
    assert feature["geometry"]["type"] == "MultiPolygon" and len(parts) == 4
    assert all(len(p) == 1 and ring_area(p[0]) == 1 for p in parts)
    # A ring whose corner pixel is missing: the hole meets the outside at a corner only
    # (pixels (0, 1) and (1, 0) touch there). One polygon; its hole touches the outline at
    # that point and nowhere else, which OGC allows.
    ring_c = np.ones((4, 4), np.uint8)
    ring_c[1:3, 1:3] = 0
    ring_c[0, 0] = 0
    (feature,) = mask_to_features(ring_c)
    assert feature["geometry"]["type"] == "Polygon"
    outline, hole = feature["geometry"]["coordinates"]
    assert (ring_area(outline), ring_area(hole)) == (15, -4)
    assert {tuple(p) for p in outline} & {tuple(p) for p in hole} == {(1, 1)}
    assert np.array_equal(features_to_mask([feature], ring_c.shape), ring_c)


def test_random_masks_round_trip_with_simple_oriented_rings() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 16, 2))
        mask = (rng.random((h, w)) < rng.uniform(0.2, 0.8)).astype(np.uint8)
        mask[(mask == 1) & (rng.random((h, w)) < 0.4)] = 2
        features = mask_to_features(mask, offset_xy=(3, 5), downsample=0.5)
        assert collection_problems(feature_collection(features)) == []
        back = features_to_mask(features, mask.shape, offset_xy=(3, 5), downsample=0.5)
        assert np.array_equal(back, mask), mask


def test_annotation_objects_carry_nuclei_as_features_of_their_own() -> None:
    mask = synthetic_cells()
    features = mask_to_features(mask, object_type="annotation", classification="LSIL")
    assert collection_problems(feature_collection(features)) == []
    names = [f["properties"]["classification"]["name"] for f in features]
    assert names.count("Nucleus") == 4 and names.count("LSIL") == 6
    assert not any("nucleusGeometry" in f for f in features)
    assert np.array_equal(features_to_mask(features, mask.shape), mask)


def test_ids_are_deterministic_and_distinct() -> None:
    mask = synthetic_cells()
    first = [f["id"] for f in mask_to_features(mask)]
    assert first == [f["id"] for f in mask_to_features(mask)]
    assert len(set(first)) == len(first)


def test_measurements_and_arguments_are_checked() -> None:
    mask = synthetic_cells()
    with pytest.raises(ValueError, match="2 measurement rows for 6 cells"):
        mask_to_features(mask, measurements=[{}, {}])
    with pytest.raises(ValueError, match="unknown object type"):
        mask_to_features(mask, object_type="tile")
    with pytest.raises(ValueError, match="values must be 0, 1 or 2"):
        mask_to_features(mask * 2)
    assert len(mask_to_features(mask, min_area_px=10)) == 5  # the three pinched pixels go
    assert mask_to_features(np.zeros((5, 5), np.uint8)) == []


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A closed counter-clockwise (y up) rectangle ring."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def qupath_annotation(name: str, rings: list, kind: str = "Polygon") -> dict:
    coords = rings if kind == "Polygon" else [rings]
    return {
        "type": "Feature",
        "id": "0c2f7b39-5d1c-4b5e-9a62-1a3f4e5d6c7b",
        "geometry": {"type": kind, "coordinates": coords},
        "properties": {
            "objectType": "annotation",
            "classification": {"name": name, "color": [200, 0, 0]},
        },
    }


def test_hand_drawn_qupath_annotations_are_drawn() -> None:
    features = [
        qupath_annotation("cytoplasm", [_square(2.2, 1.6, 17.9, 12.4)]),
        qupath_annotation("NUCLEUS", [_square(6.5, 4.5, 9.5, 8.5)], kind="MultiPolygon"),
        qupath_annotation("Cell", [_square(20, 2, 30, 12), _square(23, 5, 27, 9)]),  # a hole
        qupath_annotation("Tumor", [_square(0, 0, 40, 20)]),
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [3, 3]},
            "properties": {"objectType": "annotation", "classification": {"name": "Nucleus"}},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]},
            "properties": {"objectType": "cell"},
        },
    ]
    result = rasterise_features(features, (20, 40))
    expected = np.zeros((20, 40), np.uint8)
    expected[2:12, 2:18] = 1  # pixel centres r + 0.5 in (1.6, 12.4), c + 0.5 in (2.2, 17.9)
    expected[4:8, 6:9] = 2  # centres in (4.5, 8.5) x (6.5, 9.5): rows 4-7, columns 6-8
    expected[2:12, 20:30] = 1
    expected[5:9, 23:27] = 0
    assert np.array_equal(result.labels, expected)
    assert (result.cells, result.nuclei) == (2, 1)
    assert len(result.skipped) == 3
    assert "feature 4 (annotation 'Tumor'): not a cell or a nucleus" in result.skipped[0]
    assert "feature 5" in result.skipped[1] and "Point geometry" in result.skipped[1]
    assert "feature 6" in result.skipped[2] and "malformed" in result.skipped[2]


def test_features_outside_the_mask_are_named() -> None:
    outside = qupath_annotation("Nucleus", [_square(100, 100, 110, 110)])
    result = rasterise_features([outside], (20, 20))
    assert not result.labels.any()
    assert result.skipped == [
        "feature 1 (annotation 'Nucleus'): its geometry covers no pixel of the 20 x 20 mask; "
        "skipped"
    ]


def test_fill_polygon_matches_a_point_in_polygon_test() -> None:
    """Float polygons (hand-drawn in QuPath): the scanline fill agrees with a brute force."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:24, 0:32]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    for _ in range(50):
        n = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(3, 14, n)
        ring = np.stack([16 + radius * np.cos(angles), 12 + radius * np.sin(angles)], axis=1)
        expected = np.zeros(len(centres), bool)
        for i in range(n):  # even-odd crossing test of every pixel centre
            (xa, ya), (xb, yb) = ring[i - 1], ring[i]
            crosses = (ya > centres[:, 1]) != (yb > centres[:, 1])
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = xa + (centres[:, 1] - ya) * (xb - xa) / (yb - ya)
            expected ^= crosses & (centres[:, 0] < x_at)
        assert np.array_equal(fill_polygon([ring], (24, 32)).ravel(), expected)
