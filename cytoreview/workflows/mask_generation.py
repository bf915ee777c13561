"""Masks without painting: run a mask generator over the project's images.

A mask generator (a plugin contribution, e.g. Otsu thresholding) makes 3-class masks from the
image alone. What it makes is stored as an ``auto`` mask whose source is the generator
(``generator:<name>``), so the review queue, the Project table and the report say where it came
from, and a person's mask (manual, corrected, approved) is never replaced. Training learns from
these masks only when asked (``train-seg --include-generated``).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoreview.errors import ConfigError, ImageReadError
from cytoreview.plugin_api import find
from cytoreview.plugin_api.settings import settings_dict
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.pipeline import prefetched
from cytoreview.workflows.segmentation import (
    GENERATOR_SOURCE,
    images_to_automask,
    save_auto_mask,
)

__all__ = ["GenerateReport", "generate_masks"]


@dataclass
class GenerateReport:
    """What a mask-generation pass did."""

    generator: str
    plugin: str
    version: str
    settings: dict[str, Any]
    made: list[str] = field(default_factory=list)
    skipped_human: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False


def _checked(mask: Any, shape: tuple[int, int], generator: str) -> np.ndarray:
    """The generator's output as a label mask of the image's shape, or a ConfigError."""
    mask = np.asarray(mask)
    if mask.shape != shape or mask.dtype.kind not in "ui" or (mask.size and mask.max() > 2):
        raise ConfigError(
            f"mask generator {generator!r} gave a {mask.dtype} {mask.shape} array with values "
            f"up to {mask.max() if mask.size else '-'}; a uint8 {shape} mask of 0, 1, 2 is needed"
        )
    return mask.astype(np.uint8)


def generate_masks(
    project: Project,
    generator: str,
    settings: Mapping[str, Any] | None = None,
    *,
    actor: str,
    names: Sequence[str] | None = None,
    batch_size: int = 8,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, GenerateReport]:
    """Make a mask with ``generator`` for every image without a person's mask (or the named ones).

    Parameters
    ----------
    generator
        A mask-generator contribution (``cytoreview plugins`` lists them).
    settings
        Its settings (defaults for the rest).
    names
        Only these images (default: all).
    """
    contribution = find("mask-generator", generator)
    chosen = contribution.make_settings(settings)
    method = contribution.load()
    report = GenerateReport(
        generator=contribution.name, plugin=contribution.plugin, version=contribution.version,
        settings=settings_dict(chosen),
    )  # fmt: skip
    source = f"{GENERATOR_SOURCE}{contribution.name}"
    note = f"{contribution.plugin} {contribution.version}; settings {report.settings}"
    todo, report.skipped_human = images_to_automask(project, names)
    start = time.perf_counter()
    yield Progress("generate", 0, len(todo), f"{len(todo)} image(s) to mask with {generator}")

    def compute(chunk: list[Any]) -> tuple[list[tuple[Any, np.ndarray]], list[str]]:
        made, problems = [], []
        for image in chunk:
            try:
                rgb = project.load_image(image).rgb
            except ImageReadError as exc:  # named and skipped; the rest is masked
                problems.append(f"{exc}; no mask generated")
                continue
            made.append((image, _checked(method.generate(rgb, chosen), rgb.shape[:2], generator)))
        return made, problems

    def cancelled() -> bool:
        return cancel is not None and cancel.cancelled

    chunks = [todo[first : first + batch_size] for first in range(0, len(todo), batch_size)]
    done = 0
    for chunk, (made, problems) in prefetched(chunks, compute, stop=cancelled):
        if cancelled():
            report.cancelled = True
            break
        report.problems += problems
        for message in problems:
            yield Progress("generate", done, len(todo), message, level="warning")
        for image, mask in made:
            saved = save_auto_mask(
                project, image, mask, actor=actor, source_model=source, note=note,
                not_saved="no mask generated",
            )  # fmt: skip
            if not saved.saved:
                report.problems.append(saved.problem or "")
                if saved.person_painted:
                    report.skipped_human.append(image.name)
                continue
            report.made.append(image.name)
        done += len(chunk)
        yield Progress("generate", done, len(todo), f"{done}/{len(todo)} masked")
    report.seconds = time.perf_counter() - start
    return report
