"""Exporting a slide's results for QuPath: GeoJSON cells in slide coordinates, labels as OME-TIFF.

The GeoJSON holds, in level-0 pixel coordinates of the slide (what QuPath uses for an image):

- every cell of the whole-slide segmentation (unclassified: the slide segmentation does not
  classify), with its nucleus (``nucleusGeometry``) and QuPath-style measurements; each cell is
  taken from the chunk whose core holds its centroid, read with the run's halo, so a cell cut
  by a chunk border is exported once and whole;
- every crop cut from the slide that has a current mask (painted, corrected or auto), with its
  class (the expert's, else the latest prediction), so reviewed cells come back to QuPath with
  their Bethesda call.

Features are streamed to the file: a slide's million cells are never in memory at once.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cytoreview.data.geojson import class_colour, classification, mask_to_features
from cytoreview.errors import ProjectError
from cytoreview.inference.slide_segment import Chunk, chunk_grid
from cytoreview.morphometry.measure import measure_image
from cytoreview.storage.geojson_files import write_feature_stream
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.storage.slide_results import LabelPyramid, SegmentationRun, write_label_tiff
from cytoreview.storage.slide_store import SlideRecord, SlideStore
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.geojson import image_class, qupath_measurements

_EIGHT = np.ones((3, 3), bool)


@dataclass
class SlideExport:
    """What :func:`export_slide` wrote."""

    slide: str
    geojson: str | None = None
    tiff: str | None = None
    segmented_cells: int = 0
    crop_cells: int = 0
    cancelled: bool = False

    @property
    def summary(self) -> str:
        """One line for a person."""
        parts = []
        if self.geojson:
            parts.append(
                f"{self.segmented_cells} segmented + {self.crop_cells} crop cell(s) -> "
                f"{self.geojson}"
            )
        if self.tiff:
            parts.append(f"labels -> {self.tiff}")
        text = f"slide {self.slide}: " + "; ".join(parts or ["nothing to export"])
        return text + (" (stopped: no file written)" if self.cancelled else "")


def export_slide(
    project: Project,
    slide_name: str,
    out_dir: str | Path | None = None,
    *,
    geojson: bool = True,
    tiff: bool = False,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, SlideExport]:
    """Write ``<slide>.geojson`` (and with ``tiff`` ``<slide>.labels.ome.tif``) for QuPath.

    Parameters
    ----------
    project
        The open project.
    slide_name
        A registered slide.
    out_dir
        Where the files go (default ``PROJECT/exports/slides``).
    geojson
        Write the cells (segmentation and crops) as a GeoJSON FeatureCollection.
    tiff
        Write the label pyramid as a pyramidal OME-TIFF too (needs a finished segmentation).
    cancel
        Checked between chunks; a stopped export writes no file.
    """
    store = SlideStore(project)
    record = store.slide(slide_name)
    out = Path(out_dir) if out_dir is not None else project.root / "exports" / "slides"
    report = SlideExport(record.name)
    run = SegmentationRun(store.results_dir(record) / "segmentation")
    params = run.params() if run.cells_path.is_file() else None
    if tiff and params is None:
        raise ProjectError(f"slide {record.name} has no finished segmentation to export")
    if geojson:
        counts = {"segmented": 0, "crops": 0}
        features = _all_features(project, record, run, params, counts, cancel)
        path = out / f"{record.name}.geojson"
        yield Progress("export", 0, 0, f"writing {path}")
        try:
            write_feature_stream(
                path, _until_cancelled(features, cancel), slide=record.name,
                width=record.width, height=record.height, pixel_size_um=record.pixel_size_um,
                coordinates="level-0 pixels of the slide",
            )  # fmt: skip
        except _StoppedError:
            report.cancelled = True
            return report
        report.geojson = str(path)
        report.segmented_cells, report.crop_cells = counts["segmented"], counts["crops"]
    if tiff and params is not None:
        level_size = record.level_pixel_size(int(params["level"]))
        path = out / f"{record.name}.labels.ome.tif"
        yield Progress("export", 0, 0, f"writing {path}")
        write_label_tiff(path, LabelPyramid(run.labels_path), level_size)
        report.tiff = str(path)
    yield Progress("export", 1, 1, report.summary)
    return report


class _StoppedError(Exception):
    """Raised inside the feature stream when the person stops the export."""


def _until_cancelled(
    features: Iterator[dict[str, Any]], cancel: CancelToken | None
) -> Iterator[dict[str, Any]]:
    for feature in features:
        if cancel is not None and cancel.cancelled:
            raise _StoppedError
        yield feature


def _all_features(
    project: Project,
    record: SlideRecord,
    run: SegmentationRun,
    params: dict[str, Any] | None,
    counts: dict[str, int],
    cancel: CancelToken | None,
) -> Iterator[dict[str, Any]]:
    if params is not None:
        for feature in _segmented_features(record, run, params):
            counts["segmented"] += 1
            yield feature
    for feature in _crop_features(project, record):
        counts["crops"] += feature["properties"].get("objectType") == "cell"
        yield feature


def _segmented_features(
    record: SlideRecord, run: SegmentationRun, params: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The segmentation's cells, chunk by chunk in grid order, each from its owning chunk."""
    level = int(params["level"])
    down = record.levels[level].downsample
    pixel = record.level_pixel_size(level)
    labels = LabelPyramid(run.labels_path).level(0)
    done = run.finished_chunks()
    for chunk in chunk_grid(labels.shape, int(params["chunk"]), int(params["halo"])):
        if chunk.index not in done:
            continue
        window = np.asarray(
            labels[
                chunk.read_y : chunk.read_y + chunk.read_height,
                chunk.read_x : chunk.read_x + chunk.read_width,
            ]
        )
        owned = _owned(window, chunk)
        if not owned.any():
            continue
        cells = measure_image(owned, None, pixel, split_touching=False).cells
        yield from mask_to_features(
            owned,
            offset_xy=(chunk.read_x, chunk.read_y),
            downsample=down,
            measurements=[qupath_measurements(c) for c in cells],
            metadata={"source": "whole-slide segmentation", "model": str(params["model_id"])},
        )


