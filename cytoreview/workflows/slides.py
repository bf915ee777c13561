"""Use cases on whole-slide images: their pixel size, and what is listed about them.

Registering a slide happens at import (:func:`cytoreview.workflows.importing.import_images`);
cutting cells is :mod:`cytoreview.workflows.cell_finder`; whole-slide segmentation is
:mod:`cytoreview.workflows.slide_segmentation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoreview.errors import ProjectError
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord
from cytoreview.storage.slide_results import LabelPyramid, SegmentationRun
from cytoreview.storage.slide_store import SlideRecord, SlideStore
from cytoreview.storage.slides import Slide, is_slide_file, open_slide


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


@dataclass
class SlideView:
    """What the workbench needs to show a slide: one lazy array per level, full size first.

    Keep it open while the layer is shown (the arrays read the file); :meth:`close` after.
    """

    name: str
    levels: list[Any]
    downsamples: list[float]
    pixel_size_um: float | None
    _slide: Slide

    def close(self) -> None:
        """Release the slide file."""
        self._slide.close()


def open_slide_view(project: Project, slide: str) -> SlideView:
    """Open a registered slide lazily for display (nothing is decoded until a tile is shown)."""
    store = SlideStore(project)
    record = store.slide(slide)
    opened = store.open(record)
    return SlideView(
        record.name,
        [opened.level_array(i) for i in range(len(opened.levels))],
        [lv.downsample for lv in opened.levels],
        record.pixel_size_um,
        opened,
    )


def open_slide_file(path: str | Path) -> SlideView | None:
    """Open a slide file outside any project, lazily, for display (napari's file reader).

    Returns
    -------
    SlideView or None
        None when ``path`` is not a whole-slide image (an ordinary TIFF is left to napari's
        own reader; only the header is read to tell).

    Raises
    ------
    InputFileError
        If it looks like a slide but no reader can open it.
    """
    if not is_slide_file(path):
        return None
    opened = open_slide(path)
    return SlideView(
        Path(path).name,
        [opened.level_array(i) for i in range(len(opened.levels))],
        [lv.downsample for lv in opened.levels],
        opened.pixel_size_um,
        opened,
    )


@dataclass(frozen=True)
class SegmentationView:
    """A slide's label pyramid for display: lazy arrays and the level-0 px per label px."""

    levels: list[Any]
    downsample: float
    path: str


def slide_segmentation_view(project: Project, slide: str) -> SegmentationView | None:
    """The finished label pyramid of a slide (None when it has not been segmented)."""
    import dask.array as da

    store = SlideStore(project)
    record = store.slide(slide)
    run = SegmentationRun(store.results_dir(record) / "segmentation")
    params = run.params()
    if params is None or not run.cells_path.is_file():  # the table is written last
        return None
    pyramid = LabelPyramid(run.labels_path)
    levels = [da.from_zarr(pyramid.level(k)) for k in range(pyramid.n_levels())]
    return SegmentationView(
        levels, record.levels[int(params["level"])].downsample, str(run.labels_path)
    )


def cut_regions(
    project: Project,
    slide: str,
    boxes: list[tuple[int, int, int, int]],
    *,
    level: int = 0,
    actor: str,
    kind: str = "region",
) -> list[ImageRecord]:
    """Cut rectangles of a slide into the project as ordinary images.

    Parameters
    ----------
    project
        The open project.
    slide
        The slide's name.
    boxes
        ``(y, x, height, width)`` in level-0 pixels (as drawn on the slide's layer); clipped
        to the slide; empty ones are skipped.
    level
        The level whose pixels the images get (0: full resolution).
    actor
        Who cut them (audited).
    kind
        ``region`` (drawn by a person) or ``cell`` (found by the cell finder).

    Returns
    -------
    list of ImageRecord
        The images, new or already there (the same pixels cut before).
    """
    store = SlideStore(project)
    record = store.slide(slide)
    if not 0 <= level < len(record.levels):
        raise ProjectError(f"slide {record.name} has levels 0-{len(record.levels) - 1}")
    down = record.levels[level].downsample
    images = []
    with store.open(record) as opened:
        for y, x, h, w in boxes:
            y0, x0 = max(0, int(y)), max(0, int(x))
            y1, x1 = min(record.height, int(y + h)), min(record.width, int(x + w))
            ly, lx = round(y0 / down), round(x0 / down)
            lh, lw = max(0, round((y1 - y0) / down)), max(0, round((x1 - x0) / down))
            if lh < 1 or lw < 1:
                continue
            rgb = opened.read_region(level, ly, lx, lh, lw)
            corner_x, corner_y = round(lx * down), round(ly * down)
            outcome = store.add_crop(
                record, rgb, level=level, x=corner_x, y=corner_y, actor=actor, kind=kind
            )
            images.append(outcome.record)
    return images
