"""Deterministic synthetic Pap-smear cells and fields with exact label masks.

The generator draws each cell as geometry first (a smooth cytoplasm outline and one or two
nuclei inside it), rasterises that geometry once into the label mask and renders the image
from the very same pixels, so masks are exact by construction. The image is formed like a
bright-field micrograph: stains add optical density (OD) and the light that passes is
``illumination * exp(-OD)``. Overlapping cytoplasm therefore looks darker, as in real smears.

Class morphology follows the Bethesda criteria in simplified form: the nucleus to cytoplasm
area ratio (N:C) and the nuclear darkness (hyperchromasia) rise from NILM to HSIL/SCC, the
nuclear contour gets more irregular and the chromatin coarser. Parameters are drawn within
each class so that neighbouring classes overlap a little.

Pure compute on arrays: no file access, no GUI.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cytoreview.data.synthetic_profiles import (
    _DEBRIS_OD,
    _NUC_OD,
    _STAINS,
    _Plan,
    _plan,
)
from cytoreview.types import CYTOPLASM, NUCLEUS, ClassScheme

SUPPORTED_CLASSES: tuple[str, ...] = ("NILM", "ASC-US", "ASC-H", "LSIL", "HSIL", "SCC")
_SCHEME = ClassScheme(SUPPORTED_CLASSES, frozenset({"NILM"}))  # for its loose name matching
#: Bethesda severity rank; a field is named after its most severe cell.
SEVERITY: dict[str, int] = {"NILM": 0, "ASC-US": 1, "LSIL": 2, "ASC-H": 3, "HSIL": 4, "SCC": 5}


@dataclass(frozen=True)
class CellRecord:
    """Ground truth of one cell in a sample.

    ``nucleus_area`` and ``cytoplasm_area`` count the mask pixels attributed to this cell
    (where cells overlap, the upper cell owns the cytoplasm pixels; every nucleus stays
    visible). ``hidden_area`` counts pixels inside this cell's outline owned by other cells.
    """

    label: str
    nucleus_area: int
    cytoplasm_area: int
    center: tuple[float, float]  # (row, col) of the cell outline's centre
    hidden_area: int = 0


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic image, its label mask and the cells drawn in it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8: 0 background, 1 cytoplasm, 2 nucleus
    label: str  # the class; for a field, its most severe cell's class
    kind: str  # "cell" or "field"
    cells: tuple[CellRecord, ...]


def resolve_class(name: str) -> str:
    """Return the canonical supported class name matching ``name`` loosely (``asc_us``).

    Raises
    ------
    UnknownClassError
        If ``name`` is not a supported class; the message lists the valid names.
    """
    return _SCHEME.resolve(str(name))


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --- Geometry ---------------------------------------------------------------------------------
def _radial(
    rng: np.random.Generator, aspect: float, irreg: float, harmonics: int = 7
) -> np.ndarray:
    """Smooth closed outline of mean radius ~1: an ellipse bent by random low harmonics."""
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    k = np.arange(2, harmonics + 1)[:, None]  # k=1 would only shift the shape
    amp = irreg * rng.normal(size=k.shape) / k  # 1/k: dents and lobes, not spikes
    r = 1 + (amp * np.cos(k * t + rng.uniform(0, 2 * np.pi, k.shape))).sum(0)
    r = np.clip(r, 0.55, 1.5)
    return np.stack([r * np.cos(t) * aspect**0.5, r * np.sin(t) / aspect**0.5], 1)


def _squame(rng: np.random.Generator, aspect: float) -> np.ndarray:
    """Polygonal squamous outline with rounded corners (Chaikin corner cutting)."""
    m = int(rng.integers(4, 8))
    ang = (np.arange(m) + rng.uniform(-0.3, 0.3, m)) * 2 * np.pi / m
    pts = np.stack([np.cos(ang), np.sin(ang)], 1) * rng.uniform(0.75, 1.2, (m, 1))
    for cut in (0.12, 0.25, 0.25):  # a small first cut keeps the corners fairly sharp
        nxt = np.roll(pts, -1, 0)
        pts = np.stack([(1 - cut) * pts + cut * nxt, cut * pts + (1 - cut) * nxt], 1)
        pts = pts.reshape(-1, 2)
    # Fine ragged edge, as thin squames fold and tear slightly.
    pts *= 1 + 0.012 * rng.standard_normal((len(pts), 1))
    return pts * [aspect**0.5, aspect**-0.5]


def _area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _axis_angle(pts: np.ndarray) -> float:
    """Angle of the long axis of a point cloud."""
    _, evecs = np.linalg.eigh(np.cov((pts - pts.mean(0)).T))
    return math.atan2(evecs[1, 1], evecs[0, 1])


def _cell_shape(rng: np.random.Generator, plan: _Plan) -> np.ndarray:
    """Cytoplasm outline of ``plan`` around (0, 0), at an arbitrary scale, randomly rotated."""
    if plan.style == "polygon":
        pts = _squame(rng, plan.aspect)
    else:
        pts = _radial(rng, plan.aspect, 0.06 if plan.style == "round" else 0.1, 5)
    return _rotate(pts, rng.uniform(0, np.pi))


def _raster(pts: np.ndarray, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    """Boolean mask of polygon ``pts`` (x, y in image pixels) inside the box at (x0, y0)."""
    m = np.zeros((h, w), np.uint8)
    p = np.round((pts - (x0, y0)) * 16).astype(np.int32)  # shift=4: sub-pixel vertices
    cv2.fillPoly(m, [p], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


# --- Rendering --------------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, h: int, w: int, feature_px: float) -> np.ndarray:
    """Zero-mean noise with features about ``feature_px`` wide (upsampled random grid)."""
    f = max(feature_px, 1.0)
    g = rng.standard_normal((int(h / f) + 2, int(w / f) + 2), dtype=np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _grain(rng: np.random.Generator, h: int, w: int, sigma_px: float) -> np.ndarray:
    """Unit-variance granular noise (blurred white noise): chromatin texture."""
    g = rng.standard_normal((h, w), dtype=np.float32)
    if sigma_px > 0.4:
        g = cv2.GaussianBlur(g, (0, 0), sigma_px)
    return g / (float(g.std()) + 1e-6)


class _Canvas:
    """Accumulates optical density and which cell owns each labelled pixel."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.od = np.zeros((h, w, 3), np.float32)
        self.cyto_owner = np.full((h, w), -1, np.int16)
        self.nuc_owner = np.full((h, w), -1, np.int16)
        self.footprint: list[int] = []

    def box(self, pts: np.ndarray, pad: int = 3) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(pts.min(0)).astype(int) - pad
        x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
        return max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)


