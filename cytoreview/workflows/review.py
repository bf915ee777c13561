"""The review queue: most uncertain first; accept, edit or skip; the expert's calls.

The expert's own class calls are stored beside the model's, and disagreements are listed.

An item is uncertain through its auto mask (the segmenter's per-image uncertainty) or through
its prediction (normalised entropy of the class probabilities); the queue sorts by the larger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cytoreview.errors import ProjectError
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.storage.records import MaskVersion
from cytoreview.types import Provenance

#: Decisions a reviewer can record on an image.
DECISIONS: tuple[str, ...] = ("approve", "edit", "skip")


@dataclass(frozen=True)
class ReviewItem:
    """One image waiting for a look, with why it is in the queue."""

    image_id: int
    name: str
    true_class: str | None
    mask_provenance: str | None  # None: no mask
    mask_uncertainty: float | None
    pred_class: str | None
    pred_probability: float | None
    pred_uncertainty: float | None
    expert_call: str | None  # the newest class call a reviewer recorded
    skipped: bool = False
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def priority(self) -> float:
        """The larger of the two uncertainties (0 when neither is known)."""
        return max(self.mask_uncertainty or 0.0, self.pred_uncertainty or 0.0)


def review_queue(project: Project, *, include_done: bool = False) -> list[ReviewItem]:
    """Images to review, most uncertain first; skipped ones go to the end.

    An image is done when its mask is approved and a reviewer's class call is recorded (or it
    has a class label and no prediction disagrees). ``include_done`` lists every image.
    """
    store = PredictionStore(project)
    preds = store.latest_predictions("bethesda")
    calls = store.latest_reviews()
    decisions = _latest_decisions(project)
    current = project.current_versions()
    items = []
    for record in project.images():
        version = current.get(record.id)
        pred = preds.get(record.id)
        call = calls.get(record.id)
        reasons = []
        if version is None:
            reasons.append("no mask")
        elif version.provenance is Provenance.AUTO:
            reasons.append("auto mask to check")
        elif version.provenance is Provenance.CORRECTED:
            reasons.append("corrected mask to approve")
        expert = call.class_call if call is not None else record.class_label
        if pred is not None and expert is not None and pred.pred_class != expert:
            reasons.append(f"model says {pred.pred_class}, expert {expert}")
        if pred is not None and call is None:
            reasons.append("prediction to confirm")
        done = not reasons
        if done and not include_done:
            continue
        items.append(
            ReviewItem(
                image_id=record.id,
                name=record.name,
                true_class=record.class_label,
                mask_provenance=None if version is None else version.provenance.value,
                mask_uncertainty=None if version is None else version.uncertainty,
                pred_class=None if pred is None else pred.pred_class,
                pred_probability=None if pred is None else pred.probabilities.get(pred.pred_class),
                pred_uncertainty=None if pred is None else pred.uncertainty,
                expert_call=None if call is None else call.class_call,
                skipped=decisions.get(record.id) == "skip",
                reasons=tuple(reasons),
            )
        )
    # Skipped last; then most uncertain first; the name breaks ties so the order is stable.
    items.sort(key=lambda it: (it.skipped, -it.priority, it.name))
    return items


def _latest_decisions(project: Project) -> dict[int, str]:
    rows = project.catalog.query(
        "SELECT image_id, decision FROM reviews WHERE decision IS NOT NULL ORDER BY id"
    )
    return {int(r["image_id"]): str(r["decision"]) for r in rows}


@dataclass(frozen=True)
class Approval:
    """What approving an image's mask wrote.

    Attributes
    ----------
    version
        The approved mask version: a new one, or the newest one when it was approved already.
    review_id
        The review record of this decision (written in either case: the log says who looked).
    new_version
        False when the newest version was approved already: only the decision is recorded.
    empty
        The approved mask has no cell on it (worth a warning: rarely what a person meant).
    """

    version: MaskVersion
    review_id: int
    new_version: bool
    empty: bool


def approve_mask(
    project: Project, image_id: int, *, reviewer: str, class_call: str | None = None
) -> Approval:
    """Accept the current mask as ``approved`` (a new version) and record the decision.

    The one approval of every front end (the Annotate dock's button, the Review dock's Accept):
    both write the same records, an ``approved`` mask version (unless the newest version is
    approved already) and a review record with the decision ``approve``.

    Parameters
    ----------
    project
        The open project.
    image_id
        The image whose current mask is approved.
    reviewer
        Who approved (the version's author and the review's reviewer; audited).
    class_call
        The reviewer's class call to record with the decision, if any.

    Returns
    -------
    Approval
        The approved version and the review record.

    Raises
    ------
    ProjectError
        If the image has no readable mask to approve.
    """
    found = project.current_mask(image_id)
    if found is None:
        raise ProjectError(f"{project.image(image_id).name}: no mask to approve; paint one first")
    version, mask = found
    approved = version
    if version.provenance is not Provenance.APPROVED:
        approved = project.save_mask(
            image_id, mask, Provenance.APPROVED, actor=reviewer,
            note=f"approved v{version.version} ({version.provenance.value})",
        )  # fmt: skip
    review_id = PredictionStore(project).add_review(
        image_id, reviewer=reviewer, class_call=class_call, mask_version_id=approved.id,
        decision="approve",
    )  # fmt: skip
    return Approval(approved, review_id, approved is not version, not bool(np.any(mask)))


def approve(
    project: Project, image_id: int, *, reviewer: str, class_call: str | None = None
) -> int:
    """:func:`approve_mask`, returning only the id of the approved mask version."""
    return approve_mask(project, image_id, reviewer=reviewer, class_call=class_call).version.id


def skip(project: Project, image_id: int, *, reviewer: str, comment: str | None = None) -> None:
    """Send an image to the end of the queue (the decision is kept in the review log)."""
    PredictionStore(project).add_review(
        image_id, reviewer=reviewer, decision="skip", comment=comment
    )


def record_call(project: Project, image_id: int, class_call: str, *, reviewer: str) -> None:
    """Store the reviewer's own class call beside the model's prediction."""
    PredictionStore(project).add_review(image_id, reviewer=reviewer, class_call=class_call)


@dataclass(frozen=True)
class Disagreement:
    """An image where the model and the expert differ."""

    image_id: int
    name: str
    expert: str
    expert_source: str  # "review" (a reviewer's call) or "label" (the imported class)
    model: str
    model_probability: float
    model_id: str


def disagreements(project: Project) -> list[Disagreement]:
    """Every image whose newest prediction differs from the expert's class, surest first."""
    store = PredictionStore(project)
    preds = store.latest_predictions("bethesda")
    calls = store.latest_reviews()
    out = []
    for record in project.images():
        pred = preds.get(record.id)
        if pred is None:
            continue
        call = calls.get(record.id)
        expert = call.class_call if call is not None else record.class_label
        if expert is None or expert == pred.pred_class:
            continue
        out.append(
            Disagreement(
                record.id, record.name, expert, "review" if call is not None else "label",
                pred.pred_class, float(pred.probabilities.get(pred.pred_class, 0.0)),
                pred.model_id,
            )
        )  # fmt: skip
    out.sort(key=lambda d: (-d.model_probability, d.name))
    return out
