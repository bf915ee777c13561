"""Segmentation methods side by side, on the same images.

Two tables, for the report and ``cytoreview compare-methods``:

- **Trained segmenters**: every finished segmentation run of the project (the U-Net, a
  plugin's Pix2Pix...), with its method in words, recipe, training time and the Dice / IoU its
  own validation images measured. Rows whose validation images are the same (same masks, same
  seed: the stratified split is reproducible) are marked, since only those compare directly.
- **Masks against ground truth**: every image keeps all its mask versions, so each automatic
  source (a segmenter's model id, a mask generator such as ``generator:xai-weak``) still has
  its latest mask of each image it masked, even when another method's mask is current. Each
  source is scored on the images that *every* source masked and that have ground truth (the
  shared images), at each image's own size, so the rows are comparable; a person's masks are
  not a method and are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cytoreview.errors import InputFileError, NotEnoughDataError, ProjectError
from cytoreview.metrics.segmentation import evaluate_masks
from cytoreview.models.segmenters import describe_segmenter
from cytoreview.plugin_api import catalog
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress, Provenance
from cytoreview.workflows.segmentation import GENERATOR_SOURCE, KIND, read_truth

__all__ = [
    "MethodComparison",
    "ScoredMethod",
    "TrainedSegmenter",
    "compare_mask_methods",
    "trained_segmenters",
]

#: Regions and metrics each table shows.
REGIONS = ("cytoplasm", "nucleus")
METRICS = ("dice", "iou")


@dataclass(frozen=True)
class TrainedSegmenter:
    """One finished segmentation run, as the table shows it."""

    model_id: str
    method: str
    preset: str | None
    n_train: int
    n_val: int
    input_size: int | None
    seconds: float | None
    epochs_run: int | None
    stop_reason: str | None
    #: ``dice_cytoplasm``, ``iou_nucleus``...: the run's best epoch on its validation images.
    scores: dict[str, float | None]
    #: Runs with the same tag validated on the same images.
    split_tag: str
    current: bool


@dataclass(frozen=True)
class ScoredMethod:
    """One automatic source's masks against the ground truth on the shared images."""

    source: str
    method: str
    n_images: int
    #: Region to metric to the mean over images.
    mean: dict[str, dict[str, float | None]]
    #: Region to metric to the score of the pooled pixel counts.
    pooled: dict[str, dict[str, float | None]]


@dataclass
class MethodComparison:
    """Both tables, and what was left out."""

    trained: list[TrainedSegmenter] = field(default_factory=list)
    scored: list[ScoredMethod] = field(default_factory=list)
    #: Images every scored source masked and that have ground truth.
    shared_images: int = 0
    truth_dir: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        return asdict(self)


def _split_tag(config: dict[str, Any]) -> str:
    val = sorted(config.get("data", {}).get("val", []))
    return hashlib.sha256(json.dumps(val).encode()).hexdigest()[:8] if val else "-"


def trained_segmenters(project: Project) -> list[TrainedSegmenter]:
    """Every finished (or early-stopped, or budget-stopped) segmentation run with a best epoch."""
    store = ModelStore(project)
    current = store.current_model(KIND)
    rows = []
    for run in store.runs(KIND):
        m = run.metrics or {}
        if "best_epoch" not in m:
            continue  # cancelled before any epoch, failed: nothing measured
        try:
            method = describe_segmenter(run.config)
        except Exception as exc:  # a plugin no longer installed: say so, keep the row  # noqa: BLE001
            method = f"{run.config.get('arch', '?')} ({str(exc)[:80]})"
        rows.append(
            TrainedSegmenter(
                model_id=run.model_id, method=method, preset=run.config.get("preset"),
                n_train=int(m.get("n_train", 0)), n_val=int(m.get("n_val", 0)),
                input_size=run.config.get("input_size"), seconds=m.get("seconds"),
                epochs_run=m.get("epochs_run"), stop_reason=m.get("stop_reason"),
                scores={f"{k}_{r}": m.get(f"{k}_{r}") for r in REGIONS for k in METRICS},
                split_tag=_split_tag(run.config), current=run.model_id == current,
            )
        )  # fmt: skip
    return rows


def _describe_source(source: str, runs: dict[str, Any]) -> str:
    """A source key in words: which generator (and plugin), or which trained model."""
    if source.startswith(GENERATOR_SOURCE):
        name = source[len(GENERATOR_SOURCE) :]
        installed = {c.name: c for c in catalog().contributions("mask-generator")}
        found = installed.get(name)
        plugin = f", plugin {found.plugin} {found.version}" if found is not None else ""
        learns = " from class labels" if found is not None and found.uses_labels else ""
        return f"mask generator {name}{learns}{plugin}"
    run = runs.get(source)
    if run is not None:
        try:
            return f"segmenter {describe_segmenter(run.config)}"
        except Exception:  # noqa: BLE001 - a missing plugin must not stop the comparison
            return f"segmenter {run.config.get('arch', '?')}"
    return source


def compare_mask_methods(
    project: Project,
    truth_dir: str | Path | None = None,
    *,
    ignore_dir: str | Path | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, MethodComparison]:
    """Both tables; the second only when ``truth_dir`` is given.

    Raises
    ------
    ProjectError
        If ``truth_dir`` is not a folder.
    """
    comparison = MethodComparison(trained=trained_segmenters(project))
    if truth_dir is None:
        return comparison
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        raise ProjectError(f"{truth_dir}: ground-truth folder does not exist")
    comparison.truth_dir = str(truth_dir)
    images = project.images()
    latest: dict[str, dict[int, Any]] = {}  # source -> image id -> its latest version there
    for image in images:
        for version in project.mask_versions(image.id):
            if version.provenance is Provenance.AUTO and version.source_model:
                latest.setdefault(version.source_model, {})[image.id] = version
    if not latest:
        return comparison
    shared = set.intersection(*(set(v) for v in latest.values()))
    by_id = {im.id: im for im in images}
    items: dict[str, list] = {source: [] for source in latest}
    for step, image_id in enumerate(sorted(shared), start=1):
        if cancel is not None and cancel.cancelled:
            break
        image = by_id[image_id]
        try:
            truth = read_truth(image, truth_dir, ignore_dir)
        except InputFileError as exc:
            comparison.problems.append(str(exc))
            continue
        if truth is None:
            continue
        for source, versions in latest.items():
            mask = project.read_mask_version(versions[image_id])
            if mask is None:
                comparison.problems.append(f"{image.name}: a mask of {source} is damaged")
                continue
            items[source].append((image.name, mask, truth[0], truth[1]))
        if step % 25 == 0 or step == len(shared):
            yield Progress("compare", step, len(shared), f"{step}/{len(shared)} images scored")
    scored = {source: rows for source, rows in items.items() if rows}
    if not scored:
        raise NotEnoughDataError(
            f"{truth_dir}: no image that every method masked has a ground-truth mask "
            f"({len(shared)} image(s) masked by all {len(latest)} method(s))"
        )
    comparison.shared_images = min(len(rows) for rows in scored.values())
    runs = {run.model_id: run for run in ModelStore(project).runs(KIND)}
    for source, rows in sorted(scored.items()):
        report = evaluate_masks(rows).to_dict()
        comparison.scored.append(
            ScoredMethod(
                source=source, method=_describe_source(source, runs), n_images=len(rows),
                mean={r: {k: report["mean"].get(r, {}).get(k) for k in METRICS} for r in REGIONS},
                pooled={r: {k: report["pooled"].get(r, {}).get(k) for k in METRICS}
                        for r in REGIONS},
            )
        )  # fmt: skip
    return comparison
