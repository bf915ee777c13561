"""Decision offsets of a freshly trained segmenter, chosen on its validation images.

The glue between the model's masks as :mod:`cytoreview.inference.segment` makes them (same
letterboxing or tiling, same views, same resizing back) and the choice in
:mod:`cytoreview.inference.decision`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cytoreview.inference.decision import OffsetFit, fit_offsets
from cytoreview.inference.segment import BatchPredictor, SegmenterSpec, predict_probs

#: Images per model call while calibrating (8 views each with test-time augmentation).
CHUNK = 8


def calibrate_offsets(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    predict: BatchPredictor,
    spec: SegmenterSpec,
) -> OffsetFit:
    """Offsets that maximise the mean Dice of the model's masks of ``images`` against ``masks``.

    Parameters
    ----------
    images, masks
        The training run's validation images (RGB uint8) and their person's masks (0/1/2).
    predict
        The model as auto-masks will run it (wrapped in test-time augmentation when they are).
    spec
        The model's input rules and classes; its own offsets are ignored.
    """
    probs: list[np.ndarray] = []
    for first in range(0, len(images), CHUNK):
        probs += predict_probs(images[first : first + CHUNK], predict, spec)
    return fit_offsets(probs, masks, spec.classes_present, spec.postprocess)
