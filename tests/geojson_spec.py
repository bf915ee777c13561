"""A GeoJSON (RFC 7946) and QuPath-shape validator for the tests: every problem as one line.

Written from the RFC and from QuPath's reader (``PathObjectTypeAdapters``), not from the code
under test, so the tests that use it can fail.
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any

QUPATH_OBJECT_TYPES = {"annotation", "detection", "cell", "tile", "tmaCore", "root"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ring_area(ring: list[list[float]]) -> float:
    """Shoelace area of a closed ring, on the numbers as written (positive: CCW with y up)."""
    total = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        total += x0 * y1 - x1 * y0
    return total / 2


def geometry_problems(geometry: Any, where: str) -> list[str]:
    """Problems of a Polygon / MultiPolygon geometry (the only kinds our export writes)."""
    if not isinstance(geometry, dict):
        return [f"{where}: not an object"]
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords if isinstance(coords, list) and coords else None
    else:
        return [f"{where}: type {kind!r} is not Polygon or MultiPolygon"]
    if polygons is None or not all(isinstance(p, list) and p for p in polygons):
        return [f"{where}: coordinates are not a list of polygons"]
    problems = []
    for p, polygon in enumerate(polygons):
        for r, ring in enumerate(polygon):
            at = f"{where} polygon {p} ring {r}"
            if not isinstance(ring, list) or not all(
                isinstance(pt, list) and len(pt) == 2 and all(_number(v) for v in pt) for pt in ring
            ):
                problems.append(f"{at}: positions are not [x, y] pairs of finite numbers")
                continue
            if len(ring) < 4:
                problems.append(f"{at}: {len(ring)} positions, fewer than 4")
                continue
            if ring[0] != ring[-1]:
                problems.append(f"{at}: not closed")
                continue
            inner = [tuple(pt) for pt in ring[:-1]]
            if len(set(inner)) != len(inner):
                problems.append(f"{at}: visits a vertex twice (not a simple ring)")
            area = ring_area(ring)
            if r == 0 and area <= 0:
                problems.append(f"{at}: exterior ring is not counter-clockwise (area {area})")
            if r > 0 and area >= 0:
                problems.append(f"{at}: hole is not clockwise (area {area})")
    return problems


def feature_problems(feature: Any, where: str) -> list[str]:
    """Problems of one feature as GeoJSON and as QuPath reads it."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return [f"{where}: not a Feature"]
    problems = []
    try:
        uuid.UUID(str(feature.get("id")))
    except ValueError:
        problems.append(f"{where}: id {feature.get('id')!r} is not a UUID")
    problems += geometry_problems(feature.get("geometry"), f"{where} geometry")
    if "nucleusGeometry" in feature:
        problems += geometry_problems(feature["nucleusGeometry"], f"{where} nucleusGeometry")
    props = feature.get("properties")
    if not isinstance(props, dict):
        return [*problems, f"{where}: properties is not an object"]
    if props.get("objectType") not in QUPATH_OBJECT_TYPES:
        problems.append(f"{where}: objectType {props.get('objectType')!r}")
    if "nucleusGeometry" in feature and props.get("objectType") != "cell":
        problems.append(f"{where}: nucleusGeometry on a non-cell (QuPath ignores it)")
    if "classification" in props:
        cls = props["classification"]
        if not isinstance(cls, dict) or not isinstance(cls.get("name"), str):
            problems.append(f"{where}: classification has no name")
        elif not (
            isinstance(cls.get("color"), list)
            and len(cls["color"]) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in cls["color"])
        ):
            problems.append(f"{where}: classification color is not [r, g, b]")
    if "measurements" in props:
        values = props["measurements"]
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and _number(v) for k, v in values.items()
        ):
            problems.append(f"{where}: measurements are not a dictionary of numbers")
    if not isinstance(props.get("isLocked", False), bool):
        problems.append(f"{where}: isLocked is not a boolean")
    if "metadata" in props and not (
        isinstance(props["metadata"], dict)
        and all(isinstance(v, str) for v in props["metadata"].values())
    ):
        problems.append(f"{where}: metadata values are not text")
    return problems


def collection_problems(collection: Any) -> list[str]:
    """Every problem of a FeatureCollection (empty when it is valid)."""
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        return ["not a FeatureCollection"]
    features = collection.get("features")
    if not isinstance(features, list):
        return ["features is not a list"]
    problems = []
    for i, feature in enumerate(features):
        problems += feature_problems(feature, f"feature {i}")
    return problems
