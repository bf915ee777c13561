"""Choosing the seed set: the images a pathologist paints by hand to teach the U-Net."""

from __future__ import annotations

from dataclasses import dataclass, field

from cytoreview.data.sampling import Candidate, stratified_pick
from cytoreview.settings import DEFAULT_SEEDS_PER_CLASS
from cytoreview.storage.catalog import Catalog
from cytoreview.storage.project import Project


@dataclass
class SeedReport:
    """The seed set picked, per class, and the shortfalls."""

    per_class: int
    seed: int
    picked: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unlabelled_skipped: int = 0


def pick_seeds(
    project: Project,
    *,
    actor: str,
    per_class: int = DEFAULT_SEEDS_PER_CLASS,
    seed: int = 0,
) -> SeedReport:
    """Pick a stratified, reproducible seed set of ``per_class`` images per class.

    Seed images whose current mask is a person's work stay in the set whatever the seed, so
    re-picking never discards painting already done. Unlabelled images are not eligible, nor
    are images of the ``test`` split: they are held out from training, so painting them would
    not help the model.
    """
    images = project.images()
    current = project.current_versions()
    painted = {i for i, v in current.items() if v.provenance.is_human}
    candidates = [
        Candidate(im.id, im.class_label, im.sha256)
        for im in images
        if im.class_label is not None and im.split != "test"
    ]
    report = SeedReport(per_class=per_class, seed=seed)
    report.unlabelled_skipped = sum(1 for im in images if im.class_label is None)
    # Seeds someone has already painted stay seeds: re-picking never discards that work.
    painted_seeds = {im.id for im in images if im.is_seed and im.id in painted}
    picks = stratified_pick(candidates, per_class, seed, keep=painted_seeds)
    names = {im.id: im.name for im in images}
    for label in project.scheme.classes:
        ids = picks.get(label, [])
        report.picked[label] = [names[i] for i in ids]
        if not ids:
            report.warnings.append(f"{label}: no labelled images; this class has no seeds")
        elif len(ids) < per_class:
            report.warnings.append(f"{label}: only {len(ids)} image(s) for a target of {per_class}")
    project.set_seeds(
        [i for ids in picks.values() for i in ids], actor=actor, per_class=per_class, seed=seed
    )
    with project.catalog.write() as conn:
        Catalog.set_meta(conn, "seeds", {"per_class": per_class, "seed": seed})
    return report


def first_image_to_paint(project: Project) -> int | None:
    """The image a person should see first when the project opens (None: no images).

    The first seed (by name) without a person's mask; else the first image without one; else
    the first image. A project that opens on an empty canvas asks the person to find the table
    first; the seed set is what the painting is for.
    """
    images = sorted(project.images(), key=lambda im: im.name)
    if not images:
        return None
    current = project.current_versions()

    def unpainted(image_id: int) -> bool:
        version = current.get(image_id)
        return version is None or not version.provenance.is_human

    for candidates in ([im for im in images if im.is_seed], images):
        for im in candidates:
            if unpainted(im.id):
                return im.id
    return images[0].id
