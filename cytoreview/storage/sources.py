"""Finding the images to import: a folder tree (sub-folders are classes) or a CSV manifest."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.errors import InputFileError, ManifestError, MaskFileError
from cytoreview.storage.images import IMAGE_EXTENSIONS
from cytoreview.storage.slides import is_ome_zarr, is_slide_file

#: Files every OS scatters around that are never images a person meant to import.
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
_MASK_EXTENSIONS = frozenset({".png", ".tif", ".tiff"})
_LOSSY_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
_SPLITS = frozenset({"train", "val", "test"})
#: Separators a manifest may use; others are named in the message when nothing else fits.
_DELIMITERS = ",;\t"


@dataclass(frozen=True)
class SourceItem:
    """One image to import and what the source says about it."""

    path: Path
    class_label: str | None = None
    split: str | None = None
    origin: str = ""  # where it was listed, for messages ("labels.csv line 12")


@dataclass
class SourceScan:
    """The images found in a source and the entries that could not be used."""

    items: list[SourceItem] = field(default_factory=list)
    problems: list[InputFileError] = field(default_factory=list)
    #: Whole-slide images found: registered as slides (sources), not imported as images.
    slides: list[Path] = field(default_factory=list)


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in _IGNORED_NAMES


def _walk(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Every entry under ``root`` that is not hidden, with why it is not read (None: read it).

    Regular files come with None, and so do OME-Zarr folders (slides: their insides are not
    walked). Other folders are entered, not reported, unless named like an image; broken links,
    links to folders, pipes and devices come with their reason.

    Nothing is opened here: a named pipe would block the import, so only its type is looked at.
    """
    zarr_roots: list[Path] = []
    for path in sorted(root.rglob("*")):
        if any(_ignored(Path(part)) for part in path.relative_to(root).parts):
            continue
        if any(path.is_relative_to(z) for z in zarr_roots):
            continue  # the inside of an OME-Zarr slide: its chunks are not images
        if path.is_dir() and not path.is_symlink() and is_ome_zarr(path):
            zarr_roots.append(path)
            yield path, None  # a slide stored as a folder
            continue
        if path.is_symlink() and not path.exists():
            yield path, "broken symbolic link (its target is missing); skipped"
        elif path.is_dir():
            if path.is_symlink():
                yield path, "symbolic link to a folder; not followed (import that folder itself)"
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                yield path, "is a folder named like an image, not an image file"
        elif not path.is_file():
            yield path, "is not a regular file (a named pipe, socket or device); not opened"
        else:
            yield path, None


def scan_folder(root: Path) -> SourceScan:
    """Images under ``root``; the first-level sub-folder an image lies in names its class.

    Files directly in ``root`` get no class. Files that are not images by extension, broken
    links, pipes and folders named like images are reported; hidden files and OS clutter are
    skipped silently.
    """
    scan = SourceScan()
    for path, problem in _walk(root):
        rel = path.relative_to(root)
        if problem is not None:
            scan.problems.append(InputFileError(path, problem))
            continue
        if is_slide_file(path):
            scan.slides.append(path)
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            scan.problems.append(
                InputFileError(path, f"not an image type ({path.suffix or 'no extension'})")
            )
            continue
        label = rel.parts[0] if len(rel.parts) > 1 else None
        origin = f"folder {rel.parts[0]!r}" if label else "top folder"
        scan.items.append(SourceItem(path, label, None, origin))
    return scan