def _draw_cell(cv: _Canvas, rng: np.random.Generator, plan: _Plan, pts: np.ndarray,
               centre: np.ndarray, s: float) -> None:  # fmt: skip
    """Draw one cell: ``pts`` is its outline in pixels around 0, ``s`` pixels per micrometre."""
    pts = pts + centre
    x0, y0, x1, y1 = cv.box(pts)
    h, w = y1 - y0, x1 - x0
    cm = _raster(pts, x0, y0, h, w) if h > 0 and w > 0 else np.zeros((0, 0), bool)
    cv.footprint.append(int(cm.sum()))
    if not cm.any():
        return
    dist = cv2.distanceTransform(cm.astype(np.uint8), cv2.DIST_L2, 3)
    # Cytoplasm: mottled stain, condensed at the rim, sometimes folded.
    dens = plan.density * (1 + 0.2 * _smooth(rng, h, w, 4 * s) + 0.08 * _smooth(rng, h, w, s))
    dens += 0.3 * np.exp(-dist / (0.6 * s + 0.7))
    if plan.style == "polygon" and rng.random() < 0.6:
        folds = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 3))):
            a, b = pts[rng.choice(len(pts), 2, replace=False)] - (x0, y0)
            cv2.line(folds, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)),
                     float(rng.uniform(0.3, 0.7)), max(1, round(0.5 * s)))  # fmt: skip
        dens += cv2.GaussianBlur(folds, (0, 0), 0.5 + 0.2 * s)
    # Nuclei: area from the target N:C, placed off-centre but well inside the cell.
    cell_area = _area(pts)
    n_area = plan.nc / (1 + plan.nc) * cell_area / plan.nuclei
    angle = rng.uniform(0, np.pi)
    if plan.style == "spindle":  # a spindle cell's nucleus lies along the cell's long axis
        angle = _axis_angle(pts) + rng.normal(0, 0.1)
    nuc = _rotate(_radial(rng, plan.nuc_aspect, plan.nuc_irreg, 8), angle)
    nuc *= math.sqrt(n_area / _area(nuc))
    r_cell = float(np.linalg.norm(pts - centre, axis=1).min())
    r_nuc = float(np.linalg.norm(nuc, axis=1).max())
    slack = max(r_cell - r_nuc * (2 if plan.nuclei > 1 else 1), 0.0)
    nc_centre = centre + rng.normal(0, 0.25 * slack, 2).clip(-0.5 * slack, 0.5 * slack)
    step = np.array([math.cos(a := rng.uniform(0, np.pi)), math.sin(a)]) * r_nuc * 1.05
    centres = [nc_centre] if plan.nuclei == 1 else [nc_centre - step, nc_centre + step]
    nm = np.zeros((h, w), bool)
    for c in centres:
        nm |= _raster(nuc + c, x0, y0, h, w)
    # Keep a cytoplasm rim of at least one pixel (8-connected) around every nucleus pixel.
    nm &= dist > max(1.5, 0.03 * r_cell)
    if not nm.any() and dist.max() > 1.5:  # a tiny cell: the nucleus shrinks to one pixel
        nm.flat[int(np.argmax(dist))] = True
    if plan.halo:  # koilocyte: clear perinuclear cavity with a condensed margin
        hm = np.zeros((h, w), bool)
        f = rng.uniform(1.7, 2.3)
        for c in centres:
            hm |= _raster(nuc * f + c, x0, y0, h, w)
        hm &= cm & ~nm
        dh = cv2.distanceTransform((~hm).astype(np.uint8), cv2.DIST_L2, 3)
        dens = np.where(hm, 0.4 * dens, dens + 0.4 * np.exp(-dh / (0.5 * s + 0.7)))
    od = cv.od[y0:y1, x0:x1]
    dens[nm] *= 0.5  # the nucleus displaces cytoplasm: keeps its own violet hue
    # A slightly soft outline: real cell borders are not cut with scissors.
    alpha = cv2.GaussianBlur(cm.astype(np.float32), (0, 0), 0.5)
    od += (dens * alpha)[..., None] * plan.stain * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    # Chromatin: granules (coarser and stronger in high grade), soft blotches, thin membrane.
    dn = cv2.distanceTransform(nm.astype(np.uint8), cv2.DIST_L2, 3)
    chrom = (
        1 + plan.grain_amp * _grain(rng, h, w, plan.grain_um * s) + 0.1 * _smooth(rng, h, w, 2 * s)
    )
    chrom = np.clip(chrom, 0.3, None) + 0.35 * np.exp(-dn / (0.4 * s + 0.6))
    tint = _NUC_OD * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    od += (plan.dark * chrom * nm)[..., None] * tint
    cv.cyto_owner[y0:y1, x0:x1][cm] = len(cv.footprint) - 1
    cv.nuc_owner[y0:y1, x0:x1][nm] = len(cv.footprint) - 1


