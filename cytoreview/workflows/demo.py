"""The demo: a synthetic Pap-smear project built end to end with what CytoReview can do.

It grows with the product. Today: synthetic data (a fifth held out as a test split) → project
→ import → seed set → a simulated pathologist paints the seeds → U-Net trained on them →
auto-masks for the rest → classifier (image + mask fusion) → predictions with Grad-CAM++
heatmaps and cell measurements → CSV export → an HTML report and an overview sheet.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytoreview.data.overlays import contact_sheet, overlay_mask
from cytoreview.data.synthetic import synth_dataset
from cytoreview.storage.files import (
    clear_demo_folder,
    mark_demo_folder,
    new_scratch_folder,
    write_png,
    write_text,
)
from cytoreview.storage.images import read_label_mask
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord
from cytoreview.types import CLASS_SCHEMES, CancelToken, Progress, Provenance
from cytoreview.workflows.classification import (
    ClsTrainReport,
    ClsTrainRequest,
    train_classification,
)
from cytoreview.workflows.evaluate_cls import ClsEvaluation, evaluate_classification
from cytoreview.workflows.export import ExportReport, export_masks, export_predictions
from cytoreview.workflows.importing import ImportReport, import_images
from cytoreview.workflows.report import write_report
from cytoreview.workflows.review_data import (
    ClassifyReport,
    ExplainReport,
    classify_project,
    explain_project,
)
from cytoreview.workflows.seeds import pick_seeds
from cytoreview.workflows.segmentation import (
    SegmentReport,
    SegTrainReport,
    SegTrainRequest,
    evaluate_segmentation,
    segment_project,
    train_segmentation,
)
from cytoreview.workflows.status import ProjectStatus, project_status

DEMO_PAINTER = "demo-pathologist"


@dataclass
class DemoDataReport:
    """Where a synthetic data set was written."""

    out: Path
    images: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    manifest: Path | None = None


def write_demo_data(
    out: str | Path,
    n: int = 200,
    *,
    seed: int = 0,
    field_fraction: float = 0.1,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, DemoDataReport]:
    """Write ``n`` synthetic Pap images with exact masks as an importable data set.

    Layout: ``images/<class>/<name>.png`` (a folder tree import), ``masks/<name>.png``
    (0/1/2) and ``labels.csv`` (a manifest with ``path``, ``class`` and ``split``: every fifth
    image is ``test``, held out from training so its scores are honest).
    """
    out = Path(out)
    report = DemoDataReport(out=out)
    rows = ["path,class,split"]
    for step, (name, sample) in enumerate(
        synth_dataset(n, seed=seed, field_fraction=field_fraction), start=1
    ):
        if cancel is not None and cancel.cancelled:
            break
        rel = f"images/{sample.label}/{name}.png"
        write_png(out / rel, sample.image)
        write_png(out / "masks" / f"{name}.png", sample.mask)
        rows.append(f"{rel},{sample.label},{'test' if step % 5 == 0 else 'train'}")
        report.images += 1
        report.per_class[sample.label] = report.per_class.get(sample.label, 0) + 1
        yield Progress("data", step, n, f"{name} ({sample.label}, {sample.kind})")
    report.manifest = write_text(out / "labels.csv", "\n".join(rows) + "\n")
    return report


@dataclass
class DemoReport:
    """What the demo built, for the CLI to show."""

    root: Path
    project: Path
    data: DemoDataReport
    imported: ImportReport
    exported: ExportReport
    overview: Path
    status: ProjectStatus
    painted: int = 0
    training: SegTrainReport | None = None
    segmented: SegmentReport | None = None
    auto_scores: dict[str, float] | None = None
    classifier: ClsTrainReport | None = None
    classified: ClassifyReport | None = None
    explained: ExplainReport | None = None
    test_scores: ClsEvaluation | None = None
    predictions_csv: Path | None = None
    report_html: Path | None = None
    cancelled: bool = False


def run_demo(
    out: str | Path,
    *,
    actor: str,
    n: int = 80,
    per_class: int = 5,
    seed: int = 0,
    epochs: int = 30,
    cls_epochs: int = 15,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, DemoReport]:
    """Build a demo project under ``out`` (a previous demo there is replaced).

    With ``epochs`` > 0 a U-Net is trained on the painted seeds and auto-masks the other
    images, which are then scored against the synthetic truth. With ``cls_epochs`` > 0 a
    classifier is trained on the training split (painted and auto masks), every image is
    classified and explained, and the held-out test split is scored.
    """
    root = Path(out)
    clear_demo_folder(root)
    mark_demo_folder(root)
    data = yield from write_demo_data(root / "source", n, seed=seed, cancel=cancel)
    project_dir = root / "project"
    with Project.init(project_dir, actor=actor, scheme=CLASS_SCHEMES["bethesda"]) as project:
        yield Progress("init", 1, 1, f"project created at {project_dir}")
        imported = yield from import_images(
            project, root / "source" / "labels.csv", actor=actor, cancel=cancel
        )
        seed_images, painted = yield from _paint_seeds(
            project, root / "source", actor=actor, per_class=per_class, seed=seed, cancel=cancel
        )
        training = segmented = scores = None
        if epochs > 0 and painted >= 2 and not (cancel and cancel.cancelled):
            request = SegTrainRequest(epochs=epochs, seed=seed)
            training = yield from train_segmentation(project, request, actor=actor, cancel=cancel)
        if training is not None and training.best is not None:
            segmented = yield from segment_project(project, actor=actor, cancel=cancel)
            evaluation = yield from evaluate_segmentation(
                project, root / "source" / "masks", provenance=["auto"]
            )
            scores = {
                f"{metric}_{cls}": getattr(evaluation.report.mean[cls], metric)
                for cls in ("cytoplasm", "nucleus") for metric in ("dice", "iou")
            }  # fmt: skip
        classifier = classified = explained = test_scores = predictions_csv = report_html = None
        if cls_epochs > 0 and not (cancel and cancel.cancelled):
            request = ClsTrainRequest(epochs=cls_epochs, seed=seed)
            classifier = yield from train_classification(
                project, request, actor=actor, cancel=cancel
            )
        if classifier is not None and classifier.best is not None:
            classified = yield from classify_project(project, actor=actor, cancel=cancel)
            explained = yield from explain_project(project, flipping_steps=5, cancel=cancel)
            test_scores = evaluate_classification(project)
            predictions_csv = root / "exports" / "predictions.csv"
            yield from export_predictions(project, predictions_csv, cancel=cancel)
        exported = yield from export_masks(project, root / "exports" / "masks", cancel=cancel)
        if not (cancel and cancel.cancelled):
            written = yield from write_report(
                project, root / "report", seg_truth_dir=root / "source" / "masks", cancel=cancel
            )
            report_html = written.out / "report.html"
        overview = write_png(root / "overview.png", _overview(project, seed_images))
        yield Progress("overview", 1, 1, f"overview written to {overview}")
        status = project_status(project)
    return DemoReport(
        root=root,
        project=project_dir,
        data=data,
        imported=imported,
        exported=exported,
        overview=overview,
        status=status,
        painted=painted,
        training=training,
        segmented=segmented,
        auto_scores=scores,
        classifier=classifier,
        classified=classified,
        explained=explained,
        test_scores=test_scores,
        predictions_csv=predictions_csv,
        report_html=report_html,
        cancelled=bool(cancel and cancel.cancelled),
    )


def write_sample_project(
    out: str | Path | None, *, actor: str, n: int = 16, per_class: int = 2, seed: int = 0
) -> Generator[Progress, None, Path]:
    """Write a small synthetic project with painted seeds: the demo's first steps, no training.

    Layout: ``source/`` (the synthetic data set) and ``project/`` (the project folder, returned
    through ``StopIteration.value``) under ``out``, or under a new temporary folder if None.
    A few seconds for the default 16 images; nothing is downloaded.
    """
    root = Path(out) if out is not None else new_scratch_folder("cytoreview-sample-")
    yield from write_demo_data(root / "source", n, seed=seed)
    project_dir = root / "project"
    with Project.init(project_dir, actor=actor, scheme=CLASS_SCHEMES["bethesda"]) as project:
        yield from import_images(project, root / "source" / "labels.csv", actor=actor)
        yield from _paint_seeds(project, root / "source", actor=actor, per_class=per_class,
                                seed=seed)  # fmt: skip
    return project_dir


def _paint_seeds(
    project: Project,
    source: Path,
    *,
    actor: str,
    per_class: int,
    seed: int,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[list[ImageRecord], int]]:
    """Pick the seed set and give each seed its synthetic truth as a manual mask.

    Returns the seed images and how many were painted (fewer when cancelled).
    """
    seeds = pick_seeds(project, actor=actor, per_class=per_class, seed=seed)
    yield Progress("seeds", 1, 1, f"{sum(map(len, seeds.picked.values()))} seed images")
    painted = 0
    seed_images = [im for im in project.images() if im.is_seed]
    for step, image in enumerate(seed_images, start=1):
        if cancel is not None and cancel.cancelled:
            break
        # The synthetic truth stands in for a pathologist's painting.
        truth = read_label_mask(source / "masks" / f"{image.name}.png")
        project.save_mask(
            image.id, truth, Provenance.MANUAL, actor=DEMO_PAINTER, note="demo: synthetic truth"
        )
        painted += 1
        yield Progress("paint", step, len(seed_images), f"{image.name} painted")
    return seed_images, painted


def _overview(project: Project, seeds: list[ImageRecord]) -> np.ndarray:
    """A sheet: painted seeds, then the most uncertain auto masks (what a reviewer sees first)."""
    order = {label: i for i, label in enumerate(project.scheme.classes)}
    current = project.current_versions()
    chosen = sorted(seeds, key=lambda im: (order.get(im.class_label or "", 99), im.name))
    autos = [
        im for im in project.images() if im.id in current and current[im.id].uncertainty is not None
    ]
    autos.sort(key=lambda im: -(current[im.id].uncertainty or 0.0))
    picked = chosen[: 12 if autos else 24] + autos[:12]
    tiles, captions = [], []
    for image in picked:
        rgb = project.load_image(image).rgb
        found = project.current_mask(image.id)
        tiles.append(rgb)
        captions.append(f"{image.class_label} {image.width}x{image.height}")
        if found is not None:
            version = found[0]
            tiles.append(overlay_mask(rgb, found[1]))
            extra = f" u={version.uncertainty:.2f}" if version.uncertainty is not None else ""
            captions.append(f"v{version.version} {version.provenance.value}{extra}")
    return contact_sheet(tiles, captions, columns=8)
