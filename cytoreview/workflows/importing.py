"""Importing images (and optionally their hand-made masks) into a project.

Bad input never stops an import: every unusable file is reported with its name and the reason,
the rest goes in, and nothing already in the project changes.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.errors import CytoReviewError, InputFileError, MaskFileError, UnknownClassError
from cytoreview.storage.hashing import bytes_sha256, file_sha256
from cytoreview.storage.images import probe_image, read_image, read_label_mask
from cytoreview.storage.mask_codec import encode_mask_png
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord
from cytoreview.storage.sources import SourceItem, index_masks, scan_source
from cytoreview.types import CancelToken, Progress, Provenance


@dataclass
class ImportReport:
    """What an import did."""

    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    masks_added: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def summary(self) -> str:
        """One line for a person."""
        text = (
            f"{len(self.added)} image(s) added, {len(self.already_present)} already in the "
            f"project, {self.masks_added} mask(s) added, {len(self.problems)} problem(s)"
        )
        return text + (" — cancelled; what was imported so far is kept" if self.cancelled else "")


def import_images(
    project: Project,
    source: str | Path,
    *,
    actor: str,
    masks_dir: str | Path | None = None,
    path_column: str = "path",
    class_column: str = "class",
    image_dir: str | Path | None = None,
    copy: bool = True,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ImportReport]:
    """Import a folder tree or a CSV manifest; yield one progress event per file.

    Parameters
    ----------
    project
        The open project.
    source
        A folder (sub-folder names are classes) or a CSV manifest (``path``, optional ``class``
        and ``split`` columns).
    actor
        Who imports, for the audit log; masks imported are ``manual`` versions by this person.
    masks_dir
        Optional folder of label masks (0/1/2) named like the images (same file stem).
    path_column, class_column, image_dir
        Manifest options, see :func:`cytoreview.storage.sources.scan_manifest`.
    copy
        Copy images into the project (default) or only reference them where they are.
    cancel
        Checked between files; a cancelled import keeps what it has imported.

    Returns
    -------
    ImportReport
        Through ``StopIteration.value`` (use ``yield from`` or a driver).
    """
    report = ImportReport()
    scan = scan_source(
        Path(source),
        path_column=path_column,
        class_column=class_column,
        image_dir=Path(image_dir) if image_dir else None,
    )
    masks: dict[str, Path] = {}
    problems: list[InputFileError] = list(scan.problems)
    if masks_dir is not None:
        masks, mask_problems = index_masks(Path(masks_dir))
        problems.extend(mask_problems)
    total = len(scan.items)
    for problem in problems:
        report.problems.append(str(problem))
        yield Progress("import", 0, total, str(problem), level="warning")
    for step, item in enumerate(scan.items, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        try:
            message = _import_one(project, item, masks.get(item.path.stem), actor, copy, report)
            level = "warning" if message.startswith("!") else "info"
            message = message.lstrip("!")
        except (CytoReviewError, OSError) as exc:
            message = _describe(item, exc)
            report.problems.append(message)
            level = "warning"
        yield Progress("import", step, total, message, level=level)
    return report


def _describe(item: SourceItem, exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, InputFileError) else f"{item.path}: {exc}"
    return f"{text} ({item.origin})" if item.origin else text


def _import_one(
    project: Project,
    item: SourceItem,
    mask_path: Path | None,
    actor: str,
    copy: bool,
    report: ImportReport,
) -> str:
    """Import one image (and its mask); return a message, prefixed with '!' for a warning."""
    label = None
    if item.class_label:
        try:
            label = project.scheme.resolve(item.class_label)
        except UnknownClassError as exc:
            raise InputFileError(item.path, str(exc)) from None
    # Refuse oversized images from the header alone, before any decoding or hashing.
    probe_image(item.path, max_pixels=project.max_pixels)
    sha = file_sha256(item.path)
    existing = project.find_by_sha(sha)
    if existing is not None:
        report.already_present.append(existing.name)
        note = ""
        if label is not None and existing.class_label != label:
            note = f"; the source says {label} but the project keeps {existing.class_label}"
            report.warnings.append(f"{item.path}: {note[2:]}")
        mask_note = _attach_mask(project, existing, mask_path, actor, report)
        prefix = "!" if note else ""
        return (
            f"{prefix}{item.path.name}: already in the project as {existing.name}{note}{mask_note}"
        )
    # A full decode catches truncated files that a header read misses.
    loaded = read_image(item.path, max_pixels=project.max_pixels)
    record = project.add_image(
        item.path, loaded.info, sha, actor=actor, class_label=label, split=item.split, copy=copy
    )
    report.added.append(record.name)
    mask_note = _attach_mask(project, record, mask_path, actor, report)
    renamed = f" as {record.name}" if record.name != item.path.stem else ""
    return f"{item.path.name}: added{renamed} ({label or 'no class'}){mask_note}"


def _attach_mask(
    project: Project, record: ImageRecord, mask_path: Path | None, actor: str, report: ImportReport
) -> str:
    """Add the imported mask as a manual version unless the image already has a mask."""
    if mask_path is None:
        return ""
    try:
        mask = read_label_mask(mask_path, expected_shape=(record.height, record.width))
    except MaskFileError as exc:
        report.problems.append(f"{exc} (mask of {record.name}; the image was imported)")
        return f"; mask refused: {exc.reason}"
    versions = project.mask_versions(record.id)
    if versions:
        sha = bytes_sha256(encode_mask_png(mask))
        if any(v.sha256 == sha for v in versions):
            return "; mask already present"
        # Bulk import never replaces what a person may have painted since.
        latest = versions[-1]
        report.warnings.append(
            f"{mask_path}: {record.name} already has a mask (version {latest.version}, "
            f"{latest.provenance.value}); not replaced"
        )
        return "; different mask already present, kept"
    project.save_mask(
        record.id, mask, Provenance.MANUAL, actor=actor, note=f"imported from {mask_path}"
    )
    report.masks_added += 1
    return "; mask imported"
