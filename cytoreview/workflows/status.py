"""A project's state at a glance: images per class, seed quota, masks per provenance.

Also one row per image (:func:`image_rows`): the join the workbench's project table shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance

#: Column order of mask states, "none" first.
MASK_STATES: tuple[str, ...] = ("none", *(p.value for p in Provenance))


@dataclass
class ClassRow:
    """One class (or the unlabelled images) in the status table."""

    label: str
    revisable: bool | None
    images: int = 0
    seeds: int = 0
    seeds_painted: int = 0
    seed_target: int = 0
    masks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MASK_STATES, 0))


@dataclass
class ProjectStatus:
    """Counts for ``cytoreview status`` and the GUI's project panel."""

    root: str
    classes: list[ClassRow]
    unlabelled: ClassRow
    seed_target: int
    schema_version: int
    warnings: list[str]

    @property
    def total_images(self) -> int:
        """Images in the project."""
        return sum(r.images for r in self.classes) + self.unlabelled.images


def project_status(project: Project) -> ProjectStatus:
    """Count the project's images per class, seeds and masks per provenance."""
    seeds_meta = project.catalog.get_meta("seeds") or {}
    target = int(seeds_meta.get("per_class", 0))
    scheme = project.scheme
    rows = {c: ClassRow(c, scheme.is_revisable(c), seed_target=target) for c in scheme.classes}
    unlabelled = ClassRow("(no class)", None)
    current = project.current_versions()
    for image in project.images():
        row = rows.get(image.class_label or "", unlabelled)
        row.images += 1
        version = current.get(image.id)
        state = version.provenance.value if version else "none"
        row.masks[state] += 1
        if image.is_seed:
            row.seeds += 1
            row.seeds_painted += bool(version and version.provenance.is_human)
    warnings = []
    for row in rows.values():
        if row.images == 0:
            warnings.append(f"{row.label}: no images in the project")
        elif target and row.images < target:
            warnings.append(
                f"{row.label}: {row.images} image(s), fewer than the seed target {target}"
            )
    if unlabelled.images:
        warnings.append(f"{unlabelled.images} image(s) have no class label")
    return ProjectStatus(
        root=str(project.root),
        classes=list(rows.values()),
        unlabelled=unlabelled,
        seed_target=target,
        schema_version=project.catalog.schema_version(),
        warnings=warnings,
    )


# -- one row per image ---------------------------------------------------------------------------
@dataclass
class ImageRow:
    """One image as the project table shows it: its class, current mask and newest prediction.

    Mutable: the table changes ``status`` / ``mask_uncertainty`` in place when a mask is saved
    (see :func:`mask_states`), rather than re-reading every row.
    """

    id: int
    name: str
    class_label: str | None
    status: str  # "none" or a provenance value
    seed: bool
    pred_class: str | None = None
    pred_probability: float | None = None
    pred_uncertainty: float | None = None
    mask_uncertainty: float | None = None  # of an auto mask (human masks have none)

    @property
    def uncertainty(self) -> float | None:
        """The larger of the two uncertainties, as the review queue sorts (None: neither)."""
        known = [u for u in (self.mask_uncertainty, self.pred_uncertainty) if u is not None]
        return max(known) if known else None

    @property
    def prediction(self) -> str:
        """``"HSIL 72%"``, or empty without a prediction."""
        if self.pred_class is None:
            return ""
        if self.pred_probability is None:
            return self.pred_class
        return f"{self.pred_class} {100 * self.pred_probability:.0f}%"


def image_rows(project: Project) -> list[ImageRow]:
    """One row per image of ``project``, in catalog order (three catalog queries).

    The join of the images, their current mask versions and their newest Bethesda predictions,
    made here once rather than in each front end.
    """
    current = project.current_versions()
    predictions = PredictionStore(project).latest_predictions("bethesda")
    rows = []
    for im in project.images():
        version, pred = current.get(im.id), predictions.get(im.id)
        rows.append(
            ImageRow(
                im.id,
                im.name,
                im.class_label,
                version.provenance.value if version is not None else "none",
                im.is_seed,
                pred_class=None if pred is None else pred.pred_class,
                pred_probability=None if pred is None else pred.probabilities.get(pred.pred_class),
                pred_uncertainty=None if pred is None else pred.uncertainty,
                mask_uncertainty=None if version is None else version.uncertainty,
            )
        )
    return rows


@dataclass(frozen=True)
class MaskState:
    """An image's current mask as a row shows it."""

    status: str  # "none" or a provenance value
    uncertainty: float | None  # of an auto mask


def mask_states(project: Project, image_ids: Iterable[int] | None = None) -> dict[int, MaskState]:
    """The current mask state of ``image_ids`` (None: of every image that has a mask).

    What :func:`image_rows` puts in ``status`` and ``mask_uncertainty``, for refreshing some rows
    after masks were saved (one catalog query).
    """
    current = project.current_versions()
    ids = current.keys() if image_ids is None else image_ids
    out = {}
    for image_id in ids:
        version = current.get(image_id)
        out[image_id] = (
            MaskState("none", None)
            if version is None
            else MaskState(version.provenance.value, version.uncertainty)
        )
    return out
