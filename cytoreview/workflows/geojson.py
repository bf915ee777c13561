"""QuPath exchange: every cell of a project's masks as GeoJSON, and GeoJSON back as a mask version.

Export writes one ``<image>.geojson`` FeatureCollection per image with a current mask: one QuPath
cell object per cell (its outline, its nucleus, the image's class, the cell's measurements).
Import draws a GeoJSON file (QuPath cells, or annotations classified Nucleus / Cytoplasm / Cell)
into a label mask and saves it as a new ``manual`` mask version: versions are history, so the
mask it follows stays in the project, and a file that gives exactly the current mask saves
nothing.

Which class a cell gets: the image's expert label when it has one, else the newest prediction
of the project's classifier; ``metadata.class_source`` of each feature says which (QuPath shows
an object's metadata with it). Measurement names follow QuPath's own ("Nucleus: Area µm^2",
"Nucleus/Cell area ratio", "Nucleus: Circularity"): a QuPath user finds them beside the ones
QuPath computes, sorted by compartment, with the unit in the name.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoreview.data.geojson import (
    class_colour,
    classification,
    feature_collection,
    mask_to_features,
    rasterise_features,
)
from cytoreview.errors import ImageReadError, InputFileError, UnsafePathError
from cytoreview.morphometry.measure import CellMeasurements, measure_image
from cytoreview.storage.geojson_files import encode_geojson, read_geojson
from cytoreview.storage.names import name_component
from cytoreview.storage.predictions import PredictionRecord, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord, MaskVersion
from cytoreview.types import CancelToken, Progress, Provenance
from cytoreview.workflows.class_labels import find_image

#: File suffix of the exports (QuPath's import dialog lists .geojson and .json).
GEOJSON_SUFFIX = ".geojson"

#: QuPath-style names of the per-cell measurements: (name, CellMeasurements field).
MEASUREMENT_NAMES: tuple[tuple[str, str], ...] = (
    ("Nucleus count", "nucleus_count"),
    ("Nucleus: Area px", "nucleus_area_px"),
    ("Nucleus: Area µm^2", "nucleus_area_um2"),
    ("Cytoplasm: Area px", "cytoplasm_area_px"),
    ("Cytoplasm: Area µm^2", "cytoplasm_area_um2"),
    ("Cell: Area px", "cell_area_px"),
    ("Cell: Area µm^2", "cell_area_um2"),
    ("Nucleus/Cytoplasm area ratio", "nc_ratio"),
    ("Nucleus/Cell area ratio", "nucleus_fraction"),
    ("Nucleus: Perimeter px", "nucleus_perimeter_px"),
    ("Nucleus: Perimeter µm", "nucleus_perimeter_um"),
    ("Nucleus: Circularity", "nucleus_circularity"),
    ("Nucleus: Eccentricity", "nucleus_eccentricity"),
    ("Nucleus: Mean grey", "nucleus_mean_intensity"),
)


def qupath_measurements(cell: CellMeasurements) -> dict[str, float | int | None]:
    """A cell's measurements under QuPath-style names (None where undefined or unknown)."""
    values = cell.to_dict()
    return {name: values[key] for name, key in MEASUREMENT_NAMES}


@dataclass
class GeoJsonExport:
    """What :func:`export_geojson` wrote."""

    out: Path
    files: list[Path] = field(default_factory=list)
    cells: int = 0
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False


def image_class(
    record: ImageRecord, predictions: dict[int, PredictionRecord]
) -> tuple[str | None, dict[str, str]]:
    """The class an image's cells get, and where it comes from (for ``metadata``).

    The expert label when the image has one, else the newest prediction, else none.
    """
    if record.class_label:
        return record.class_label, {"class_source": "expert label"}
    pred = predictions.get(record.id)
    if pred is not None:
        return pred.pred_class, {"class_source": "prediction", "model": pred.model_id}
    return None, {"class_source": "none"}


