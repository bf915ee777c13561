"""Masks without painting: run a mask generator over the project's images.

A mask generator (a plugin contribution, e.g. Otsu thresholding) makes 3-class masks from the
image alone. What it makes is stored as an ``auto`` mask whose source is the generator
(``generator:<name>``), so the review queue, the Project table and the report say where it came
from, and a person's mask (manual, corrected, approved) is never replaced. Training learns from
these masks only when asked (``train-seg --include-generated``).

A generator may learn first (``prepare``: e.g. a classifier trained on the project's class
labels, whose explanations become the masks). It is given the labelled images outside the
test split, read lazily; what it fitted is stored as a project model (kind
``mask-generator``) so a later run can reuse it, and its masks may carry an uncertainty that
puts them in the review queue like a segmenter's.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from cytoreview.errors import ConfigError, ImageReadError, NotEnoughDataError
from cytoreview.plugin_api import Contribution, LabelledImage, find
from cytoreview.plugin_api.settings import settings_dict
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.pipeline import prefetched
from cytoreview.workflows.segmentation import (
    GENERATOR_SOURCE,
    images_to_automask,
    save_auto_mask,
)

__all__ = ["GENERATOR_KIND", "GenerateReport", "generate_masks", "labelled_examples"]

#: The model-store kind of what a generator's ``prepare`` step fitted.
GENERATOR_KIND = "mask-generator"


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
    uncertainties: dict[str, float] = field(default_factory=dict)
    #: What the ``prepare`` step fitted, in words, and the project model it was stored as.
    fitted: str | None = None
    fitted_model: str | None = None


def _no_generate(rgb: np.ndarray, settings: Any) -> np.ndarray:
    raise ConfigError("this mask generator has neither generate() nor prepare()")


def labelled_examples(project: Project) -> list[LabelledImage]:
    """The images a generator may learn from: a class label, and not in the test split."""

    def loader(record: Any) -> Any:
        return lambda: project.load_image(record).rgb

    return [
        LabelledImage(
            name=image.name,
            class_label=image.class_label,
            abnormal=project.scheme.is_revisable(image.class_label),
            load=loader(image),
        )
        for image in project.images()
        if image.class_label and image.split != "test"
    ]


def _checked(
    output: Any, shape: tuple[int, int], generator: str
) -> tuple[np.ndarray, float | None]:
    """The generator's output as a label mask of the image's shape (and its uncertainty)."""
    uncertainty = None
    if isinstance(output, tuple):
        output, raw = output
        uncertainty = float(raw)
        if not 0.0 <= uncertainty <= 1.0:  # also catches NaN
            raise ConfigError(
                f"mask generator {generator!r} gave an uncertainty of {raw}; it must lie in [0, 1]"
            )
    mask = np.asarray(output)
    if mask.shape != shape or mask.dtype.kind not in "ui" or (mask.size and mask.max() > 2):
        raise ConfigError(
            f"mask generator {generator!r} gave a {mask.dtype} {mask.shape} array with values "
            f"up to {mask.max() if mask.size else '-'}; a uint8 {shape} mask of 0, 1, 2 is needed"
        )
    return mask.astype(np.uint8), uncertainty


def _prepare(
    project: Project,
    contribution: Contribution,
    method: Any,
    chosen: Any,
    report: GenerateReport,
    *,
    actor: str,
    cancel: CancelToken | None,
) -> Generator[Progress, None, Any]:
    """Run the generator's learning step on the labelled images; store what it fitted."""
    examples = labelled_examples(project)
    if not examples:
        raise NotEnoughDataError(
            f"{project.root}: no image has a class label; {contribution.name} learns from class "
            "labels (give them: `cytoreview set-class PROJECT --csv FILE`, or import class "
            "folders)"
        )
    yield Progress("prepare", 0, 1, f"{contribution.name} learns from {len(examples)} labelled "
                   "image(s) (test split left out)")  # fmt: skip
    fitted = yield from method.prepare(examples, chosen, cancel=cancel)
    if cancel is not None and cancel.cancelled:
        return fitted
    describe = getattr(fitted, "describe", None)
    report.fitted = describe() if callable(describe) else None
    checkpoint = getattr(fitted, "checkpoint", None)
    if callable(checkpoint):
        config, state = checkpoint()
        store = ModelStore(project)
        model_id = store.new_model_id("gen", contribution.name)
        record = {
            "kind": GENERATOR_KIND, "model_id": model_id, "generator": contribution.name,
            "plugin": contribution.provenance(), "settings": report.settings, **dict(config),
        }  # fmt: skip
        run_id = store.start_run(GENERATOR_KIND, model_id, record, actor=actor)
        path = store.save_weights(model_id, state, record)
        store.finish_run(
            run_id, "finished", {"fitted": report.fitted or ""}, actor=actor, has_checkpoint=True
        )
        report.fitted_model = model_id
        yield Progress("prepare", 1, 1, f"{report.fitted or contribution.name}; stored as "
                       f"{path} (reuse it through the generator's weights setting)")  # fmt: skip
    return fitted


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
    generate = partial(getattr(method, "generate", None) or _no_generate, settings=chosen)
    if callable(getattr(method, "prepare", None)) and todo:
        fitted = yield from _prepare(
            project, contribution, method, chosen, report, actor=actor, cancel=cancel
        )
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            report.seconds = time.perf_counter() - start
            return report
        generate = fitted.generate
        if report.fitted:
            note = f"{note}; {report.fitted}"
    yield Progress("generate", 0, len(todo), f"{len(todo)} image(s) to mask with {generator}")

    def compute(chunk: list[Any]) -> tuple[list[tuple[Any, np.ndarray, float | None]], list[str]]:
        made, problems = [], []
        for image in chunk:
            try:
                rgb = project.load_image(image).rgb
            except ImageReadError as exc:  # named and skipped; the rest is masked
                problems.append(f"{exc}; no mask generated")
                continue
            made.append((image, *_checked(generate(rgb), rgb.shape[:2], generator)))
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
        for image, mask, uncertainty in made:
            saved = save_auto_mask(
                project, image, mask, actor=actor, source_model=source, note=note,
                uncertainty=uncertainty, not_saved="no mask generated",
            )  # fmt: skip
            if not saved.saved:
                report.problems.append(saved.problem or "")
                if saved.person_painted:
                    report.skipped_human.append(image.name)
                continue
            report.made.append(image.name)
            if uncertainty is not None:
                report.uncertainties[image.name] = uncertainty
        done += len(chunk)
        yield Progress("generate", done, len(todo), f"{done}/{len(todo)} masked")
    report.seconds = time.perf_counter() - start
    return report
