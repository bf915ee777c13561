"""The 8 symmetries of a square: the views test-time augmentation averages.

A cell on a slide has no "up": a model's answer for the cell turned by 90 degrees or mirrored
is as good as the original, and averaging the 8 views removes much of a small model's
orientation noise. Segmentation turns each view's answer back before averaging
(:func:`cytoreview.inference.segment.with_tta`); classification averages the class
probabilities (:func:`cytoreview.inference.classify.mean_over_views`).

Batches are ``(N, C, S, S)``: letterboxed crops and tiles are square, so every view has the
batch's shape.
"""

from __future__ import annotations

import numpy as np

#: (quarter turns, mirrored) of each view; the first is the image as it is.
DIHEDRAL_VIEWS: tuple[tuple[int, bool], ...] = tuple(
    (k, m) for k in range(4) for m in (False, True)
)


def check_square(batch: np.ndarray) -> None:
    """Raise ValueError unless ``batch`` is ``(..., S, S)``."""
    if batch.ndim < 2 or batch.shape[-1] != batch.shape[-2]:
        raise ValueError(f"test-time augmentation needs square inputs, got {batch.shape}")


def dihedral_view(batch: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """``batch`` turned by ``turns`` quarter turns, then mirrored left-right (last two axes)."""
    view = np.rot90(batch, turns, axes=(-2, -1))
    return np.ascontiguousarray(view[..., ::-1] if mirrored else view)


def undo_view(out: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """The inverse of :func:`dihedral_view`: a view's per-pixel answer in the original frame."""
    out = out[..., ::-1] if mirrored else out  # undo in reverse order
    return np.rot90(out, -turns, axes=(-2, -1))


def stack_views(batch: np.ndarray) -> np.ndarray:
    """The 8 views of a ``(N, C, S, S)`` batch as one ``(8 N, C, S, S)`` batch, view by view.

    Rows ``v * N`` to ``(v + 1) * N`` hold view ``DIHEDRAL_VIEWS[v]``; the first ``N`` rows
    are the batch itself.
    """
    check_square(batch)
    return np.concatenate([dihedral_view(batch, k, m) for k, m in DIHEDRAL_VIEWS])


def mean_of_views(stacked: np.ndarray, n: int) -> np.ndarray:
    """The per-image mean of a model's answers to :func:`stack_views` of an ``n``-image batch.

    For answers that need no turning back (class probabilities); float32, summed in float64.
    """
    views = np.asarray(stacked).reshape(len(DIHEDRAL_VIEWS), n, *np.shape(stacked)[1:])
    return np.ascontiguousarray(views.mean(axis=0, dtype=np.float64), dtype=np.float32)