def export_geojson(
    project: Project,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, GeoJsonExport]:
    """Write ``<image>.geojson`` for every image with a current mask (or those in ``names``).

    Each file is a FeatureCollection of QuPath cell objects in the image's pixel frame, with
    the image's name, size and mask version as foreign members. Written atomically, one by one:
    a cancelled export leaves whole files only. An image whose every mask version is damaged,
    or that has no mask, is named in a warning; one whose image file is missing is exported
    without the nucleus grey level.

    Raises
    ------
    ProjectError
        If a name in ``names`` is no image of the project (before anything is written).
    """
    report = GeoJsonExport(out=Path(out_dir))
    current = project.current_versions()
    if names is None:
        records = [im for im in project.images() if im.id in current]
    else:
        records = [find_image(project, n) for n in dict.fromkeys(names)]
    predictions = PredictionStore(project).latest_predictions("bethesda")
    total = len(records)
    for step, record in enumerate(records, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        found = project.current_mask(record.id) if record.id in current else None
        if found is None:
            why = "has no mask" if record.id not in current else "every mask version is damaged"
            report.problems.append(f"{record.name}: {why}; not exported")
            yield Progress("geojson", step, total, report.problems[-1], level="warning")
            continue
        version, mask = found
        try:
            target = report.out / f"{name_component(record.name)}{GEOJSON_SUFFIX}"
        except UnsafePathError as exc:  # a damaged catalog: never write outside out_dir
            report.problems.append(f"{exc}; not exported")
            yield Progress("geojson", step, total, report.problems[-1], level="warning")
            continue
        try:
            rgb: np.ndarray | None = project.load_image(record).rgb
        except ImageReadError as exc:
            rgb = None
            report.problems.append(f"{exc}; exported without the nucleus grey level")
            yield Progress("geojson", step, total, report.problems[-1], level="warning")
        collection = image_collection(project, record, version, mask, rgb, predictions)
        project.write_export(target, encode_geojson(collection))
        report.files.append(target)
        report.cells += len(collection["features"])
        yield Progress(
            "geojson", step, total, f"{record.name}: {len(collection['features'])} cell(s)"
        )
    return report


def image_collection(
    project: Project,
    record: ImageRecord,
    version: MaskVersion,
    mask: np.ndarray,
    rgb: np.ndarray | None,
    predictions: dict[int, PredictionRecord],
) -> dict[str, Any]:
    """The FeatureCollection of one image's mask (cells, classes, measurements)."""
    cells = measure_image(mask, rgb, project.pixel_size(record), split_touching=False).cells
    name, source = image_class(record, predictions)
    cls = None
    if name is not None:
        cls = classification(name, class_colour(name, project.scheme.classes))
    features = mask_to_features(
        mask,
        classification=cls,
        measurements=[qupath_measurements(c) for c in cells],
        object_type="cell",
        metadata=source,
    )
    return feature_collection(
        features,
        image=record.name,
        width=record.width,
        height=record.height,
        mask_version=version.version,
        mask_provenance=version.provenance.value,
        pixel_size_um=project.pixel_size(record),
    )


# -- import ------------------------------------------------------------------------------------
@dataclass
class GeoJsonImport:
    """What :func:`import_geojson` did with one file.

    ``version`` is None when the file gave exactly the current mask (nothing saved);
    ``previous`` is the version that was current before (it stays in the history).
    """

    path: Path
    image: str
    cells: int
    nuclei: int
    version: MaskVersion | None
    previous: MaskVersion | None = None
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the person."""
        cells = f"{self.cells} cell{'s' if self.cells != 1 else ''}"
        nuclei = f"{self.nuclei} {'nucleus' if self.nuclei == 1 else 'nuclei'}"
        head = f"{self.path.name} -> {self.image}: {cells}, {nuclei}"
        if self.version is None:
            return f"{head}; the same as the current mask, nothing saved"
        line = f"{head}; saved as mask v{self.version.version}"
        if self.previous is not None:
            prev = self.previous
            line += f" (v{prev.version} {prev.provenance.value} by {prev.author} stays in history)"
        return line


def import_geojson(
    project: Project, path: str | Path, image_name: str | None = None, *, actor: str
) -> GeoJsonImport:
    """Draw a GeoJSON file into a new ``manual`` mask version of one image.

    Parameters
    ----------
    project
        The open project.
    path
        A GeoJSON file in the image's full-resolution pixel frame (as QuPath exports it).
    image_name
        The image it belongs to; by default the file's name without ``.geojson`` (and without
        an image extension left in it: ``cell_07.png.geojson`` is ``cell_07``).
    actor
        Who imports (the mask version's author, audited).

    Raises
    ------
    InputFileError
        If the file cannot be read, is not GeoJSON, or holds no cell or nucleus to draw.
    ProjectError
        If no image matches.
    """
    path = Path(path)
    features = read_geojson(path)
    record = find_image(project, image_name if image_name is not None else _stem(path))
    drawn = rasterise_features(features, (record.height, record.width))
    if drawn.cells + drawn.nuclei == 0:
        reason = "; ".join(drawn.skipped[:3]) or "it has no features"
        raise InputFileError(path, f"no cell or nucleus to import ({reason})")
    current = project.current_mask(record.id)
    previous = current[0] if current is not None else None
    counts = (path, record.name, drawn.cells, drawn.nuclei)
    if current is not None and np.array_equal(current[1], drawn.labels):
        return GeoJsonImport(*counts, None, previous, drawn.skipped)
    version = project.save_mask(
        record.id,
        drawn.labels,
        Provenance.MANUAL,
        actor=actor,
        note=f"imported from {path.name}",
    )
    return GeoJsonImport(*counts, version, previous, drawn.skipped)


def _stem(path: Path) -> str:
    """The image name a GeoJSON file's name gives (``a.geojson``, ``a.png.geojson``)."""
    name = path.name
    for suffix in (GEOJSON_SUFFIX, ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