def _distractors(cv: _Canvas, rng: np.random.Generator, s: float) -> None:
    """Add unlabelled clutter: out-of-focus cells, inflammatory cells and debris."""
    area_um = cv.h * cv.w / s**2
    for _ in range(rng.poisson(area_um / 20000 * rng.uniform(0, 2))):  # out-of-focus cells
        r, cx, cy = rng.uniform(8, 20) * s, rng.uniform(0, cv.w), rng.uniform(0, cv.h)
        sig = rng.uniform(0.15, 0.3) * r
        x0, y0, x1, y1 = cv.box(np.array([[cx - r, cy - r], [cx + r, cy + r]]), int(3 * sig))
        blob = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.float32)
        axes = (round(r), round(r * rng.uniform(0.6, 1)))
        cv2.ellipse(blob, (round(cx - x0), round(cy - y0)), axes, rng.uniform(0, 180), 0, 360,
                    float(rng.uniform(0.2, 0.45)), -1)  # fmt: skip
        blob = cv2.GaussianBlur(blob, (0, 0), sig)[: y1 - y0, : x1 - x0]
        cv.od[y0:y1, x0:x1] += blob[..., None] * _STAINS[rng.choice(["cyan", "pink"])]
    local = np.zeros((cv.h, cv.w), np.float32)
    for _ in range(rng.poisson(area_um / 4000 * rng.uniform(0, 2.5))):  # neutrophils
        cx, cy = rng.uniform(0, cv.w), rng.uniform(0, cv.h)
        cv2.circle(local, (round(cx), round(cy)), max(1, round(5 * s)), 0.08, -1)
        for _ in range(int(rng.integers(2, 5))):  # multi-lobed nucleus
            dx, dy = rng.normal(0, 1.6 * s, 2)
            ax = [max(1, round(v * s)) for v in (rng.uniform(1.1, 1.8), rng.uniform(0.9, 1.4))]
            centre = (round(cx + dx), round(cy + dy))
            cv2.ellipse(local, centre, ax, rng.uniform(0, 180), 0, 360, 1.6, -1)
    for _ in range(rng.poisson(area_um / 30000 * rng.uniform(0, 2))):  # lymphocytes
        cx, cy = rng.uniform(0, cv.w), rng.uniform(0, cv.h)
        cv2.circle(local, (round(cx), round(cy)), max(1, round(rng.uniform(2.5, 3.5) * s)), 1.4, -1)
    if local.any():
        local = cv2.GaussianBlur(local, (0, 0), 0.3 * s + 0.3)
        cv.od += np.minimum(local, 2.2)[..., None] * _NUC_OD
    specks = np.zeros((cv.h, cv.w), np.float32)
    for _ in range(rng.poisson(area_um / 3000 * rng.uniform(0, 2))):  # debris, bacteria clumps
        x, y = int(rng.integers(0, cv.w)), int(rng.integers(0, cv.h))
        cv2.circle(specks, (x, y), round(rng.uniform(0.2, 1.0) * s), rng.uniform(0.3, 1.2), -1)
    if specks.any():
        cv.od += cv2.GaussianBlur(specks, (0, 0), 0.5)[..., None] * _DEBRIS_OD


