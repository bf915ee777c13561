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
- **Valid polygons (OGC).** Each polygon is one 4-connected piece of the mask, so its interior
  is connected; pieces touching only at a corner are polygons of their own. Where an outline
  visits a corner twice (a hole closed by two pixels that touch at a corner), the ring is split
  there into simple rings, and a loop turning the other way is a hole touching the outline at
  that one point, which OGC allows. Checked with shapely's ``is_valid`` on 11 800 polygons of
  random and drawn masks: all valid.
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

    Each polygon is one 4-connected piece of the mask: pieces that touch only at a corner are
    polygons of their own, so that every polygon's interior is connected (an OGC rule; a
    polygon whose hole touches its outline at two corners is not one).

    Parameters
    ----------
    binary
        (H, W) mask; anything non-zero is inside.

    Returns
    -------
    list of (exterior, holes)
        One entry per polygon, rings in the mask's pixel-edge frame, oriented as the module
        notes say.
    """
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        (np.asarray(binary) != 0).astype(np.uint8), connectivity=4
    )
    polygons = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        for rings in _trace_piece(pieces[y : y + h, x : x + w] == k):
            exterior, *holes = [[(px + x, py + y) for px, py in ring] for ring in rings]
            polygons.append((exterior, holes))
    return polygons


def _trace_piece(piece: np.ndarray) -> list[list[Ring]]:
    """The polygon(s) of one 4-connected piece, each [outline, *holes], split at pinches."""
    up = np.pad(np.repeat(np.repeat(piece.astype(np.uint8), 2, 0), 2, 1), 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    exteriors: list[Ring] = []
    holes: list[Ring] = []
    for index, contour in enumerate(contours):
        # Padded sub-pixel u -> pixel edge u // 2 (see the module notes); drop repeats.
        pts = [(int(x) // 2, int(y) // 2) for x, y in contour[:, 0, :]]
        pts = [p for i, p in enumerate(pts) if p != pts[i - 1]] or pts[:1]
        loops = [r for r in map(_drop_collinear, _split_pinches(pts)) if len(r) >= 3]
        if not loops:
            continue
        # A pinch cuts a ring into loops; a loop turning the other way than the largest one
        # encloses the other side: a hole touching an outline at a corner, or the reverse.
        areas = [signed_area(r) for r in loops]
        reference = areas[int(np.argmax(np.abs(areas)))] > 0
        is_hole = hierarchy[0][index][3] != -1
        for loop, area in zip(loops, areas, strict=True):
            if ((area > 0) == reference) != is_hole:
                exteriors.append(_oriented(loop, exterior=True))
            else:
                holes.append(_oriented(loop, exterior=False))
    if len(exteriors) == 1:
        return [[exteriors[0], *holes]]
    # Each hole goes to the smallest outline around it.
    sizes = [abs(signed_area(r)) for r in exteriors]
    assigned: list[list[Ring]] = [[] for _ in exteriors]
    for hole in holes:
        probe = _interior_point(hole)
        around = [i for i, ring in enumerate(exteriors) if _contains(ring, probe)]
        assigned[min(around, key=sizes.__getitem__) if around else 0].append(hole)
    return [[ring, *inner] for ring, inner in zip(exteriors, assigned, strict=True)]


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
