"""Label masks as QuPath GeoJSON features, and features back to label masks (pure compute).

QuPath reads and writes objects as GeoJSON (``PathObjectTypeAdapters`` in qupath-core, v0.4 and
later): a ``Feature`` with a UUID ``id``, the object's ``geometry``, for a cell its nucleus as a
``nucleusGeometry`` member beside it, and ``properties`` holding ``objectType`` (``"cell"``,
``"detection"``, ``"annotation"``...), ``classification`` (``{"name", "color": [r, g, b]}``),
``isLocked`` and ``measurements`` (a dictionary of numbers). This module writes that shape.

Conventions
-----------
- **Cells.** A cell is a connected component of the foreground (labels 1 and 2, 8-connectivity,
  numbered in raster order of their first pixel as :func:`scipy.ndimage.label` does, the order
  of ``measure_image(..., split_touching=False)``); its nuclei are the label-2 pixels inside it.
  Two touching cells are one component here: one feature whose nucleus is a MultiPolygon.
- **Outlines** follow pixel edges (:mod:`cytoreview.data.pixel_polygons`): a polygon's area is
  its pixel count, so QuPath's "Area" of an exported cell is the cell's pixel area.
- **Pixel frame.** The pixel at row ``r``, column ``c`` covers ``[c, c + 1] x [r, r + 1]``, as in
  QuPath (origin at the top left corner of the full-resolution image, y pointing down). The
  output coordinates are ``x = (col + offset_x) * downsample``, ``y = (row + offset_y) *
  downsample``: ``offset_xy`` is where the mask lies in its own level, ``downsample`` that
  level's factor, so a tile of a slide level exports in level-0 coordinates.
- **Ring rules (RFC 7946).** Every ring is closed (first position == last) and has at least four
  positions. Exterior rings have a positive shoelace area computed on the numbers as written
  and holes a negative one: counter-clockwise and clockwise in the y-up frame that RFC 7946 and
  GeoJSON validators assume (on screen, with y pointing down, they look the other way round).
  QuPath ignores orientation; validators do not. Cells whose pixels touch only at a corner are
  MultiPolygons of simple rings.
- **Back to pixels.** A pixel belongs to a polygon when its centre lies inside (even-odd over
  its rings: holes stay empty), as QuPath makes a mask of a region; so
  ``features_to_mask(mask_to_features(m), m.shape)`` gives ``m`` back exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cytoreview.data.overlays import LABEL_COLOURS
from cytoreview.data.pixel_polygons import Ring, fill_window, trace_polygons
from cytoreview.types import CYTOPLASM, NUCLEUS

log = logging.getLogger(__name__)

#: QuPath's object types that this module writes (``PathObjectTypeAdapters.MAP_TYPES``).
OBJECT_TYPES = ("cell", "detection", "annotation")
#: Smallest cell (pixels) exported by default: every cell, so that a round trip is lossless.
MIN_CELL_AREA_PX = 1
#: Classification names that mean "this polygon is a nucleus" / "a cell" on import.
NUCLEUS_NAMES = frozenset({"nucleus", "nuclei"})
CELL_NAMES = frozenset({"cell", "cells", "cytoplasm"})
#: The ``metadata`` key our own features carry their part in (QuPath keeps it as text).
ROLE_KEY = "cytoreview_part"
#: Class colours in scheme order (Okabe-Ito: told apart also with colour-vision deficiency).
CLASS_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
)
_EIGHT = np.ones((3, 3), dtype=bool)
#: Namespace of the deterministic feature ids (uuid5 of the feature's content).
_ID_NAMESPACE = uuid.UUID("6f0c3c4e-0f43-4f7e-9d53-3b1f2a7c9e10")


def class_colour(name: str, classes: Sequence[str] = ()) -> tuple[int, int, int]:
    """A class's display colour: its place in ``classes``, else a stable pick from its name."""
    if name in classes:
        return CLASS_PALETTE[list(classes).index(name) % len(CLASS_PALETTE)]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return CLASS_PALETTE[digest[0] % len(CLASS_PALETTE)]


def classification(name: str, colour: Sequence[int] | None = None) -> dict[str, Any]:
    """QuPath's ``classification`` member: ``{"name": name, "color": [r, g, b]}``."""
    rgb = class_colour(name) if colour is None else tuple(int(v) for v in colour)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"a colour is three values 0-255, got {colour!r}")
    return {"name": str(name), "color": list(rgb)}


