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
from cytoreview.storage.slide_store import SlideStore
from cytoreview.storage.sources import SourceItem, index_masks, scan_source
from cytoreview.types import CancelToken, Progress, Provenance


@dataclass
class ImportReport:
    """What an import did."""

    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    masks_added: int = 0
    slides_added: list[str] = field(default_factory=list)
    slides_present: list[str] = field(default_factory=list)
    #: Slides registered without a pixel size (their metadata has none and none was given).
    slides_without_pixel_size: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def summary(self) -> str:
        """One line for a person."""
        restored = f", {len(self.restored)} restored" if self.restored else ""
        text = (
            f"{len(self.added)} image(s) added, {len(self.already_present)} already in the "
            f"project{restored}, {self.masks_added} mask(s) added, {len(self.problems)} problem(s)"
        )
        if self.slides_added or self.slides_present:
            text += (
                f"; {len(self.slides_added)} slide(s) registered, "
                f"{len(self.slides_present)} already registered"
            )
        return text + (" — cancelled; what was imported so far is kept" if self.cancelled else "")


#: One line of output: (level, message), level "info" or "warning".
_Line = tuple[str, str]


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
    copy_slides: bool = False,
    slide_pixel_size_um: float | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ImportReport]:
    """Import a folder tree or a CSV manifest; yield one progress event per file.

    Every file that is refused, and every mask that is not attached, gets one warning-level
    event naming the file and the reason (shown by the CLI and the GUI without verbose output).

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
    copy_slides
        Copy whole-slide images into the project too; by default they are linked (see
        :meth:`~cytoreview.storage.slide_store.SlideStore.register`). Slides are found by
        extension (SVS, NDPI, MRXS...) or as tiled TIFF pyramids, and registered as sources.
    slide_pixel_size_um
        Micrometres per level-0 pixel for slides; overrides their metadata.
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
        problems.extend(_unmatched_masks(masks, scan.items, Path(source)))
    total = len(scan.items) + len(scan.slides)
    for problem in problems:
        report.problems.append(str(problem))
        yield Progress("import", 0, total, str(problem), level="warning")
    for step, path in enumerate(scan.slides, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            return report
        for level, message in _register_slide(
            project, path, actor, copy_slides, slide_pixel_size_um, report
        ):
            yield Progress("import", step, total, message, level=level)
    for step, item in enumerate(scan.items, start=len(scan.slides) + 1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        try:
            lines = _import_one(project, item, masks.get(item.path.stem), actor, copy, report)
        except (CytoReviewError, OSError) as exc:
            message = _describe(item, exc)
            report.problems.append(message)
            lines = [("warning", message)]
        for level, message in _events(lines):
            yield Progress("import", step, total, message, level=level)
    return report


def _register_slide(
    project: Project,
    path: Path,
    actor: str,
    copy: bool,
    pixel_size_um: float | None,
    report: ImportReport,
) -> list[_Line]:
    """Register one whole-slide image as a source; return the lines to show."""
    try:
        outcome = SlideStore(project).register(
            path, actor=actor, copy=copy, pixel_size_um=pixel_size_um
        )
    except (CytoReviewError, OSError) as exc:
        message = str(exc) if isinstance(exc, CytoReviewError) else f"{path}: {exc}"
        report.problems.append(message)
        return [("warning", message)]
    slide = outcome.record
    if outcome.status == "present":
        report.slides_present.append(slide.name)
        return [("info", f"{path.name}: slide already registered as {slide.name}")]
    report.slides_added.append(slide.name)
    side = f"{slide.width} x {slide.height} px, {len(slide.levels)} level(s)"
    how = "copied" if slide.stored_path else "linked"
    lines: list[_Line] = []
    if slide.pixel_size_um is None:
        report.slides_without_pixel_size.append(slide.name)
        size = "pixel size unknown"
        ask = (
            f"{path}: the slide's metadata gives no pixel size; measurements stay in pixels "
            f"until you set it: cytoreview pixel-size PROJECT UM --slide {slide.name!r}"
        )
        lines.append(("warning", ask))
    else:
        size = f"{slide.pixel_size_um:.4g} um/px"
    registered = f"{path.name}: slide registered as {slide.name} ({side}, {size}, {how})"
    return [("info", registered), *lines]


def _events(lines: list[_Line]) -> list[_Line]:
    """One info event per file (its notes joined), and one event per warning."""
    info = "; ".join(message for level, message in lines if level == "info")
    warnings = [line for line in lines if line[0] == "warning"]
    return ([("info", info)] if info else []) + warnings


def _unmatched_masks(
    masks: dict[str, Path], items: list[SourceItem], source: Path
) -> list[InputFileError]:
    """Report, and drop from ``masks``, the masks that fit no image or more than one.

    A stem shared by two images (``a.png`` and ``a.tif``, or one name in two class folders)
    would attach one mask to both: the wrong cell's outline on one of them. A mask whose stem
    names no image of this import is not used, and says so.
    """
    by_stem: dict[str, list[Path]] = {}
    for item in items:
        by_stem.setdefault(item.path.stem, []).append(item.path)
    problems: list[InputFileError] = []
    for stem in sorted(masks):
        paths = by_stem.get(stem, [])
        if len(paths) == 1:
            continue
        mask = masks.pop(stem)
        if paths:
            names = ", ".join(str(p) for p in paths)
            reason = (
                f"matches {len(paths)} images with the stem {stem!r} ({names}); attached to "
                "none: rename the mask or the images so that one name means one image"
            )
        else:
            reason = f"no image named {stem!r} in {source}; mask not used"
        problems.append(MaskFileError(mask, reason))
    return problems


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
) -> list[_Line]:
    """Import one image (and its mask); return the lines to show, the image's line first."""
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
    if existing is not None and project.image_problem(existing) is None:
        return _already_present(project, item, existing, label, mask_path, actor, report)
    # A full decode catches truncated files that a header read misses.
    loaded = read_image(item.path, max_pixels=project.max_pixels)
    outcome = project.import_file(
        item.path, loaded.info, sha, actor=actor, class_label=label, split=item.split, copy=copy
    )
    record = outcome.record
    if outcome.status == "present":  # another import catalogued it a moment ago
        return _already_present(project, item, record, label, mask_path, actor, report)
    lines: list[_Line] = []
    if outcome.status == "restored":
        report.restored.append(record.name)
        message = f"{item.path}: restored {record.name} ({outcome.detail})"
        report.warnings.append(message)
        lines.append(("warning", message))
    else:
        report.added.append(record.name)
        renamed = f" as {record.name}" if record.name != item.path.stem else ""
        lines.append(("info", f"{item.path.name}: added{renamed} ({label or 'no class'})"))
    if loaded.info.n_pages > 1:
        message = (
            f"{item.path}: holds {loaded.info.n_pages} planes or pages; only the first is "
            "imported and shown"
        )
        report.warnings.append(message)
        lines.append(("warning", message))
    return lines + _attach_mask(project, record, mask_path, actor, report)


