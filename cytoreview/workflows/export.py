"""Exporting a project's current masks as label images, and its predictions as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cytoreview.errors import ImageReadError, UnsafePathError
from cytoreview.morphometry.measure import measure_image, morphometry_columns
from cytoreview.storage.files import write_png
from cytoreview.storage.names import name_component
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress


@dataclass
class ExportReport:
    """What an export wrote."""

    out: Path
    written: int = 0
    provenance_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False


def export_masks(
    project: Project, out: str | Path, *, cancel: CancelToken | None = None
) -> Generator[Progress, None, ExportReport]:
    """Write the current mask of every image that has one as ``<image name>.png`` (0/1/2).

    A damaged newest version falls back to the last intact one (see
    :meth:`~cytoreview.storage.project.Project.current_mask`).
    """
    report = ExportReport(out=Path(out))
    current = project.current_versions()
    images = [im for im in project.images() if im.id in current]
    for step, image in enumerate(images, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        found = project.current_mask(image.id)
        if found is None:
            message = f"{image.name}: every mask version is missing or damaged; not exported"
            report.problems.append(message)
            yield Progress("export", step, len(images), message, level="warning")
            continue
        version, mask = found
        try:
            target = report.out / f"{name_component(image.name)}.png"
        except UnsafePathError as exc:  # a damaged catalog: never write outside --out
            report.problems.append(f"{exc}; not exported")
            yield Progress("export", step, len(images), report.problems[-1], level="warning")
            continue
        write_png(target, mask)
        report.written += 1
        key = version.provenance.value
        report.provenance_counts[key] = report.provenance_counts.get(key, 0) + 1
        yield Progress("export", step, len(images), f"{image.name}: v{version.version} {key}")
    return report


# -- predictions -----------------------------------------------------------------------------
@dataclass
class PredictionsExport:
    """What a predictions export wrote."""

    out: Path
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    without_prediction: int = 0
    without_mask: int = 0
    cancelled: bool = False
    #: Images whose file is missing or damaged: their row has no measurements; one line each.
    problems: list[str] = field(default_factory=list)


def prediction_columns(class_names: list[str]) -> list[str]:
    """Columns of the predictions CSV: the specified ones first, then measurements and context."""
    head = ["image", "pred_class", *[f"prob_{c}" for c in class_names]]
    head += ["pred_binary", "prob_revisable"]
    tail = ["true_class", "uncertainty", "mask_source", "model_id"]
    return head + morphometry_columns() + tail


def export_predictions(
    project: Project, out: str | Path, *, cancel: CancelToken | None = None
) -> Generator[Progress, None, PredictionsExport]:
    """Write one CSV row per image: predictions, the binary call and the cell measurements.

    Images without a prediction or a mask still get a row with empty cells, so the file lists
    the whole project and nothing is silently missing.
    """
    store = PredictionStore(project)
    classes = list(project.scheme.classes)
    columns = prediction_columns(classes)
    report = PredictionsExport(out=Path(out), columns=columns)
    bethesda = store.latest_predictions("bethesda")
    binary = store.latest_predictions("binary")
    current = project.current_versions()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    records = project.images()
    for step, record in enumerate(records, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            return report  # nothing written: a partial table would look complete
        row: dict[str, Any] = {"image": record.name, "true_class": record.class_label or ""}
        pred = bethesda.get(record.id)
        if pred is None:
            report.without_prediction += 1
        else:
            row.update(pred_class=pred.pred_class, model_id=pred.model_id)
            row["uncertainty"] = pred.uncertainty
            for c in classes:
                row[f"prob_{c}"] = pred.probabilities.get(c)
        call = binary.get(record.id)
        if call is not None:
            row["pred_binary"] = call.pred_class
            row["prob_revisable"] = call.probabilities.get("revisable")
        found = project.current_mask(record.id) if record.id in current else None
        if found is None:
            report.without_mask += 1
        else:
            row["mask_source"] = found[0].provenance.value
            try:
                image = project.load_image(record).rgb
            except ImageReadError as exc:  # the row stays, without measurements
                report.problems.append(f"{exc}; its row has no measurements")
                yield Progress("export", step, len(records), report.problems[-1], level="warning")
                image = None
            if image is not None:
                row.update(measure_image(found[1], image, project.pixel_size(record)).row())
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        report.rows += 1
        if step % 20 == 0 or step == len(records):
            yield Progress("export", step, len(records), f"{step} rows")
    project.write_export(report.out, buffer.getvalue().encode("utf-8"))
    return report


#: What a spreadsheet reads as the start of a formula (OWASP "CSV injection"): "=", "+", "-",
#: "@", and tab or carriage return, which some programs skip before looking for one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows, never runs.

    Numbers get 6 significant digits (enough for areas and probabilities); None and NaN are
    empty. Text comes from people (image and class names, paths): one that a spreadsheet would
    take for a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) gets a leading apostrophe, which
    spreadsheets read as "this is text" and do not show. Numbers are never changed, so -0.5
    stays a number.

    Examples
    --------
    >>> csv_cell("=1+1"), csv_cell("-cell"), csv_cell(-0.5), csv_cell("NILM"), csv_cell(None)
    ("'=1+1", "'-cell", '-0.5', 'NILM', '')
    """
    if value is None or isinstance(value, bool):
        return "" if value is None else value
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN -> empty
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
