"""A project's state at a glance: images per class, seed quota, masks per provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

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
