"""Settings of the Otsu mask generator (torch-free: the command-line parser reads them).

Every size is relative to the image, so one set of defaults fits a 40 px Herlev crop and a
2000 px field alike (``cytoreview_otsu.masks`` turns the fractions into pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import option

__all__ = ["METHODS", "OtsuSettings"]

#: How the three classes are split (see ``cytoreview_otsu.masks``).
METHODS: tuple[str, ...] = ("multi-otsu", "two-pass")


@dataclass(frozen=True)
class OtsuSettings:
    """Settings of the ``otsu`` mask generator."""

    method: str = option(
        "multi-otsu",
        "multi-otsu: one three-class Otsu over the image (darkest class nucleus, middle "
        "cytoplasm, brightest background); two-pass: Otsu splits cells from background, then a "
        "second Otsu inside the cells splits the nuclei off (loses the cytoplasm of crops "
        "whose nucleus is large and dark)",
        choices=METHODS,
        label="Thresholds",
    )
    clip_percent: float = option(
        1.0,
        "contrast stretch: the darkest and brightest PERCENT of pixels are clipped before "
        "thresholding, so debris and glare do not pull the threshold",
        low=0.0,
        high=20.0,
    )
    min_contrast: float = option(
        8.0,
        "grey levels (0-255) between the clipped darkest and brightest pixels below which the "
        "image is taken as empty (all background): a flat image has nothing to threshold",
        low=0.0,
        high=255.0,
    )
    smooth: float = option(
        0.005,
        "Gaussian smoothing before thresholding, sigma as a fraction of the shorter side "
        "(at least 0.5 px): removes pixel noise and chromatin texture",
        low=0.0,
        high=0.1,
    )
    morph_radius: float = option(
        0.01,
        "radius of the erosion/dilation disc as a fraction of the shorter side (at least "
        "1 px): opening removes specks, closing seals the cell boundary",
        low=0.0,
        high=0.1,
    )
    min_cell: float = option(
        0.002,
        "cells smaller than this fraction of the image area are noise and become background",
        low=0.0,
        high=0.5,
    )
    min_nucleus: float = option(
        0.0002,
        "nuclei smaller than this fraction of the image area (at least 2 px) become cytoplasm",
        low=0.0,
        high=0.5,
    )
