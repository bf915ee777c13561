"""Scoring the stored predictions against the expert's classes (a CSV or the project labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoreview.errors import NotEnoughDataError, UnknownClassError
from cytoreview.metrics.classification import (
    BinaryReport,
    ClassificationReport,
    binary_report,
    classification_report,
    roc_curve,
)
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionRecord, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.storage.sources import read_truth_table


@dataclass
class ClsEvaluation:
    """Classification scores of a project's current predictions."""

    source: str  # the truth CSV, or "project labels"
    model_ids: list[str]
    multiclass: ClassificationReport | None
    binary: BinaryReport | None
    n_matched: int
    unmatched: list[str] = field(default_factory=list)  # truth rows with no image/prediction
    problems: list[str] = field(default_factory=list)
    roc: dict[str, tuple[list[float], list[float], float | None]] = field(default_factory=dict)
    binary_roc: tuple[list[float], list[float], float | None] | None = None
    on_training_images: int = 0  # scored images the model was trained on (optimistic)
    source_is_csv: bool = False  # the truth came from a CSV, not the project's labels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "model_ids": self.model_ids,
            "n_matched": self.n_matched,
            "unmatched": self.unmatched,
            "problems": self.problems,
            "on_training_images": self.on_training_images,
            "multiclass": None if self.multiclass is None else self.multiclass.to_dict(),
            "binary": None if self.binary is None else self.binary.to_dict(),
        }


def training_images_note(evaluation: ClsEvaluation) -> str:
    """The warning when scored images were used to train the model (empty when none were)."""
    n = evaluation.on_training_images
    if not n:
        return ""
    scored = f"the {max(evaluation.n_matched, n)} scored images"
    advice = "score on images it never saw"
    if not evaluation.source_is_csv:
        advice = "give held-out truth with --truth"
    return (
        f"{n} of {scored} were used to train or validate the classifier: these scores are "
        f"optimistic; {advice}"
    )


def _truth(
    project: Project, truth_csv: Path | None
) -> tuple[dict[int, str], list[str], list[str], str]:
    by_name = {r.name: r for r in project.images()}
    if truth_csv is None:
        held_out = {r.id: r.class_label for r in by_name.values()
                    if r.class_label and r.split == "test"}  # fmt: skip
        if held_out:  # never used for training: honest scores
            return held_out, [], [], f"the test split ({len(held_out)} held-out images)"
        labels = {r.id: r.class_label for r in by_name.values() if r.class_label}
        return labels, [], [], "project labels"
    table, problems = read_truth_table(Path(truth_csv))
    truth: dict[int, str] = {}
    unmatched, notes = [], [str(p) for p in problems]
    for stem, label in table.items():
        record = by_name.get(stem)
        if record is None:
            unmatched.append(f"{stem}: not an image of this project")
            continue
        try:
            truth[record.id] = project.scheme.resolve(label)
        except UnknownClassError as exc:
            notes.append(f"{stem}: {exc}")
    return truth, unmatched, notes, str(truth_csv)


def _trained_on(project: Project, model_ids: set[str]) -> set[str]:
    """Names of images used to train (train or validation) any of ``model_ids``."""
    names: set[str] = set()
    for run in ModelStore(project).runs():
        if run.model_id in model_ids:
            validation = run.metrics.get("validation", {}) if run.metrics else {}
            names.update(validation.get("images", []))
            names.update(run.config.get("data", {}).get("names", []))
    return names


def evaluate_classification(
    project: Project, truth_csv: str | Path | None = None, *, model_id: str | None = None
) -> ClsEvaluation:
    """Score the newest predictions against ``truth_csv`` (or the project's own class labels).

    Parameters
    ----------
    project
        The project whose stored predictions are scored.
    truth_csv
        CSV with an image column (name, stem or path) and a class column. Without it the
        labels of the project's ``test`` split are used (held out from training); a project
        without a test split is scored on all its labels. Either way, scored images the model
        was trained or validated on are counted in ``on_training_images``, so the CLI, the
        window and the report can say the figures are optimistic.
    model_id
        Score this model's predictions only (default: the newest prediction of each image).
    """
    truth, unmatched, problems, source = _truth(
        project, Path(truth_csv) if truth_csv is not None else None
    )
    store = PredictionStore(project)
    preds = store.latest_predictions("bethesda", model_id=model_id)
    binary = store.latest_predictions("binary", model_id=model_id)
    names = {r.id: r.name for r in project.images()}
    classes = list(project.scheme.classes)
    matched = [i for i in truth if i in preds]
    unmatched += [f"{names[i]}: no prediction yet" for i in truth if i not in preds]
    if not matched and not any(i in binary for i in truth):
        raise NotEnoughDataError(
            f"{project.root}: no image with both a true class and a prediction "
            f"({len(truth)} true classes, {len(preds)} predictions); run `cytoreview classify`"
        )
    evaluation = ClsEvaluation(
        source=source,
        model_ids=sorted({preds[i].model_id for i in matched} | {binary[i].model_id for i in truth
                                                                if i in binary}),
        multiclass=None, binary=None, n_matched=len(matched), unmatched=unmatched,
        problems=problems, source_is_csv=truth_csv is not None,
    )  # fmt: skip
    if matched:
        probs = np.array([_probs(preds[i], classes) for i in matched])
        y = [classes.index(truth[i]) for i in matched]
        evaluation.multiclass = classification_report(y, probs, classes)
        for k, name in enumerate(classes):
            positives = [t == k for t in y]
            if any(positives) and not all(positives):
                fpr, tpr, _ = roc_curve(positives, probs[:, k])
                evaluation.roc[name] = (fpr.tolist(), tpr.tolist(), evaluation.multiclass.auc[k])
    with_binary = [i for i in truth if i in binary]
    if with_binary:
        y_bin = [project.scheme.is_revisable(truth[i]) for i in with_binary]
        p_rev = [binary[i].probabilities.get("revisable", 0.0) for i in with_binary]
        evaluation.binary = binary_report(
            y_bin, p_rev, positive_name="revisable", negative_name="not revisable"
        )
        if any(y_bin) and not all(y_bin):
            fpr, tpr, _ = roc_curve(y_bin, p_rev)
            evaluation.binary_roc = (fpr.tolist(), tpr.tolist(), evaluation.binary.auc)
    # Whatever the truth's source: a truth CSV can list training images too (a whole data set
    # exported with its labels), and then the scores are just as optimistic.
    seen = _trained_on(project, set(evaluation.model_ids))
    scored = matched or with_binary
    evaluation.on_training_images = sum(1 for i in scored if names[i] in seen)
    return evaluation


def _probs(pred: PredictionRecord, classes: list[str]) -> list[float]:
    """Probabilities in scheme order; a class the model did not learn gets 0."""
    return [float(pred.probabilities.get(c, 0.0)) for c in classes]
