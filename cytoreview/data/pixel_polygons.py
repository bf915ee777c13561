"""Polygons of binary pixel masks along pixel edges, and pixels of polygons (pure compute).

- **Outlines follow pixel edges.** A ring runs along the boundary between pixels, not through
  pixel centres, so a polygon's area is exactly its pixel count and a one-pixel-wide part still
  has an area. The rings come from :func:`cv2.findContours` on the mask enlarged twice (each
  pixel a 2 x 2 block): there every traced sub-pixel lies on the side of its pixel that borders
  the outside, so padded sub-pixel ``u`` maps to pixel edge ``u // 2`` (top/left sub-pixels to
  the pixel's top/left edge, bottom/right ones to its bottom/right edge). Points in the middle
  of straight runs are then dropped: the only simplification, and a lossless one.
- **Pixel frame.** The pixel at row ``r``, column ``c`` covers ``[c, c + 1] x [r, r + 1]`` (y
  pointing down), as in QuPath.
- **Orientation.** Exterior rings have a positive shoelace area on the numbers as written, holes
  a negative one (counter-clockwise / clockwise with y pointing up, as RFC 7946 asks).
- **Pinches.** Pixels touching only at a corner give a traced ring that visits that corner
  twice; it is split there into simple rings, each a polygon of its own (a self-touching ring
  is not a valid OGC ring).
- **Back to pixels.** A pixel belongs to a polygon when its centre lies inside (even-odd over
  the polygon's rings, so holes stay empty), as QuPath turns a region into a mask. Pixel
  centres never lie on pixel-edge outlines, so filling the traced polygons of a mask gives the
  mask back exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: A ring: (x, y) pixel-edge corners, not repeated at the end.
Ring = list[tuple[int, int]]


def _split_pinches(points: Ring) -> list[Ring]:
    """Split a closed ring (without repeated last point) at vertices it visits twice."""
    rings: list[Ring] = []
    path: Ring = []
    where: dict[tuple[int, int], int] = {}
    for point in points:
        if point in where:  # a loop closes here: cut it off as a ring of its own
            start = where[point]
            loop = path[start:]
            for p in loop[1:]:
                del where[p]
            del path[start + 1 :]
            rings.append(loop)
        else:
            where[point] = len(path)
            path.append(point)
    rings.append(path)
    return [r for r in rings if len(r) >= 3]


def _drop_collinear(ring: Ring) -> Ring:
    """Drop the points in the middle of straight runs (lossless)."""
    n = len(ring)
    keep = []
    for i, (x, y) in enumerate(ring):
        (xa, ya), (xb, yb) = ring[i - 1], ring[(i + 1) % n]
        if (x - xa) * (yb - y) - (y - ya) * (xb - x) != 0:
            keep.append((x, y))
    return keep


def signed_area(ring: Sequence[Sequence[float]]) -> float:
    """Shoelace area of a ring (positive: counter-clockwise with y pointing up)."""
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _oriented(ring: Ring, exterior: bool) -> Ring:
    return ring if (signed_area(ring) > 0) == exterior else ring[::-1]


def trace_polygons(binary: np.ndarray) -> list[tuple[Ring, list[Ring]]]:
    """Pixel-edge polygons of a binary mask (see the module notes).

    Parameters
    ----------
    binary
        (H, W) mask; anything non-zero is inside.

    Returns
    -------
    list of (exterior, holes)
        One entry per simple polygon, rings in the mask's pixel-edge frame, oriented as the
        module notes say.
    """
    up = np.pad(np.repeat(np.repeat(binary.astype(np.uint8), 2, 0), 2, 1), 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    links = hierarchy[0]

    def rings(index: int, exterior: bool) -> list[Ring]:
        # Padded sub-pixel u -> pixel edge u // 2 (see the module notes); drop repeats.
        pts = [(int(x) // 2, int(y) // 2) for x, y in contours[index][:, 0, :]]
        dedup = [p for i, p in enumerate(pts) if p != pts[i - 1]] if len(pts) > 1 else pts
        out = []
        for ring in _split_pinches(dedup):
            ring = _drop_collinear(ring)
            if len(ring) >= 3:
                out.append(_oriented(ring, exterior))
        return out

    polygons = []
    for index in range(len(contours)):
        if links[index][3] != -1:  # a hole: handled with its parent
            continue
        lobes = rings(index, exterior=True)
        holes: list[Ring] = []
        child = links[index][2]
        while child != -1:
            holes += rings(child, exterior=False)
            child = links[child][0]
        if len(lobes) == 1:
            polygons.append((lobes[0], holes))
            continue
        # A pinched outline: each hole goes to the lobe around it.
        assigned: list[list[Ring]] = [[] for _ in lobes]
        for hole in holes:
            probe = _interior_point(hole)
            inside = [_contains(lobe, probe) for lobe in lobes]
            assigned[inside.index(True) if True in inside else 0].append(hole)
        polygons += list(zip(lobes, assigned, strict=True))
    return polygons


def _interior_point(ring: Ring) -> tuple[float, float]:
    """A point just inside a hole ring: a quarter pixel off the middle of its first edge."""
    (x0, y0), (x1, y1) = ring[0], ring[1]
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
    # Holes are clockwise (y up): their inside is to the right of each edge.
    return mx + 0.25 * dy, my - 0.25 * dx


def _contains(ring: Sequence[Sequence[float]], point: tuple[float, float]) -> bool:
    """Even-odd point-in-ring test."""
    x, y = point
    inside = False
    n = len(ring)
    for i in range(n):
        (xa, ya), (xb, yb) = ring[i - 1], ring[i]
        if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
            inside = not inside
    return inside


def fill_polygon(rings: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (even-odd over its rings: holes stay out).

    Parameters
    ----------
    rings
        (N, 2) arrays of (x, y) in the mask's pixel-edge frame (pixel (r, c) covers
        [c, c + 1] x [r, r + 1]); closing the ring is implicit.
    shape
        (H, W) of the mask; the polygon is clipped to it.

    Returns
    -------
    numpy.ndarray
        (H, W) bool.
    """
    out = np.zeros(shape, dtype=bool)
    window = fill_window(rings, shape)
    if window is not None:
        out[window[0]] = window[1]
    return out


