"""Test-only methods that use the optional parts of the plugin protocols.

- ``learnt-threshold``: a mask generator with a ``prepare`` step. It learns two grey-level
  thresholds from the project's labelled images (Otsu over the pooled grey levels of the
  images' darkest pixels for the nucleus, over all pixels for the cell), stores them as a
  checkpoint and masks with them; each mask's uncertainty is the share of its cell pixels
  within a few grey levels of a threshold (where a small change would flip the label).
- ``counted-unet``: the built-in U-Net with its own ``trainer`` (the core trainer, counted)
  and a larger ``size_multiple`` (64), to check that the core calls both.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cytoreview.errors import ImageReadError
from cytoreview.models.segmenters import UNET
from cytoreview.plugin_api import Contribution, LabelledImage, Plugin, option
from cytoreview.storage.checkpoints import load_weights
from cytoreview.training.segmentation import train_segmenter
from cytoreview.types import CancelToken, Progress

#: Grey levels either side of a threshold counted as "could go either way".
MARGIN = 6


@dataclass(frozen=True)
class LearntThresholdSettings:
    """Settings of the learnt-threshold generator."""

    weights: str = option("", "a checkpoint of an earlier run (skips learning)")


class LearntThresholds:
    """What ``prepare`` fitted: two thresholds, and how many images taught them."""

    def __init__(self, cell: float, nucleus: float, n_images: int) -> None:
        self.cell, self.nucleus, self.n_images = cell, nucleus, n_images

    def generate(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        grey = rgb.astype(np.float32).mean(axis=2)
        labels = np.zeros(grey.shape, np.uint8)
        labels[grey < self.cell] = 1
        labels[grey < self.nucleus] = 2
        cell = labels > 0
        near = (np.abs(grey - self.cell) < MARGIN) | (np.abs(grey - self.nucleus) < MARGIN)
        uncertainty = float(near[cell].mean()) if cell.any() else 1.0
        return labels, uncertainty

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"n_images": self.n_images}, {
            "thresholds": torch.tensor([self.cell, self.nucleus], dtype=torch.float32)
        }

    def describe(self) -> str:
        return (
            f"thresholds cell {self.cell:.0f}, nucleus {self.nucleus:.0f} "
            f"learnt from {self.n_images} image(s)"
        )


class LearntThreshold:
    """The generator (``MaskGeneratorMethod`` with ``prepare``)."""

    def __init__(self) -> None:
        #: What each prepare call was given (names, abnormal), for the tests.
        self.seen: list[list[tuple[str, bool]]] = []

    def prepare(
        self,
        examples: Sequence[LabelledImage],
        settings: LearntThresholdSettings,
        *,
        cancel: CancelToken | None = None,
    ) -> Generator[Progress, None, LearntThresholds]:
        self.seen.append([(e.name, e.abnormal) for e in examples])
        if settings.weights:
            _, state = load_weights(Path(settings.weights))  # weights_only inside
            cell, nucleus = (float(v) for v in state["thresholds"])
            return LearntThresholds(cell, nucleus, 0)
        pixels, darkest, used = [], [], 0
        for i, example in enumerate(examples):
            if cancel is not None and cancel.cancelled:
                break
            try:
                grey = cv2.cvtColor(example.load(), cv2.COLOR_RGB2GRAY).ravel()
            except ImageReadError as exc:
                yield Progress("prepare", i, len(examples), f"{exc}; not learnt from", "warning")
                continue
            pixels.append(grey)
            darkest.append(np.sort(grey)[: max(1, grey.size // 10)])
            used += 1
            yield Progress("prepare", i + 1, len(examples), f"{example.name} read")
        if not pixels:
            return LearntThresholds(0.0, 0.0, 0)
        cell, _ = cv2.threshold(np.concatenate(pixels)[None], 0, 255, cv2.THRESH_OTSU)
        nucleus = float(np.median(np.concatenate(darkest))) + MARGIN
        return LearntThresholds(float(cell), min(nucleus, float(cell)), used)


GENERATOR = LearntThreshold()


@dataclass(frozen=True)
class CountedSettings:
    """The U-Net's encoder, under this method's own flag."""

    encoder: str = option("resnet18", "U-Net encoder", choices=("resnet18",))


class CountedUnet:
    """The built-in U-Net, trained by its "own" trainer (the core one, counted)."""

    size_multiple = 64

    def __init__(self) -> None:
        self.calls = 0

    def build(self, settings: Any, *, classes: int, in_channels: int) -> torch.nn.Module:
        return UNET.build(settings, classes=classes, in_channels=in_channels)

    def weight_targets(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return UNET.weight_targets(model)

    def trainer(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return (yield from train_segmenter(*args, **kwargs))


SEGMENTER = CountedUnet()

PLUGIN = Plugin(
    name="cytoreview-learning-test",
    contributions=(
        Contribution(
            kind="mask-generator",
            name="learnt-threshold",
            description="two grey-level thresholds learnt from the labelled images",
            target="tests.plugins.learning_methods:GENERATOR",
            settings=LearntThresholdSettings,
            uses_labels=True,
        ),
        Contribution(
            kind="segmenter",
            name="counted-unet",
            description="the U-Net, trained by its own (counted) trainer",
            target="tests.plugins.learning_methods:SEGMENTER",
            settings=CountedSettings,
        ),
    ),
)