def _compose(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Light through the stains: off-white uneven illumination, blur, sensor noise, JPEG."""
    h, w = cv.h, cv.w
    base = rng.uniform(224, 246) + rng.normal(0, 2.5, 3).astype(np.float32)
    # grey-blue, warm, pinkish or lavender tint
    tints = np.array([[-7, -3, 0], [0, -2, -5], [0, -5, -2], [-3, -5, 0]], np.float32)
    base += tints[rng.integers(len(tints))]
    n = float(max(h, w))
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / n * 2
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / n * 2
    cy, cx = rng.uniform(-0.5, 0.5, 2)
    light = (1 - rng.uniform(0.02, 0.08) * ((yy - cy) ** 2 + (xx - cx) ** 2)) * (
        1 + rng.uniform(-0.04, 0.04) * yy + rng.uniform(-0.04, 0.04) * xx
    )
    # Faint mucus / plasma haze in the background.
    haze = np.clip(_smooth(rng, h, w, n / 4), 0, None) * rng.uniform(0, 0.04)
    od = cv.od + haze[..., None] * _STAINS["blue"]
    img = light[..., None] * base * np.exp(-od)
    if rng.random() < 0.6:  # slightly out of focus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * rng.uniform(1, 3.5)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # compression artefacts, as in scanner exports
        q = int(rng.integers(60, 96))
        _, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return img


def _finish(
    cv: _Canvas, rng: np.random.Generator, labels: list[str], centres: list, kind: str
) -> SyntheticSample:
    """Render the image, build the mask and count each cell's visible pixels."""
    img = _compose(cv, rng)
    mask = np.zeros((cv.h, cv.w), np.uint8)
    mask[cv.cyto_owner >= 0] = CYTOPLASM
    mask[cv.nuc_owner >= 0] = NUCLEUS
    k = len(labels)
    nuc = np.bincount(cv.nuc_owner[cv.nuc_owner >= 0], minlength=k)
    cyto = np.bincount(cv.cyto_owner[mask == CYTOPLASM], minlength=k)
    cells = tuple(
        CellRecord(lab, int(n), int(c), (float(xy[1]), float(xy[0])), int(cv.footprint[i] - n - c))
        for i, (lab, n, c, xy) in enumerate(zip(labels, nuc, cyto, centres, strict=True))
    )
    worst = max(labels, key=SEVERITY.__getitem__) if labels else "NILM"
    return SyntheticSample(img, mask, worst, kind, cells)


def _shape_size(size: int | tuple[int, int] | None, rng: np.random.Generator) -> tuple[int, int]:
    if size is None:
        side = int(rng.integers(64, 193))
        return side, side
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    if int(h) < 16 or int(w) < 16:
        raise ValueError(f"image size must be at least 16x16 pixels, got {h}x{w}")
    return int(h), int(w)


# --- Public API -------------------------------------------------------------------------------
def synth_cell(
    label: str, seed: int | np.random.Generator, size: int | tuple[int, int] | None = None
) -> SyntheticSample:
    """Generate one roughly centred Pap cell of class ``label`` with its exact mask.

    Parameters
    ----------
    label
        A class of :data:`SUPPORTED_CLASSES` (loose spelling accepted: ``"asc_us"``).
    seed
        Integer seed (same seed, byte-identical output) or a generator to draw from.
    size
        Crop side, ``(height, width)``, or ``None`` for a random square side in 64..192.

    Returns
    -------
    SyntheticSample
        ``kind == "cell"``, one :class:`CellRecord`. The cell covers about 40-70 % of the
        crop and may touch the border.

    Raises
    ------
    UnknownClassError
        If ``label`` is not supported.
    """
    label = resolve_class(label)
    rng = _rng(seed)
    h, w = _shape_size(size, rng)
    plan = _plan(label, rng)
    pts = _cell_shape(rng, plan)
    if max(h, w) > 1.2 * min(h, w):  # a long crop holds a long cell: align their axes
        pts = _rotate(pts, (0 if w > h else np.pi / 2) - _axis_angle(pts) + rng.normal(0, 0.15))
    k = math.sqrt(rng.uniform(0.42, 0.75) * h * w / _area(pts))
    ext = pts.max(0) - pts.min(0)
    pts *= min(k, 0.98 * w / ext[0], 0.98 * h / ext[1])  # long cells may still touch the border
    s = math.sqrt(_area(pts) / (math.pi / 4 * plan.diam_um**2))
    centre = np.array([w, h]) * (0.5 + rng.normal(0, 0.05, 2).clip(-0.12, 0.12))
    cv = _Canvas(h, w)
    _distractors(cv, rng, s)
    _draw_cell(cv, rng, plan, pts, centre, s)
    return _finish(cv, rng, [label], [centre], "cell")


def synth_field(
    labels: Sequence[str], seed: int | np.random.Generator, size: tuple[int, int] = (512, 512)
) -> SyntheticSample:
    """Generate a field of view with one cell per entry of ``labels``, some overlapping.

    Cells are painted in the given order (later cells lie on top). The mask shows the union:
    the upper cell's cytoplasm covers the lower one's, every nucleus stays labelled nucleus.

    Parameters
    ----------
    labels
        Class of each cell; the sample's label is the most severe of them.
    seed
        Integer seed or a generator.
    size
        ``(height, width)`` of the field; cells keep their size relative to a 512 px side.

    Returns
    -------
    SyntheticSample
        ``kind == "field"``, one :class:`CellRecord` per label, in painting order.

    Raises
    ------
    UnknownClassError
        If a label is not supported.
    ValueError
        If ``labels`` is empty or the size is below 16 pixels.
    """
    names = [resolve_class(lab) for lab in labels]
    if not names:
        raise ValueError("a field needs at least one cell label")
    rng = _rng(seed)
    h, w = _shape_size(size, rng)
    s = max(min(h, w) / 512 * rng.uniform(2.6, 3.4), 0.8)  # even tiny fields: cells >= 10 px
    plans = [_plan(lab, rng) for lab in names]
    shapes = []
    for p in plans:
        pts = _cell_shape(rng, p)
        shapes.append(pts * math.sqrt(math.pi / 4 * (p.diam_um * s) ** 2 / _area(pts)))
    radii = [float(np.linalg.norm(p, axis=1).mean()) for p in shapes]
    lo, hi = 0.15 * np.array([w, h]), 0.85 * np.array([w, h])
    centres: list[np.ndarray] = []
    for r in radii:
        for _ in range(12):  # cluster cells so that some overlap, but keep nuclei mostly apart
            c = rng.uniform(lo, hi)
            if centres and rng.random() < 0.6:  # next to an earlier cell
                i, a = int(rng.integers(len(centres))), rng.uniform(0, 2 * np.pi)
                d = rng.uniform(0.55, 1.0) * (r + radii[i])
                c = np.clip(centres[i] + d * np.array([math.cos(a), math.sin(a)]), lo, hi)
            if all(np.linalg.norm(c - d) > 0.45 * (r + radii[i]) for i, d in enumerate(centres)):
                break
        centres.append(c)
    cv = _Canvas(h, w)
    _distractors(cv, rng, s)
    for p, pts, c in zip(plans, shapes, centres, strict=True):
        _draw_cell(cv, rng, p, pts, c, s)
    return _finish(cv, rng, names, centres, "field")


def synth_dataset(
    n: int,
    seed: int = 0,
    classes: Sequence[str] = ("NILM", "ASC-US", "LSIL", "HSIL"),
    field_fraction: float = 0.0,
    size_range: tuple[int, int] = (64, 192),
) -> Iterator[tuple[str, SyntheticSample]]:
    """Make ``n`` named samples lazily, classes balanced round-robin.

    Sample ``i`` depends only on ``(seed, i)``, so the first ``k`` samples are the same for
    any ``n >= k``. Names are ``syn_0001_nilm``, ``syn_0002_asc_us``... (1-based, zero-padded
    to four digits, more when ``n`` needs them: unique and sortable).

    Parameters
    ----------
    n
        Number of samples.
    seed
        Dataset seed (non-negative).
    classes
        Classes to cycle through.
    field_fraction
        Probability that a sample is a multi-cell field instead of a single-cell crop. A field
        of class C holds one or two C cells among NILM cells, so C is its most severe class.
    size_range
        Inclusive range of the square crop side; fields use a side of
        ``clip(2 * size_range[1], 128, 512)``.

    Returns
    -------
    Iterator of (str, SyntheticSample)
        ``(name, sample)`` pairs in index order.

    Raises
    ------
    UnknownClassError
        If a class is not supported (raised at call time, not at the first sample).
    ValueError
        If ``n``, ``field_fraction`` or ``size_range`` is out of range.
    """
    names = [resolve_class(c) for c in classes]
    lo, hi = size_range
    if not names or n < 0 or not 0 <= field_fraction <= 1 or not 16 <= lo <= hi:
        raise ValueError("need classes, n >= 0, 0 <= field_fraction <= 1 and 16 <= lo <= hi")
    # Validation above runs at call time; the samples are made lazily.
    return _dataset(n, seed, names, field_fraction, lo, hi)


def _dataset(
    n: int, seed: int, names: list[str], field_fraction: float, lo: int, hi: int
) -> Iterator[tuple[str, SyntheticSample]]:
    width = max(4, len(str(n)))
    field_side = int(np.clip(2 * hi, 128, 512))
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        cls = names[i % len(names)]
        if rng.random() < field_fraction:
            extra = [cls] * int(rng.integers(1, 3)) if cls != "NILM" else []
            cells = extra + ["NILM"] * int(rng.integers(2, 5))
            order = rng.permutation(len(cells))
            sample = synth_field([cells[j] for j in order], rng, (field_side, field_side))
        else:
            sample = synth_cell(cls, rng, int(rng.integers(lo, hi + 1)))
        yield f"syn_{i + 1:0{width}d}_{cls.lower().replace('-', '_')}", sample
