"""Exporting a project's current masks as plain label images."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.storage.files import write_png
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
        write_png(report.out / f"{image.name}.png", mask)
        report.written += 1
        key = version.provenance.value
        report.provenance_counts[key] = report.provenance_counts.get(key, 0) + 1
        yield Progress("export", step, len(images), f"{image.name}: v{version.version} {key}")
    return report