# -- mask -> features ------------------------------------------------------------------------
def _to_geometry(
    polygons: list[tuple[Ring, list[Ring]]],
    origin: tuple[int, int],
    offset_xy: tuple[float, float],
    downsample: float,
) -> dict[str, Any] | None:
    """GeoJSON Polygon / MultiPolygon of traced rings, in output coordinates."""
    (col0, row0), (ox, oy) = origin, offset_xy

    def number(v: float) -> float | int:
        return int(v) if float(v).is_integer() else float(v)

    def closed(ring: Ring) -> list[list[float | int]]:
        pts = [
            [number((x + col0 + ox) * downsample), number((y + row0 + oy) * downsample)]
            for x, y in ring
        ]
        return [*pts, pts[0]]

    parts = [[closed(ext), *(closed(h) for h in holes)] for ext, holes in polygons]
    if not parts:
        return None
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts}


def _feature_id(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(_ID_NAMESPACE, text))


def mask_to_features(
    labels: np.ndarray,
    *,
    offset_xy: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
    classification: Mapping[str, Any] | str | None = None,
    measurements: Sequence[Mapping[str, float | int | None]] | None = None,
    object_type: str = "cell",
    min_area_px: int = MIN_CELL_AREA_PX,
    metadata: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One QuPath GeoJSON feature per cell of a label mask (see the module conventions).

    Parameters
    ----------
    labels
        (H, W) integer label mask: 0 background, 1 cytoplasm, 2 nucleus.
    offset_xy
        (x, y) of the mask's top left pixel in its level's pixel frame.
    downsample
        The level's downsample factor: coordinates are multiplied by it (level 0 = 1).
    classification
        The class of every cell: a name (colour from :func:`class_colour`) or a mapping
        ``{"name": ..., "color": [r, g, b]}``; None for unclassified cells.
    measurements
        One mapping of measurement name to number per cell, in cell order (the order of
        ``measure_image(labels, split_touching=False).cells``); ``None`` and non-finite values
        are left out (QuPath's measurements are numbers).
    object_type
        ``"cell"``: the nucleus goes in ``nucleusGeometry``. ``"detection"`` or
        ``"annotation"``: QuPath keeps no nucleus on those, so each nucleus is a feature of its
        own, classified ``Nucleus``, after its cell.
    min_area_px
        Cells with fewer pixels are left out (their measurements too).
    metadata
        Text values added to every feature's ``properties.metadata`` (QuPath keeps them with
        the object), e.g. where the class comes from.

    Returns
    -------
    list of dict
        GeoJSON Feature objects (see :func:`feature_collection` to wrap them).

    Raises
    ------
    ValueError
        On a malformed mask, an unknown ``object_type``, a non-positive ``downsample`` or
        ``measurements`` of another length than the number of cells.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label mask is a 2-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > NUCLEUS):
        raise ValueError(f"label mask values must be 0, 1 or 2, got {labels.min()}..{labels.max()}")
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown object type {object_type!r}; valid: {', '.join(OBJECT_TYPES)}")
    if not (math.isfinite(downsample) and downsample > 0):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    cls = _as_classification(classification)
    cells, n_cells = ndi.label(labels > 0, structure=_EIGHT)
    if measurements is not None and len(measurements) != n_cells:
        raise ValueError(f"{len(measurements)} measurement rows for {n_cells} cells")
    features: list[dict[str, Any]] = []
    for index, box in enumerate(ndi.find_objects(cells)):
        if box is None:
            continue
        inside = cells[box] == index + 1
        if int(inside.sum()) < min_area_px:
            continue
        origin = (box[1].start, box[0].start)
        cell_geom = _to_geometry(trace_polygons(inside), origin, offset_xy, downsample)
        nucleus = inside & (labels[box] == NUCLEUS)
        nucleus_geom = (
            _to_geometry(trace_polygons(nucleus), origin, offset_xy, downsample)
            if nucleus.any()
            else None
        )
        values = _numbers(measurements[index]) if measurements is not None else {}
        features += _cell_features(
            cell_geom, nucleus_geom, cls, values, object_type, dict(metadata or {})
        )
    return features


def _as_classification(value: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return classification(value)
    return classification(str(value["name"]), value.get("color"))


def _numbers(values: Mapping[str, float | int | None]) -> dict[str, float | int]:
    """The finite numbers of a measurement row (QuPath's measurements are numbers only)."""
    out: dict[str, float | int] = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool):
            continue
        number = float(value)
        if math.isfinite(number):
            out[str(key)] = int(value) if isinstance(value, int | np.integer) else number
    return out


