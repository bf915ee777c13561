"""Relevance grouping: an explanation heatmap into background / cytoplasm / nucleus.

Sritharan et al. (XAI-driven weakly supervised segmentation of cervical cells, section III-E)
group the relevance of each pixel to the classifier's decision into three groups, because
the nucleus and the cytoplasm are what the classifier looks at: the **highest** relevance is
the nucleus, the middle group the cytoplasm, the lowest the background ("pixels that exceeded
a high threshold were marked ... as part of the nucleus, those above a lower threshold but
below the high threshold were identified as cytoplasm"; Grad-CAM++ maps show "the highest
values within the nucleus and slightly lower values within the cytoplasm"). They compare four
groupings, all here, one function each, and :func:`group_relevance` dispatches by name:

``two-threshold``
    Fixed thresholds on the normalised relevance. The paper sets them by hand per image and
    gives no values, so ``low`` and ``high`` are parameters; their defaults split the
    normalised range in equal thirds (1/3, 2/3).
``gmm``
    A three-component 1-D Gaussian mixture fitted by expectation-maximisation. scikit-learn is
    not a dependency, so this is a small deterministic EM (:func:`fit_gmm`): it starts from
    the inter-means groups (as scikit-learn starts from k-means), the variance of each
    component has a floor, and it stops when the mean log-likelihood gains less than ``tol``.
    Each value goes to the more probable of its two neighbouring components, which keeps the
    labels monotone (see :func:`gmm_grouping`).
``kmeans``
    k-means with k = 3 by OpenCV (``cv2.kmeans``, k-means++ seeding, 10 attempts, the most
    compact kept) under a fixed RNG seed, so the same heatmap always gives the same groups.
``inter-means``
    The paper's iterative rule (:func:`inter_means_thresholds`): thresholds start at the 1st
    and 3rd quartiles; the three groups' means are taken; the new thresholds are the midpoints
    of consecutive means; repeat until the thresholds stop moving. In one dimension this is
    Lloyd's k-means iteration started from the quartiles (Ridler and Calvard's isodata rule
    with three classes): a single run from one fixed start, where ``kmeans`` keeps the most
    compact of ten seeded starts, so the two can differ.

Normalisation (:func:`normalise_relevance`) follows the paper's Grad-CAM++ equation 6,
``ReLU(map) / max(map)``: negative values are clipped to 0 (negative LRP relevance is evidence
*against* the class, not part of the cell), then divided by the maximum, so the result lies
in [0, 1] whatever the explanation's own range. Non-finite values (NaN, inf) count as no
relevance (0). Algorithm 2's logarithmic scaling of LRP relevance (equation 8, scale factor
1000) is :func:`log_scale`, applied after normalisation when ``log_scale`` is given.

Labelling convention, the same for every method: ``label = (r > t1) + (r > t2)`` with
``t1 <= t2``, so labels never decrease as relevance rises. A map with no contrast (empty,
all NaN, all non-positive, or constant) has nothing to group: it is all background, with no
thresholds. A map with only two distinct values gives background and nucleus with the
fitted methods (both thresholds at the midpoint between the two values).

Pure NumPy and OpenCV: no torch, no file access.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "METHODS",
    "Grouping",
    "fit_gmm",
    "gmm_grouping",
    "group_relevance",
    "inter_means_grouping",
    "inter_means_thresholds",
    "kmeans_grouping",
    "labels_from_thresholds",
    "log_scale",
    "normalise_relevance",
    "two_threshold_grouping",
]

#: Grouping methods, in the order the paper presents them.
METHODS: tuple[str, ...] = ("two-threshold", "gmm", "kmeans", "inter-means")
#: Default fixed thresholds of ``two-threshold``: equal thirds of the normalised range (the
#: paper chose its thresholds by hand and does not give them).
DEFAULT_LOW, DEFAULT_HIGH = 1 / 3, 2 / 3
#: The paper's scale factor for logarithmic scaling of LRP relevance (equation 8).
LOG_SCALE_FACTOR = 1000.0
#: Fixed seed for the randomised k-means++ start: the same map always gives the same groups.
KMEANS_SEED = 0
#: Variance floor of a mixture component on the normalised [0, 1] scale (as scikit-learn's
#: ``reg_covar``): a component on a single repeated value would otherwise collapse to zero
#: variance and infinite likelihood.
_VAR_FLOOR = 1e-6


@dataclass(frozen=True)
class Grouping:
    """Three groups of a relevance map.

    Attributes
    ----------
    labels
        ``(H, W)`` uint8: 0 background, 1 cytoplasm, 2 nucleus.
    thresholds
        ``(t1, t2)`` on the scale the grouping ran on (normalised, then log-scaled if asked):
        cytoplasm is ``t1 < r <= t2``, nucleus ``r > t2``. ``None`` when the map had no
        contrast (all background).
    method
        The grouping method's name (one of :data:`METHODS`).
    iterations
        Updates an iterative method made (inter-means threshold updates, EM steps); 0 for
        two-threshold, for k-means (OpenCV does not report it) and for a map with no contrast.
    converged
        False only when an iterative method stopped at its iteration cap.
    """

    labels: np.ndarray
    thresholds: tuple[float, float] | None
    method: str
    iterations: int = 0
    converged: bool = True


# --- Scaling ----------------------------------------------------------------------------------
def normalise_relevance(heatmap: np.ndarray) -> np.ndarray | None:
    """Relevance as float64 in [0, 1]: negatives clipped to 0, divided by the maximum.

    Parameters
    ----------
    heatmap
        A 2-D array of any real dtype and range (Grad-CAM++ map, LRP relevance summed over
        colour channels, ...). NaN and infinite values count as 0.

    Returns
    -------
    numpy.ndarray or None
        The normalised map (the paper's ``ReLU(map) / max(map)``), or ``None`` when there is
        nothing to group: an empty map, no positive value, or a constant map.

    Raises
    ------
    ValueError
        If ``heatmap`` is not 2-D.
    """
    values = np.asarray(heatmap)
    if values.ndim != 2:
        raise ValueError(f"a relevance map must be 2-D, got shape {values.shape}")
    if values.size == 0:
        return None
    values = values.astype(np.float64, copy=True)
    values[~np.isfinite(values)] = 0.0
    np.maximum(values, 0.0, out=values)
    top = float(values.max())
    if top <= 0.0 or float(values.min()) == top:
        return None
    return values / top


def log_scale(relevance: np.ndarray, scale: float = LOG_SCALE_FACTOR) -> np.ndarray:
    """The paper's logarithmic scaling of relevance (equation 8): ``ln(r s + 1) / ln(s)``.

    LRP concentrates its relevance on the nucleus, so strongly that a three-group clustering
    cannot separate cytoplasm from background; the logarithm compresses the large values more
    than the small ones (Algorithm 2, step 6). ``relevance`` should be normalised to [0, 1]
    first; the result then lies in [0, ln(s + 1) / ln(s)] (just above 1).

    Raises
    ------
    ValueError
        If ``scale`` is not greater than 1.
    """
    if not scale > 1.0:
        raise ValueError(f"the log scale factor must be > 1, got {scale}")
    return np.log1p(np.asarray(relevance, dtype=np.float64) * scale) / math.log(scale)


def labels_from_thresholds(values: np.ndarray, t1: float, t2: float) -> np.ndarray:
    """0 where ``values <= t1``, 1 where ``t1 < values <= t2``, 2 above ``t2`` (uint8)."""
    return ((values > t1).astype(np.uint8) + (values > t2).astype(np.uint8)).astype(np.uint8)


# --- Two thresholds ---------------------------------------------------------------------------
def two_threshold_grouping(
    values: np.ndarray, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH
) -> Grouping:
    """Fixed thresholds: background ``<= low`` < cytoplasm ``<= high`` < nucleus.

    Parameters
    ----------
    values
        Normalised relevance (see :func:`normalise_relevance`).
    low, high
        The thresholds on that scale, ``low <= high``.

    Raises
    ------
    ValueError
        If ``low > high``.
    """
    if low > high:
        raise ValueError(f"the low threshold {low} is above the high one {high}")
    return Grouping(labels_from_thresholds(values, low, high), (float(low), float(high)),
                    "two-threshold")  # fmt: skip


# --- Inter-means ------------------------------------------------------------------------------
def _group_means(values: np.ndarray, t1: float, t2: float) -> tuple[float, float, float]:
    """Mean of each group; an empty group's mean is the middle of its interval."""
    lo, hi = float(values.min()), float(values.max())
    bounds = ((lo, t1), (t1, t2), (t2, hi))
    masks = (values <= t1, (values > t1) & (values <= t2), values > t2)
    means = []
    for mask, (a, b) in zip(masks, bounds, strict=True):
        # An empty group (e.g. the quartiles coincide because over half the map is 0) has no
        # mean; the middle of its interval lets the thresholds move apart again.
        means.append(float(values[mask].mean()) if mask.any() else 0.5 * (a + b))
    return means[0], means[1], means[2]


def inter_means_thresholds(
    values: np.ndarray, *, tol: float = 1e-9, max_iter: int = 100
) -> tuple[float, float, int, bool]:
    """The paper's iterative inter-means thresholds.

    Start at the 1st and 3rd quartiles (linear interpolation between order statistics,
    NumPy's default); split the values into ``<= t1``, ``(t1, t2]`` and ``> t2``; take the
    three means; the new thresholds are ``(m1 + m2) / 2`` and ``(m2 + m3) / 2``. Stop when
    neither threshold moves by more than ``tol``, or after ``max_iter`` updates.

    Returns
    -------
    tuple
        ``(t1, t2, iterations, converged)``: the thresholds, the number of updates made (the
        last one moved them by at most ``tol``), and whether they settled before the cap.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    t1, t2 = (float(q) for q in np.percentile(flat, [25.0, 75.0]))
    for iteration in range(1, max_iter + 1):
        m1, m2, m3 = _group_means(flat, t1, t2)
        n1, n2 = 0.5 * (m1 + m2), 0.5 * (m2 + m3)
        moved = max(abs(n1 - t1), abs(n2 - t2))
        t1, t2 = n1, n2
        if moved <= tol:
            return t1, t2, iteration, True
    return t1, t2, max_iter, False


def inter_means_grouping(values: np.ndarray, *, tol: float = 1e-9, max_iter: int = 100) -> Grouping:
    """Groups by :func:`inter_means_thresholds`."""
    t1, t2, iterations, converged = inter_means_thresholds(values, tol=tol, max_iter=max_iter)
    return Grouping(labels_from_thresholds(values, t1, t2), (t1, t2), "inter-means",
                    iterations, converged)  # fmt: skip


# --- Gaussian mixture -------------------------------------------------------------------------
def _log_density(x: np.ndarray, weight: float, mean: float, var: float) -> np.ndarray:
    """``log(weight * N(x; mean, var))``."""
    return (
        math.log(max(weight, 1e-300))
        - 0.5 * math.log(2 * math.pi * var)
        - 0.5 * (x - mean) ** 2 / var
    )


def fit_gmm(
    values: np.ndarray, *, tol: float = 1e-7, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Fit a three-component 1-D Gaussian mixture by EM, deterministically.

    Start from the inter-means groups (their weights, means and variances), as scikit-learn
    starts its mixtures from k-means: a start at fixed quantiles puts two components on the
    largest group when the groups are unequal (a small nucleus) and EM then never finds the
    third. EM runs on the distinct values weighted by their counts (the same fit as on every
    pixel, faster on quantised maps) and stops when the mean log-likelihood per pixel rises
    by less than ``tol``.

    Returns
    -------
    tuple
        ``(weights, means, variances, iterations, converged)``, components sorted by mean.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    x, counts = np.unique(flat, return_counts=True)
    c = counts.astype(np.float64)
    n = float(c.sum())
    t1, t2, _, _ = inter_means_thresholds(flat)
    groups = labels_from_thresholds(x, t1, t2)
    weights, means, var = np.empty(3), np.empty(3), np.empty(3)
    for k, fallback in enumerate(np.quantile(flat, [1 / 6, 1 / 2, 5 / 6])):
        mass = c[groups == k].sum()
        weights[k] = max(mass / n, 1e-3)  # an empty group still gets a small component
        means[k] = (c * x)[groups == k].sum() / mass if mass else fallback
        var[k] = (c * (x - means[k]) ** 2)[groups == k].sum() / mass if mass else 0.0
    weights /= weights.sum()
    var = np.maximum(var, _VAR_FLOOR)
    previous = -np.inf
    iteration, converged = 0, False
    for iteration in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        # E step in log space: no underflow for values far from a narrow component.
        log_p = np.stack([_log_density(x, *p) for p in zip(weights, means, var, strict=True)], 1)
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_p - top).sum(axis=1))
        resp = np.exp(log_p - log_norm[:, None]) * c[:, None]
        likelihood = float((log_norm * c).sum() / n)
        # M step.
        mass = resp.sum(axis=0) + 1e-300  # a component may lose every point
        weights = mass / n
        means = (resp * x[:, None]).sum(axis=0) / mass
        var = np.maximum((resp * (x[:, None] - means[None, :]) ** 2).sum(axis=0) / mass, _VAR_FLOOR)
        if likelihood - previous < tol:
            converged = True
            break
        previous = likelihood
    order = np.argsort(means, kind="stable")
    return weights[order], means[order], var[order], iteration, converged


def _crossing(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Where component ``b`` (higher mean) overtakes ``a``, between their means.

    ``a`` and ``b`` are ``(weight, mean, variance)``. The first point from ``a``'s mean on
    where ``b`` is the more probable, to 1/4096 of the gap and then linearly interpolated;
    ``b``'s mean if ``a`` wins all the way, ``a``'s mean if ``b`` does.
    """
    grid = np.linspace(a[1], b[1], 4097)
    diff = _log_density(grid, *b) - _log_density(grid, *a)
    above = np.flatnonzero(diff > 0)
    if len(above) == 0:
        return float(b[1])
    i = int(above[0])
    if i == 0:
        return float(a[1])
    # diff[i - 1] <= 0 < diff[i]: interpolate the zero.
    f = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(grid[i - 1] + f * (grid[i] - grid[i - 1]))


def gmm_grouping(values: np.ndarray, *, tol: float = 1e-7, max_iter: int = 200) -> Grouping:
    """Groups by a three-component Gaussian mixture (:func:`fit_gmm`).

    A pixel goes to the more probable of the two components (ordered by mean) whose means
    its value lies between: the thresholds are where the next component overtakes the one
    below, between their means. This is the most-probable-component rule wherever the
    components are ordered; unlike a bare argmax over all three it never gives a lower label
    to a higher relevance (a broad component can win again in the far tail beyond a narrow
    one). If the crossings come out of order, both thresholds are the lower one (the middle
    component never wins: no cytoplasm).
    """
    weights, means, var, iterations, converged = fit_gmm(values, tol=tol, max_iter=max_iter)
    parts = list(zip(weights.tolist(), means.tolist(), var.tolist(), strict=True))
    t1, t2 = _crossing(parts[0], parts[1]), _crossing(parts[1], parts[2])
    t1 = min(t1, t2)
    return Grouping(labels_from_thresholds(values, t1, t2), (t1, t2), "gmm", iterations,
                    converged)  # fmt: skip


# --- k-means ----------------------------------------------------------------------------------
def kmeans_grouping(values: np.ndarray, *, attempts: int = 10, seed: int = KMEANS_SEED) -> Grouping:
    """Groups by k-means with k = 3 (OpenCV, k-means++ seeding, best of ``attempts``).

    OpenCV's k-means draws its k-means++ starts from the calling thread's RNG, which is
    reseeded with ``seed`` first: the same map always gives the same groups. In one dimension
    each value goes to its nearest centre, so the groups are bounded by the midpoints between
    consecutive sorted centres; those are the thresholds.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1, 1)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-7)
    _, _, centres = cv2.kmeans(flat, 3, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
    c = np.sort(centres.ravel().astype(np.float64))
    t1, t2 = 0.5 * float(c[0] + c[1]), 0.5 * float(c[1] + c[2])
    return Grouping(labels_from_thresholds(values, t1, t2), (t1, t2), "kmeans")


# --- Dispatcher -------------------------------------------------------------------------------
_FITTED: dict[str, Callable[[np.ndarray], Grouping]] = {
    "gmm": gmm_grouping,
    "kmeans": kmeans_grouping,
    "inter-means": inter_means_grouping,
}


def group_relevance(
    heatmap: np.ndarray,
    method: str = "inter-means",
    *,
    log_scale_factor: float | None = None,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
) -> Grouping:
    """Group a relevance map into 0 background / 1 cytoplasm / 2 nucleus.

    Parameters
    ----------
    heatmap
        2-D relevance of any real range; normalised by :func:`normalise_relevance`.
    method
        One of :data:`METHODS`.
    log_scale_factor
        If given, :func:`log_scale` the normalised relevance with this factor first (the
        paper's LRP algorithm, factor 1000); ``None`` groups the normalised relevance.
    low, high
        The fixed thresholds of ``two-threshold`` on the (scaled) normalised relevance.

    Returns
    -------
    Grouping
        All background with ``thresholds=None`` when the map has no contrast.

    Raises
    ------
    ValueError
        If ``method`` is unknown or ``heatmap`` is not 2-D.
    """
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}; choose from {', '.join(METHODS)}")
    values = normalise_relevance(heatmap)
    if values is None:
        return Grouping(np.zeros(np.shape(heatmap), np.uint8), None, method)
    if log_scale_factor is not None:
        values = log_scale(values, log_scale_factor)
    if method == "two-threshold":
        return two_threshold_grouping(values, low, high)
    distinct = np.unique(values)
    if len(distinct) == 2:
        # Two levels cannot make three groups; the fitted methods would split hairs (EM and
        # k-means put a component on one level twice). Upper level = nucleus, as documented.
        t = 0.5 * float(distinct[0] + distinct[1])
        return Grouping(labels_from_thresholds(values, t, t), (t, t), method)
    return _FITTED[method](values)