def _resolve_listed(value: str, base: Path) -> Path:
    """A manifest entry as a path; an entry without extension may name an image by stem."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.suffix or path.exists():
        return path
    for ext in sorted(IMAGE_EXTENSIONS):
        for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
            if candidate.exists():
                return candidate
    return path


def _open_table(csv_path: Path, what: str) -> tuple[csv.DictReader, _LineCounter, list[str]]:
    """A CSV (comma, semicolon or tab; UTF-8, an Excel BOM is fine): reader, line counter, columns.

    Raises
    ------
    ManifestError
        If the file cannot be read, is not UTF-8 or is empty (``what`` names it in the message).
    """
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(csv_path, f"not a UTF-8 text file ({exc.reason})") from exc
    except OSError as exc:
        raise ManifestError(csv_path, f"cannot read the file ({exc.strerror or exc})") from exc
    if not text.strip():
        raise ManifestError(csv_path, f"{what} is empty")
    lines = text.splitlines()
    if "\x00" in lines[0]:
        raise ManifestError(
            csv_path,
            "holds NUL bytes: not a plain-text CSV (saved as UTF-16, or a binary file?); "
            "save it as 'CSV UTF-8'",
        )
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=_DELIMITERS)
    except csv.Error:
        dialect = csv.excel  # one column: nothing to sniff
    counter = _LineCounter(lines)
    reader = csv.DictReader(counter, dialect=dialect)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise ManifestError(csv_path, f"line 1: {_csv_reason(exc)}") from None
    columns = [c.strip() for c in header]
    reader.fieldnames = columns
    return reader, counter, columns


def _csv_reason(exc: csv.Error) -> str:
    """A CSV parser error in words a person can act on."""
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a cell is longer than {csv.field_size_limit()} characters: not a list of images"
    return text


class _LineCounter:
    """An iterator over text lines that counts how many were handed out (for line numbers)."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = iter(lines)
        self.count = 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