def _cell_features(
    cell_geom: dict[str, Any] | None,
    nucleus_geom: dict[str, Any] | None,
    cls: dict[str, Any] | None,
    values: dict[str, float | int],
    object_type: str,
    metadata: dict[str, str],
) -> list[dict[str, Any]]:
    """The feature(s) of one cell: one for a QuPath cell, cell + nuclei otherwise."""
    if cell_geom is None:
        return []

    def feature(geom: dict[str, Any], props: dict[str, Any], **extra: Any) -> dict[str, Any]:
        out = {"type": "Feature", "id": _feature_id(geom, extra, props), "geometry": geom}
        return {**out, **extra, "properties": props}

    props: dict[str, Any] = {"objectType": object_type, "isLocked": False}
    if cls is not None:
        props["classification"] = cls
    if values:
        props["measurements"] = values
    if object_type == "cell":
        if metadata:
            props["metadata"] = metadata
        extra = {"nucleusGeometry": nucleus_geom} if nucleus_geom is not None else {}
        return [feature(cell_geom, props, **extra)]
    props["metadata"] = {**metadata, ROLE_KEY: "cell"}
    out = [feature(cell_geom, props)]
    if nucleus_geom is not None:
        nucleus_props = {
            "objectType": object_type,
            "isLocked": False,
            "classification": classification("Nucleus", LABEL_COLOURS[NUCLEUS]),
            "metadata": {**metadata, ROLE_KEY: "nucleus"},
        }
        out.append(feature(nucleus_geom, nucleus_props))
    return out