def _already_present(
    project: Project,
    item: SourceItem,
    existing: ImageRecord,
    label: str | None,
    mask_path: Path | None,
    actor: str,
    report: ImportReport,
) -> list[_Line]:
    report.already_present.append(existing.name)
    if label is not None and existing.class_label != label:
        note = f"the source says {label} but the project keeps {existing.class_label}"
        report.warnings.append(f"{item.path}: {note}")
        line: _Line = ("warning", f"{item.path}: already in the project as {existing.name}; {note}")
    else:
        line = ("info", f"{item.path.name}: already in the project as {existing.name}")
    return [line, *_attach_mask(project, existing, mask_path, actor, report)]


def _attach_mask(
    project: Project, record: ImageRecord, mask_path: Path | None, actor: str, report: ImportReport
) -> list[_Line]:
    """Add the imported mask as a manual version unless the image already has a mask."""
    if mask_path is None:
        return []
    try:
        mask = read_label_mask(mask_path, expected_shape=(record.height, record.width))
    except MaskFileError as exc:
        message = f"{exc} (mask of {record.name}; the image was imported, the mask was not)"
        report.problems.append(message)
        return [("warning", message)]
    versions = project.mask_versions(record.id)
    if versions:
        sha = bytes_sha256(encode_mask_png(mask))
        if any(v.sha256 == sha for v in versions):
            return [("info", "mask already present")]
        # Bulk import never replaces what a person may have painted since.
        latest = versions[-1]
        message = (
            f"{mask_path}: {record.name} already has a mask (version {latest.version}, "
            f"{latest.provenance.value}); not replaced"
        )
        report.warnings.append(message)
        return [("warning", message)]
    project.save_mask(
        record.id, mask, Provenance.MANUAL, actor=actor, note=f"imported from {mask_path}"
    )
    report.masks_added += 1
    return [("info", "mask imported")]
