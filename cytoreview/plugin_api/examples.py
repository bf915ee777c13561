"""What a mask generator that learns from class labels is given: the project's labelled images.

Torch-free and lazy: an image is read only when the plugin asks for it, so a project of
thousands of images does not have to fit in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["LabelledImage"]


@dataclass(frozen=True)
class LabelledImage:
    """One image with a class label, as a generator's ``prepare`` step receives it.

    Attributes
    ----------
    name
        The image's name in the project (what warnings should name).
    class_label
        Its class in the project's scheme (e.g. ``HSIL``).
    abnormal
        The project's binary call of that class: True when it needs a pathologist's review.
    load
        Returns the image as ``(H, W, 3)`` uint8 RGB; raises
        :class:`cytoreview.errors.ImageReadError` for a missing or damaged file (skip it and
        say so: the rest still teaches).
    """

    name: str
    class_label: str
    abnormal: bool
    load: Callable[[], np.ndarray]