def feature_collection(features: Iterable[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of ``features``; ``metadata`` become foreign members.

    RFC 7946 allows members of one's own beside ``type`` and ``features`` (QuPath ignores them):
    e.g. the image's name and size, the mask version exported.
    """
    reserved = {"type", "features", "bbox"} & set(metadata)
    if reserved:
        raise ValueError(f"{', '.join(sorted(reserved))}: reserved GeoJSON member name(s)")
    return {"type": "FeatureCollection", **metadata, "features": list(features)}


# -- features -> mask ------------------------------------------------------------------------
@dataclass
class Rasterised:
    """What :func:`rasterise_features` made of a list of features.

    Attributes
    ----------
    labels
        (H, W) uint8 label mask: 0 background, 1 cytoplasm, 2 nucleus.
    cells, nuclei
        How many cell and nucleus geometries were drawn.
    skipped
        One line per feature (or part) that was left out, and why.
    """

    labels: np.ndarray
    cells: int = 0
    nuclei: int = 0
    skipped: list[str] = field(default_factory=list)


def _role(feature: Mapping[str, Any]) -> str | None:
    """``"cell"``, ``"nucleus"`` or None: what a feature's geometry is (see rasterise_features)."""
    props = feature.get("properties")
    props = props if isinstance(props, Mapping) else {}
    meta = props.get("metadata")
    if isinstance(meta, Mapping) and meta.get(ROLE_KEY) in ("cell", "nucleus"):
        return str(meta[ROLE_KEY])
    cls = props.get("classification")
    name = cls.get("name") if isinstance(cls, Mapping) else cls if isinstance(cls, str) else None
    if isinstance(name, str):
        if name.strip().lower() in NUCLEUS_NAMES:
            return "nucleus"
        if name.strip().lower() in CELL_NAMES:
            return "cell"
    object_type = props.get("objectType", props.get("object_type"))
    return "cell" if object_type == "cell" else None


def _describe(index: int, feature: Mapping[str, Any]) -> str:
    props = feature.get("properties")
    props = props if isinstance(props, Mapping) else {}
    cls = props.get("classification")
    name = cls.get("name") if isinstance(cls, Mapping) else cls
    kind = props.get("objectType", "feature")
    return f"feature {index + 1} ({kind}{f' {name!r}' if name else ''})"


def _polygons(geometry: Any) -> tuple[list[list[np.ndarray]], str | None]:
    """The polygons (lists of (N, 2) rings) of a geometry, or a reason it cannot be drawn."""
    if not isinstance(geometry, Mapping):
        return [], "has no geometry"
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        polygons: list[list[np.ndarray]] = []
        for member in geometry.get("geometries") or []:
            found, problem = _polygons(member)
            if problem is not None:
                return [], problem
            polygons += found
        return polygons, None
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        parts = [coords]
    elif kind == "MultiPolygon":
        parts = coords if isinstance(coords, list) else None
    else:
        return [], f"has a {kind} geometry (only Polygon and MultiPolygon are areas)"
    if not isinstance(parts, list):
        return [], f"has malformed {kind} coordinates"
    out = []
    for part in parts:
        rings = []
        for ring in part if isinstance(part, list) else [None]:
            xy = _ring_array(ring)
            if xy is None:
                return [], f"has malformed {kind} coordinates (a ring is not a list of [x, y])"
            if len(xy) >= 3:
                rings.append(xy)
        if rings:
            out.append(rings)
    return out, None


def _ring_array(ring: Any) -> np.ndarray | None:
    if not isinstance(ring, list) or not all(
        isinstance(p, list | tuple)
        and len(p) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p[:2])
        for p in ring
    ):
        return None
    xy = np.asarray([p[:2] for p in ring], dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        return None
    if len(xy) > 1 and (xy[0] == xy[-1]).all():
        xy = xy[:-1]  # closed as GeoJSON asks; an open ring is closed implicitly
    return xy


def rasterise_features(
    features: Iterable[Mapping[str, Any]],
    shape: tuple[int, int],
    *,
    offset_xy: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
) -> Rasterised:
    """Draw cell and nucleus features into a label mask.

    What a feature is: a ``nucleusGeometry`` makes its ``geometry`` a cell and the nucleus
    geometry a nucleus (QuPath's cells); otherwise our own ``metadata`` part, else the
    classification name (case-insensitive: ``Nucleus``/``Nuclei`` a nucleus, ``Cell``/
    ``Cytoplasm`` a cell), else ``objectType`` ``"cell"``: a cell without nucleus. Anything else
    (a "Tumor" region, a point, a line) is skipped and named in :attr:`Rasterised.skipped`.
    Cells are drawn as 1, nuclei as 2 on top, whatever the order of the features; a cell's
    holes stay 0 unless another feature covers them.

    Parameters
    ----------
    features
        GeoJSON Feature mappings (Polygon, MultiPolygon or a GeometryCollection of them).
    shape
        (H, W) of the mask.
    offset_xy, downsample
        As in :func:`mask_to_features`: pixel column = x / downsample - offset_x.
    """
    height, width = shape
    cell_px = np.zeros(shape, dtype=bool)
    nucleus_px = np.zeros(shape, dtype=bool)
    result = Rasterised(np.zeros(shape, dtype=np.uint8))
    shift = np.asarray(offset_xy, dtype=np.float64)

    def draw(geometry: Any, target: np.ndarray, where: str) -> str | None:
        polygons, problem = _polygons(geometry)
        if problem is not None:
            return problem
        drawn = False
        for rings in polygons:
            window = fill_window([r / downsample - shift for r in rings], (height, width))
            if window is not None:
                target[window[0]] |= window[1]
                drawn |= bool(window[1].any())
        return None if drawn else f"{where} covers no pixel of the {height} x {width} mask"

    for index, feature in enumerate(features):
        label = (
            _describe(index, feature) if isinstance(feature, Mapping) else f"feature {index + 1}"
        )
        if not isinstance(feature, Mapping):
            result.skipped.append(f"{label}: not a GeoJSON object; skipped")
            continue
        nucleus_geom = feature.get("nucleusGeometry")
        role = "cell" if nucleus_geom is not None else _role(feature)
        if role is None:
            result.skipped.append(
                f"{label}: not a cell or a nucleus (classify it Nucleus, Cytoplasm or Cell); "
                "skipped"
            )
            continue
        target = nucleus_px if role == "nucleus" else cell_px
        problem = draw(feature.get("geometry"), target, "its geometry")
        if problem is not None:
            result.skipped.append(f"{label}: {problem}; skipped")
            continue
        result.cells += role == "cell"
        result.nuclei += role == "nucleus"
        if nucleus_geom is not None:
            problem = draw(nucleus_geom, nucleus_px, "its nucleusGeometry")
            if problem is not None:
                result.skipped.append(f"{label}: {problem}; its nucleus skipped")
            else:
                result.nuclei += 1
    result.labels[cell_px] = CYTOPLASM
    result.labels[nucleus_px] = NUCLEUS
    return result


def features_to_mask(
    features: Iterable[Mapping[str, Any]],
    shape: tuple[int, int],
    *,
    offset_xy: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
) -> np.ndarray:
    """Label mask (uint8, 0/1/2) of cell and nucleus features; see :func:`rasterise_features`.

    Features that cannot be drawn are skipped with a logged warning each; use
    :func:`rasterise_features` to get them as a list.
    """
    result = rasterise_features(features, shape, offset_xy=offset_xy, downsample=downsample)
    for line in result.skipped:
        log.warning("%s", line)
    return result.labels
