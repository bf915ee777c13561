"""Reading a table of image classes (columns ``image`` and ``class``) for ``set-class --csv``.

The table is parsed here, where files are read; which rows make sense for a project (does the
image exist, is the class one of the scheme's) is the workflow's business, so every row comes
back with its line number for the messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cytoreview.errors import InputFileError, ManifestError
from cytoreview.storage.sources import _open_table, _rows

#: The columns a class table must have (any letter case).
CLASS_TABLE_COLUMNS = ("image", "class")


@dataclass(frozen=True)
class ClassRow:
    """One row of a class table."""

    line: int  # 1-based line in the file (the header is line 1)
    image: str  # as written: an image name, a file name or a path
    class_name: str  # as written


def read_class_table(csv_path: str | Path) -> tuple[list[ClassRow], list[InputFileError]]:
    """The rows of a class table and the rows that cannot be used (empty cells).

    Parameters
    ----------
    csv_path
        A CSV (comma, semicolon or tab separated; UTF-8, with or without an Excel BOM) with the
        columns ``image`` and ``class``.

    Raises
    ------
    ManifestError
        If the file cannot be read or parsed, is empty, lacks a column or has no rows.
    """
    csv_path = Path(csv_path)
    reader, lines, columns = _open_table(csv_path, "the class table")
    lower = {c.lower(): c for c in columns}
    missing = [c for c in CLASS_TABLE_COLUMNS if c not in lower]
    if missing:
        raise ManifestError(
            csv_path,
            f"no {' or '.join(repr(m) for m in missing)} column; a class table has the columns "
            f"image,class (columns found: {', '.join(columns) or 'none'})",
        )
    rows: list[ClassRow] = []
    problems: list[InputFileError] = []
    # The manifest's row reader: an unparsable row or a NUL byte is a problem on its line, and
    # the rows after it are still read.
    for line, row in _rows(reader, lines, csv_path, problems):
        image = (row.get(lower["image"]) or "").strip()
        label = (row.get(lower["class"]) or "").strip()
        if not image or not label:
            problems.append(InputFileError(csv_path, f"line {line}: empty image or class"))
            continue
        rows.append(ClassRow(line, image, label))
    if not rows and not problems:
        raise ManifestError(csv_path, "the class table has a header but no rows")
    return rows, problems
