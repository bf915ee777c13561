"""The review report: gather what the project knows, render it, write one HTML folder.

The figures come from what is stored (training runs, predictions, heatmaps, masks); the report
never trains or classifies by itself, so it is quick and shows exactly what the team reviewed.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cytoreview import __version__
from cytoreview.errors import ImageReadError, NotEnoughDataError
from cytoreview.inference.decision import OffsetFit
from cytoreview.models.classifiers import describe_classifier
from cytoreview.models.segmenters import describe_segmenter
from cytoreview.report.html import render_report
from cytoreview.report.model import (
    BinarySection,
    ClassCounts,
    ClassificationSection,
    ClassScores,
    GalleryItem,
    MethodsSection,
    MorphometryTable,
    ReportData,
    RocCurve,
    SegmentationSection,
    TrainingCurve,
)
from cytoreview.storage.files import write_files
from cytoreview.storage.model_store import ModelStore, TrainingRun
from cytoreview.storage.predictions import PredictionRecord, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.classification import BINARY_CLASSES
from cytoreview.workflows.evaluate_cls import (
    ClsEvaluation,
    evaluate_classification,
    training_images_note,
)
from cytoreview.workflows.method_comparison import (
    MethodComparison,
    compare_mask_methods,
    trained_segmenters,
)
from cytoreview.workflows.review_data import measure_project
from cytoreview.workflows.segmentation import (
    GENERATOR_SOURCE,
    SegEvaluation,
    evaluate_segmentation,
    is_generated,
)

#: Columns of the morphometry table in the report (a subset of the CSV export's).
_MORPH_COLUMNS = (
    "image", "class", "predicted", "nucleus_area", "cytoplasm_area", "nc_ratio",
    "nucleus_circularity", "nucleus_mean_intensity", "cell_count",
)  # fmt: skip
_MORPH_LABELS = {
    "image": "Image", "class": "True class", "predicted": "Predicted",
    "nucleus_area": "Nucleus area", "cytoplasm_area": "Cytoplasm area", "nc_ratio": "N:C ratio",
    "nucleus_circularity": "Nucleus circularity", "nucleus_mean_intensity": "Nucleus grey (0-255)",
    "cell_count": "Cells",
}  # fmt: skip


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    out: Path
    files: list[Path] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    gallery: int = 0
    notes: list[str] = field(default_factory=list)


def _latest_run(store: ModelStore, kind: str) -> TrainingRun | None:
    current = store.current_model(kind)
    return None if current is None else store.run_of(current)


def generated_mask_notes(project: Project) -> list[str]:
    """One line per mask generator whose masks are current: no person and no model made them.

    Their measurements are the generator's (e.g. Otsu thresholds), which a reader must know.
    """
    made: dict[str, int] = {}
    for version in project.current_versions().values():
        if is_generated(version):
            name = str(version.source_model)[len(GENERATOR_SOURCE) :]
            made[name] = made.get(name, 0) + 1
    return [
        f"{n} current mask(s) were made by the mask generator {name} (no painting, no model): "
        "their measurements are the generator's; check them or auto-segment over them"
        for name, n in sorted(made.items())
    ]


def _summary(project: Project, preds: dict[int, PredictionRecord]) -> dict[str, ClassCounts]:
    current = project.current_versions()
    counts: dict[str, dict[str, int]] = {
        c: dict.fromkeys(("images", "human_masks", "auto_masks", "seeds", "predicted"), 0)
        for c in project.scheme.classes
    }
    unlabelled = "(unlabelled)"
    for record in project.images():
        key = record.class_label or unlabelled
        row = counts.setdefault(key, dict.fromkeys(counts[project.scheme.classes[0]], 0))
        row["images"] += 1
        row["seeds"] += int(record.is_seed)
        version = current.get(record.id)
        if version is not None:
            row["human_masks" if version.provenance.is_human else "auto_masks"] += 1
    for pred in preds.values():
        if pred.pred_class in counts:
            counts[pred.pred_class]["predicted"] += 1
    return {k: ClassCounts(**v) for k, v in counts.items()}


def _seg_section(store: ModelStore) -> SegmentationSection | None:
    run = _latest_run(store, "segmentation")
    if run is None or not run.metrics or "best_epoch" not in run.metrics:
        return None
    m = run.metrics
    # Validation scores are pooled over the pixels of all validation images, at the model's
    # input size (cytoreview.training.segmentation._validate): never a mean over images.
    pooled = {
        region: {"dice": m.get(f"dice_{region}"), "iou": m.get(f"iou_{region}")}
        for region in ("cytoplasm", "nucleus")
    }
    history = m.get("history") or []
    curve = None
    if history:
        curve = TrainingCurve(
            epochs=[h["epoch"] for h in history],
            train_loss=[h["train_loss"] for h in history],
            val_loss=[h["val_loss"] for h in history],
            metrics={
                f"{metric} {region}": [h.get(f"{key}_{region}", math.nan) for h in history]
                for region in ("cytoplasm", "nucleus")
                for metric, key in (("Dice", "dice"), ("IoU", "iou"))
            },
            best_epoch=m.get("best_epoch"),
        )
    n_val = int(m.get("n_val") or len(run.config.get("data", {}).get("val", [])))
    size = run.config.get("input_size")
    at = f"at the model's input size of {size} px" if size else "at the model's input size"
    # The offsets change the masks, not these scores (taken while training, without them).
    decision = f"; {OffsetFit.from_dict(m['decision']).describe()}" if m.get("decision") else ""
    return SegmentationSection(
        n_images=n_val, pooled=pooled, evaluated_on=f"validation images of the training run, "
        f"{at}, pooled over pixels; best epoch {m['best_epoch']} of {m.get('epochs_run', '?')}"
        f"{decision}",
        model_id=run.model_id, arch=describe_segmenter(run.config),
        curve=curve, title=f"Validation during training ({run.model_id})",
    )  # fmt: skip


_PROVENANCE_TITLES = {
    "auto": "Auto masks (made by a segmenter)",
    "corrected": "Corrected masks (auto masks a person edited)",
    "approved": "Approved masks",
    "manual": "Manual masks (painted by a person)",
}


def _mask_quality(evaluation: SegEvaluation, truth_dir: Path) -> list[SegmentationSection]:
    """The ``evaluate-seg`` scores as report sections: one per kind of mask, auto first."""
    where = f"against the ground truth in {truth_dir}, at each image's own size"
    order = [k for k in _PROVENANCE_TITLES if k in evaluation.by_provenance]
    order += [k for k in evaluation.by_provenance if k not in order]
    return [
        SegmentationSection.from_metrics_dict(
            evaluation.by_provenance[kind].to_dict(),
            evaluated_on=where,
            title=_PROVENANCE_TITLES.get(kind, f"{kind.capitalize()} masks"),
        )
        for kind in order
    ]


def _methods_section(
    project: Project,
    truth_dir: str | Path | None,
    ignore_dir: str | Path | None,
    notes: list[str],
    cancel: CancelToken | None,
) -> Generator[Progress, None, MethodsSection]:
    """Segmentation methods side by side (the scored table only with ground truth)."""
    try:
        comparison = yield from compare_mask_methods(
            project, truth_dir, ignore_dir=ignore_dir, cancel=cancel
        )
    except NotEnoughDataError as exc:
        notes.append(f"methods not compared against the ground truth: {exc}")
        comparison = MethodComparison(trained=trained_segmenters(project))
    notes.extend(f"method comparison: {p}" for p in comparison.problems)
    data = comparison.to_dict()
    return MethodsSection(
        trained=data["trained"], scored=data["scored"],
        shared_images=comparison.shared_images, truth_dir=comparison.truth_dir or "",
    )  # fmt: skip


def _cls_curve(run: TrainingRun | None) -> TrainingCurve | None:
    history = (run.metrics or {}).get("history") if run is not None else None
    if not history:
        return None
    best = (run.metrics or {}).get("best", {}).get("epoch") if run is not None else None
    return TrainingCurve(
        epochs=[h["epoch"] for h in history],
        train_loss=[h["train_loss"] for h in history],
        val_loss=[h["val_loss"] for h in history],
        metrics={
            "accuracy": [h["val_accuracy"] for h in history],
            "macro F1": [h["val_macro_f1"] for h in history],
        },
        best_epoch=best,
    )


def _cls_section(
    evaluation: ClsEvaluation, run: TrainingRun | None, normal: list[str]
) -> ClassificationSection | None:
    m = evaluation.multiclass
    if m is None:
        return None
    binary = None
    b = evaluation.binary
    if b is not None:
        roc = None
        if evaluation.binary_roc is not None:
            fpr, tpr, auc = evaluation.binary_roc
            roc = RocCurve(fpr, tpr, auc)
        binary = BinarySection(
            f1_abnormal=b.f1, macro_f1=b.macro_f1, sensitivity=b.sensitivity,
            specificity=b.specificity, auc=b.auc, confusion=b.confusion, roc=roc,
            labels=("not revisable (" + "/".join(normal) + ")", "revisable (needs review)"),
        )  # fmt: skip
    evaluated = evaluation.source
    if evaluation.on_training_images:
        evaluated += (
            f" ({evaluation.on_training_images} of {evaluation.n_matched} images were used in "
            "training: optimistic)"
        )
    arch = ""
    if run is not None:
        arch = describe_classifier({**run.config.get("training", {}), **run.config})
    return ClassificationSection(
        class_names=m.class_names, accuracy=m.accuracy, macro_f1=m.macro_f1,
        per_class={
            name: ClassScores(m.precision[i], m.recall[i], m.f1[i], m.support[i])
            for i, name in enumerate(m.class_names)
        },
        confusion=m.confusion, n_images=m.n, evaluated_on=evaluated,
        roc={k: RocCurve(fpr, tpr, auc) for k, (fpr, tpr, auc) in evaluation.roc.items()},
        binary=binary, curve=_cls_curve(run), model_id=", ".join(evaluation.model_ids), arch=arch,
    )  # fmt: skip


def _pick_gallery(
    project: Project,
    preds: dict[int, PredictionRecord],
    flagged: set[int],
    limit: int,
) -> list[int]:
    """Images worth a look first, then a few of every class.

    Wrong calls, flagged heatmaps and the most uncertain fill up to half the gallery; the rest
    goes round-robin over the classes so the page also shows what a right call looks like.
    """
    records = project.images()
    wrong = [r.id for r in records if r.id in preds and r.class_label
             and preds[r.id].pred_class != r.class_label]  # fmt: skip
    uncertain = sorted(
        (r.id for r in records if r.id in preds),
        key=lambda i: -(preds[i].uncertainty or 0.0),
    )
    by_class: dict[str, list[int]] = {}
    for r in records:
        by_class.setdefault(r.class_label or "", []).append(r.id)
    chosen: list[int] = []
    for group in (wrong, sorted(flagged), uncertain[: max(4, limit // 4)]):
        for image_id in group:
            if image_id not in chosen and len(chosen) < limit // 2:
                chosen.append(image_id)
    round_robin = [ids for _, ids in sorted(by_class.items())]
    k = 0
    while len(chosen) < limit and any(k < len(ids) for ids in round_robin):
        for ids in round_robin:
            if k < len(ids) and ids[k] not in chosen and len(chosen) < limit:
                chosen.append(ids[k])
        k += 1
    return chosen


def _fmt_measure(value: Any, digits: int = 3) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits) if isinstance(value, float) else value


def build_report_data(
    project: Project,
    *,
    truth_csv: str | Path | None = None,
    seg_truth_dir: str | Path | None = None,
    seg_ignore_dir: str | Path | None = None,
    max_gallery: int = 24,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ReportData]:
    """Collect the report's content from the project (no training, no inference).

    Parameters
    ----------
    truth_csv
        Held-out true classes to score the classifier against (default: the project's own).
    seg_truth_dir, seg_ignore_dir
        Ground-truth label masks (and optional ignore masks) named like the images: the
        current masks are scored against them at native resolution, as ``evaluate-seg`` does.
        Without them the report can show only the training run's validation scores.
    """
    store = ModelStore(project)
    pstore = PredictionStore(project)
    preds = pstore.latest_predictions("bethesda")
    binary = pstore.latest_predictions("binary")
    notes: list[str] = []
    yield Progress("report", 1, 5, "summarising the data")
    summary = _summary(project, preds)
    empty = [c for c in project.scheme.classes if summary[c].images == 0]
    if empty:
        notes.append(f"classes with no images: {', '.join(empty)} (no model can learn them)")
    segmentation = _seg_section(store)
    mask_quality: list[SegmentationSection] = []
    if seg_truth_dir is not None:
        try:
            seg_eval = yield from evaluate_segmentation(
                project, seg_truth_dir, ignore_dir=seg_ignore_dir, cancel=cancel
            )
        except NotEnoughDataError as exc:
            notes.append(f"masks not scored: {exc}")
        else:
            mask_quality = _mask_quality(seg_eval, Path(seg_truth_dir))
            notes.extend(f"mask not scored: {p}" for p in seg_eval.problems)
    methods = yield from _methods_section(project, seg_truth_dir, seg_ignore_dir, notes, cancel)
    yield Progress("report", 2, 5, "scoring the predictions")
    classification = None
    cls_run = _latest_run(store, "classification-bethesda")
    if preds or binary:
        try:
            evaluation = evaluate_classification(project, truth_csv)
        except NotEnoughDataError as exc:
            notes.append(f"classification not scored: {exc}")
        else:
            classification = _cls_section(evaluation, cls_run, sorted(project.scheme.not_revisable))
            if evaluation.on_training_images:
                notes.append(training_images_note(evaluation))
    heatmaps = pstore.heatmap_records()
    flagged = {i for i, h in heatmaps.items() if h.quality.get("looks_at_background")}
    if flagged:
        notes.append(
            f"the classifier looked mostly at the background in {len(flagged)} image(s): "
            "review those calls"
        )
    yield Progress("report", 3, 5, "measuring the cells")
    unreadable: list[str] = []
    measured = measure_project(project, problems=unreadable)
    for message in unreadable:  # named once each; the report goes on without them
        notes.append(message)
        yield Progress("report", 3, 5, message, level="warning")
    names = {r.id: r for r in project.images()}
    without_mask = len(names) - len(measured) - len(unreadable)
    if without_mask:
        notes.append(f"{without_mask} image(s) have no mask yet: no measurements for them")
    notes.extend(generated_mask_notes(project))
    unit_um = any(m.pixel_size_um for m in measured.values())
    rows = []
    for image_id, m in measured.items():
        record = names[image_id]
        values = m.row()
        suffix = "um2" if m.pixel_size_um else "px"
        pred = preds.get(image_id)
        rows.append({
            "image": record.name, "class": record.class_label or "",
            "predicted": pred.pred_class if pred else "",
            "nucleus_area": _fmt_measure(values.get(f"nucleus_area_{suffix}"), 1),
            "cytoplasm_area": _fmt_measure(values.get(f"cytoplasm_area_{suffix}"), 1),
            "nc_ratio": _fmt_measure(values.get("nc_ratio")),
            "nucleus_circularity": _fmt_measure(values.get("nucleus_circularity")),
            "nucleus_mean_intensity": _fmt_measure(values.get("nucleus_mean_intensity"), 1),
            "cell_count": values.get("cell_count"),
        })  # fmt: skip
    area_unit = "µm²" if unit_um else "px²"
    morphometry = MorphometryTable(
        columns=list(_MORPH_COLUMNS), rows=rows, labels=dict(_MORPH_LABELS),
        units={"nucleus_area": area_unit, "cytoplasm_area": area_unit},
    ) if rows else None  # fmt: skip
    yield Progress("report", 4, 5, "drawing the gallery")
    gallery = []
    for image_id in _pick_gallery(project, preds, flagged, max_gallery):
        if cancel is not None and cancel.cancelled:
            break
        record = names[image_id]
        found = project.current_mask(image_id)
        heat_rec = heatmaps.get(image_id)
        heat = pstore.load_heatmap(heat_rec) if heat_rec is not None else None
        pred = preds.get(image_id)
        call = binary.get(image_id)
        flags = []
        if image_id in flagged:
            flags.append("looks at background")
        if pred is not None and record.class_label and pred.pred_class != record.class_label:
            flags.append("disagrees with the expert label")
        if pred is not None and (pred.uncertainty or 0) > 0.6:
            flags.append("uncertain")
        try:
            rgb = project.load_image(record).rgb
        except ImageReadError as exc:
            message = f"{exc}; not in the gallery"
            if not any(str(exc) in note for note in notes):
                notes.append(message)
                yield Progress("report", 4, 5, message, level="warning")
            continue
        m = measured.get(image_id)
        main = m.row() if m is not None else {}
        gallery.append(GalleryItem(
            name=record.name, image=rgb,
            true_class=record.class_label, pred_class=pred.pred_class if pred else None,
            probabilities=dict(pred.probabilities) if pred else {},
            mask=None if found is None else found[1], heatmap=heat,
            mask_provenance="" if found is None else found[0].provenance.value, flags=flags,
            measurements={
                "N:C ratio": _fmt_measure(main.get("nc_ratio")),
                "Nucleus area (px²)": main.get("nucleus_area_px"),
                "Cytoplasm area (px²)": main.get("cytoplasm_area_px"),
                "Cells": main.get("cell_count"),
            } if main else {},
            needs_review=None if call is None else call.pred_class == BINARY_CLASSES[1],
            p_review=None if call is None else call.probabilities.get(BINARY_CLASSES[1]),
        ))  # fmt: skip
    yield Progress("report", 5, 5, "rendering")
    return ReportData(
        title=f"CytoReview report: {project.root.name}", class_names=list(project.scheme.classes),
        project_name=project.root.name, created_at=datetime.now(UTC),
        software_version=__version__, normal_classes=sorted(project.scheme.not_revisable),
        data_summary=summary, segmentation=segmentation, classification=classification,
        gallery=gallery, morphometry=morphometry, notes=notes, mask_quality=mask_quality,
        methods=methods,
    )  # fmt: skip


def write_report(
    project: Project,
    out: str | Path,
    *,
    truth_csv: str | Path | None = None,
    seg_truth_dir: str | Path | None = None,
    seg_ignore_dir: str | Path | None = None,
    max_gallery: int = 24,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ReportResult]:
    """Build the report and write ``report.html`` (self-contained) and its plots under ``out``.

    The parameters are those of :func:`build_report_data`.
    """
    data = yield from build_report_data(
        project, truth_csv=truth_csv, seg_truth_dir=seg_truth_dir,
        seg_ignore_dir=seg_ignore_dir, max_gallery=max_gallery, cancel=cancel,
    )  # fmt: skip
    files = render_report(data)
    result = ReportResult(out=Path(out), notes=list(data.notes), gallery=len(data.gallery))
    result.sections = [
        name
        for name, present in (
            ("data summary", True),
            ("segmentation", data.segmentation is not None or bool(data.mask_quality)),
            ("classification", data.classification is not None),
            ("gallery", bool(data.gallery)),
            ("morphometry", data.morphometry is not None),
        )
        if present
    ]
    result.files = write_files(result.out, files)
    return result