def fill_window(
    rings: Sequence[np.ndarray], shape: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """:func:`fill_polygon` within the polygon's bounding box: (window, its pixels), or None."""
    rings = [r for r in rings if len(r) >= 3]
    if not rings:
        return None
    height, width = shape
    a = np.concatenate(rings)
    b = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    # Rows whose centre r + 0.5 lies in [y_low, y_high): half-open, so a vertex counts once.
    y_low, y_high = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    first = np.clip(np.ceil(y_low - 0.5), 0, height).astype(np.int64)
    counts = np.clip(np.ceil(y_high - 0.5), 0, height).astype(np.int64) - first
    keep = counts > 0
    if not keep.any():
        return None
    a, b, first, counts = a[keep], b[keep], first[keep], counts[keep]
    edge = np.repeat(np.arange(len(a)), counts)
    rows = first[edge] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    (xa, ya), (xb, yb) = a[edge].T, b[edge].T
    xs = xa + (rows + 0.5 - ya) * (xb - xa) / (yb - ya)
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # Crossings pair up along each row (even-odd): fill from each odd one to the next.
    c0 = np.clip(np.ceil(xs[0::2] - 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(xs[1::2] - 0.5), 0, width).astype(np.int64)
    r = rows[0::2]
    r_min, r_max = int(r.min()), int(r.max()) + 1
    col_min, col_max = int(c0.min()), int(c1.max())
    if col_max <= col_min:
        return None
    counts2d = np.zeros((r_max - r_min, col_max - col_min + 1), dtype=np.int32)
    np.add.at(counts2d, (r - r_min, c0 - col_min), 1)
    np.add.at(counts2d, (r - r_min, c1 - col_min), -1)
    pixels = np.cumsum(counts2d, axis=1)[:, :-1] > 0
    return (slice(r_min, r_max), slice(col_min, col_max)), pixels