def _owned(window: np.ndarray, chunk: Chunk) -> np.ndarray:
    """``window`` with only the cells (8-connected) that ``chunk`` owns (see :meth:`Chunk.owns`)."""
    cells, n = ndi.label(window > 0, structure=_EIGHT)
    if n == 0:
        return np.zeros_like(window)
    centres = ndi.center_of_mass(np.ones_like(cells), cells, range(1, n + 1))
    keep = np.zeros(n + 1, bool)
    for i, (cy, cx) in enumerate(centres, start=1):
        keep[i] = chunk.owns(cy, cx)
    return np.where(keep[cells], window, 0).astype(np.uint8)


def _crop_features(project: Project, record: SlideRecord) -> Iterator[dict[str, Any]]:
    """The crops cut from the slide with a current mask, classified, in slide coordinates."""
    latest = PredictionStore(project).latest_predictions("bethesda")
    for image in SlideStore(project).crops(record):
        current = project.current_mask(image.id)
        if current is None or image.slide_level is None:
            continue
        version, mask = current
        down = record.levels[image.slide_level].downsample
        name, source = image_class(image, latest)
        cls = classification(name, class_colour(name, project.scheme.classes)) if name else None
        cells = measure_image(mask, None, project.pixel_size(image), split_touching=False).cells
        yield from mask_to_features(
            mask,
            offset_xy=((image.slide_x or 0) / down, (image.slide_y or 0) / down),
            downsample=down,
            classification=cls,
            measurements=[qupath_measurements(c) for c in cells],
            metadata={**source, "image": image.name, "mask": f"v{version.version}"},
        )
