"""Use cases on whole-slide images: their pixel size, and what is listed about them.

Registering a slide happens at import (:func:`cytoreview.workflows.importing.import_images`);
cutting cells is :mod:`cytoreview.workflows.cell_finder`; whole-slide segmentation is
:mod:`cytoreview.workflows.slide_segmentation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.storage.project import Project
from cytoreview.storage.slide_store import SlideRecord, SlideStore


@dataclass(frozen=True)
class SlideSummary:
    """One line's worth about a slide, for ``cytoreview slides`` and the workbench."""

    name: str
    width: int
    height: int
    levels: int
    pixel_size_um: float | None
    objective: float | None
    linked: bool
    path: str
    crops: int
    available: bool


def slide_summaries(project: Project) -> list[SlideSummary]:
    """Every slide of the project with its size, pixel size, file and number of crops."""
    store = SlideStore(project)
    return [
        SlideSummary(
            name=s.name,
            width=s.width,
            height=s.height,
            levels=len(s.levels),
            pixel_size_um=s.pixel_size_um,
            objective=s.objective,
            linked=s.stored_path is None,
            path=str(store.path(s)),
            crops=len(store.crops(s)),
            available=store.path(s).is_file(),
        )
        for s in store.slides()
    ]


def set_slide_pixel_size(
    project: Project, slide: str, pixel_size_um: float, *, actor: str
) -> SlideRecord:
    """Set a slide's micrometres per level-0 pixel, and that of every crop already cut from it.

    A crop cut at level ``L`` gets the slide's size times that level's downsample, so the
    measurements of its cells (areas in um^2, diameters) follow.
    """
    store = SlideStore(project)
    record = store.slide(slide)
    store.set_pixel_size(record, pixel_size_um, actor=actor)
    record = store.slide(record.id)
    by_level: dict[int, list[int]] = {}
    for crop in store.crops(record):
        by_level.setdefault(crop.slide_level or 0, []).append(crop.id)
    for level, ids in sorted(by_level.items()):
        project.set_pixel_size(record.level_pixel_size(level), actor=actor, image_ids=ids)
    return record