def _rows(
    reader: csv.DictReader, lines: _LineCounter, csv_path: Path, problems: list[InputFileError]
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of ``reader`` with the line each starts on; unparsable rows become problems."""
    rows = iter(reader)
    while True:
        line = lines.count + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # the parser starts afresh on the next line
            problems.append(InputFileError(csv_path, f"line {line}: {_csv_reason(exc)}; skipped"))
            continue
        if any("\x00" in v for v in row.values() if isinstance(v, str)):
            problems.append(InputFileError(csv_path, f"line {line}: holds a NUL byte; skipped"))
            continue
        yield line, row


def _missing_column(column: str, columns: list[str], expected: str) -> str:
    """The message for a missing column: what was found, what was expected, and a hint."""
    found = ", ".join(columns) or "none"
    hint = ""
    if len(columns) == 1:
        odd = next((c for c in "|:,;\t " if c in columns[0]), None)
        if odd is not None:
            hint = f"; the separator {odd!r} is not recognised: use comma, semicolon or tab"
    return f"no {column!r} column (columns found: {found}); expected {expected}{hint}"


def scan_manifest(
    csv_path: Path,
    *,
    path_column: str = "path",
    class_column: str = "class",
    image_dir: Path | None = None,
) -> SourceScan:
    """Images listed in a CSV manifest.

    Parameters
    ----------
    csv_path
        The manifest; comma, semicolon or tab separated, UTF-8 (a BOM from Excel is fine).
    path_column
        Column with the image path (relative paths resolve against ``image_dir``); a value with
        no extension is looked up as a file stem.
    class_column
        Optional column with the class name; an empty cell means "not labelled".
    image_dir
        Folder relative paths resolve against; the CSV's own folder by default.

    Raises
    ------
    ManifestError
        If the CSV cannot be read, is empty or lacks the path column.
    """
    base = Path(image_dir) if image_dir else csv_path.parent
    reader, lines, columns = _open_table(csv_path, "the manifest")
    expected = f"{path_column!r}, optional {class_column!r} and 'split'"
    if path_column not in columns:
        raise ManifestError(
            csv_path,
            _missing_column(path_column, columns, expected)
            + "; name the image column with --path-column",
        )
    if class_column != "class" and class_column not in columns:
        raise ManifestError(csv_path, _missing_column(class_column, columns, expected))
    scan = SourceScan()
    for line, row in _rows(reader, lines, csv_path, scan.problems):
        origin = f"{csv_path.name} line {line}"
        value = (row.get(path_column) or "").strip()
        if not value:
            scan.problems.append(InputFileError(csv_path, f"line {line}: empty {path_column!r}"))
            continue
        label = (row.get(class_column) or "").strip() or None
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in _SPLITS:
            scan.problems.append(
                InputFileError(csv_path, f"line {line}: split {split!r} is not train, val or test")
            )
            continue
        scan.items.append(SourceItem(_resolve_listed(value, base), label, split, origin))
    if not scan.items and not scan.problems:
        raise ManifestError(csv_path, "the manifest has a header but no rows")
    return scan


def scan_source(
    source: Path,
    *,
    path_column: str = "path",
    class_column: str = "class",
    image_dir: Path | None = None,
) -> SourceScan:
    """Dispatch on the kind of source: a folder, or a ``.csv``/``.tsv`` manifest."""
    source = Path(source)
    if source.is_dir():
        return scan_folder(source)
    if source.is_file() and is_slide_file(source):
        return SourceScan(slides=[source])
    if source.is_file() and source.suffix.lower() in {".csv", ".tsv", ".txt"}:
        return scan_manifest(
            source, path_column=path_column, class_column=class_column, image_dir=image_dir
        )
    if not source.exists():
        raise ManifestError(source, "no such file or folder")
    raise ManifestError(source, "expected a folder of images, a CSV manifest or a slide")


def index_masks(folder: Path) -> tuple[dict[str, Path], list[InputFileError]]:
    """Mask files under ``folder`` by file stem; duplicated stems are reported, not guessed.

    Files that cannot be label masks are reported too: JPEG (lossy compression changes the
    label values), other types, broken links and pipes.
    """
    found: dict[str, Path] = {}
    problems: list[InputFileError] = []
    if not folder.is_dir():
        raise ManifestError(folder, "mask folder does not exist")
    duplicated: set[str] = set()
    for path, problem in _walk(folder):
        suffix = path.suffix.lower()
        if problem is None and suffix in _LOSSY_EXTENSIONS:
            problem = (
                "JPEG mask refused: lossy compression changes the label values; "
                "save masks as PNG or TIFF"
            )
        elif problem is None and suffix not in _MASK_EXTENSIONS:
            problem = f"not a mask file type ({suffix or 'no extension'}); masks are PNG or TIFF"
        if problem is not None:
            problems.append(MaskFileError(path, problem))
            continue
        if path.stem in found or path.stem in duplicated:
            # Two candidates for one image: guessing could attach the wrong cell's mask.
            first = found.pop(path.stem, None)
            duplicated.add(path.stem)
            problems.append(
                InputFileError(
                    path,
                    f"more than one mask named {path.stem!r}; none used"
                    + (f" (also {first})" if first else ""),
                )
            )
            continue
        found[path.stem] = path
    return found, problems


#: Column names accepted for the image and the class of a truth table, in order of preference.
_TRUTH_IMAGE_COLUMNS = ("image", "name", "stem", "file", "filename", "path")
_TRUTH_CLASS_COLUMNS = ("class", "label", "truth", "diagnosis", "bethesda", "true_class")


def read_truth_table(
    csv_path: Path, *, image_column: str | None = None, class_column: str | None = None
) -> tuple[dict[str, str], list[InputFileError]]:
    """Expert classes from a CSV: ``{image stem: class name}`` and the rows that were unusable.

    The image column may hold names, stems or paths (the file stem is used); columns are found
    by name (``image``/``name``/``file``/``path`` and ``class``/``label``/``diagnosis``...)
    unless given.

    Raises
    ------
    ManifestError
        If the file cannot be read, is empty, or has no recognisable image or class column.
    """
    csv_path = Path(csv_path)
    reader, lines, columns = _open_table(csv_path, "the truth table")
    lower = {c.lower(): c for c in columns}

    def pick(given: str | None, candidates: tuple[str, ...], what: str) -> str:
        if given is not None:
            if given not in columns:
                raise ManifestError(
                    csv_path, f"no {given!r} column (columns found: {', '.join(columns)})"
                )
            return given
        for name in candidates:
            if name in lower:
                return lower[name]
        raise ManifestError(
            csv_path,
            f"no {what} column: expected one of {', '.join(candidates)} "
            f"(columns found: {', '.join(columns) or 'none'})",
        )

    image_col = pick(image_column, _TRUTH_IMAGE_COLUMNS, "image")
    class_col = pick(class_column, _TRUTH_CLASS_COLUMNS, "class")
    truth: dict[str, str] = {}
    problems: list[InputFileError] = []
    for line, row in _rows(reader, lines, csv_path, problems):
        value = (row.get(image_col) or "").strip()
        label = (row.get(class_col) or "").strip()
        if not value or not label:
            problems.append(InputFileError(csv_path, f"line {line}: empty image or class"))
            continue
        stem = Path(value.replace("\\", "/")).stem if "." in value or "/" in value else value
        if stem in truth and truth[stem] != label:
            problems.append(
                InputFileError(csv_path, f"line {line}: {stem} is listed twice with two classes")
            )
            continue
        truth[stem] = label
    if not truth and not problems:
        raise ManifestError(csv_path, "the truth table has a header but no rows")
    return truth, problems
