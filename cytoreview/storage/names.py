"""Image names that are safe as file names, and paths from the catalog kept inside their folder.

An image's name (its file stem at import) becomes part of several paths: ``images/<name>.png``,
``masks/<name>/``, ``heatmaps/.../<name>.png`` and ``<export folder>/<name>.png``. Two rules keep
those paths where they belong:

1. At import, :func:`safe_image_name` turns any file stem into a name that is one ordinary path
   component on every system a project may be copied to (no separators, no control characters,
   never ``.`` or ``..``, not hidden, not a reserved Windows device name, not too long).
2. Every time a name or a relative path read from the catalog becomes a path,
   :func:`path_inside` (or :func:`name_component`) checks it again, because a catalog can be
   damaged or edited by hand: a name such as ``../../x`` is refused with
   :class:`~cytoreview.errors.UnsafePathError` instead of writing outside the project.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from cytoreview.errors import UnsafePathError

#: Longest image name in UTF-8 bytes. File names are limited to 255 bytes; the name must leave
#: room for a de-duplicating ``__<hash>`` tag and an extension such as ``.tiff``.
MAX_NAME_BYTES = 200
#: Characters replaced by "_": control characters, path separators, and the characters Windows
#: forbids in file names (a project folder may be copied to a Windows machine).
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f/\\<>:"|?*]')
#: Device names Windows reserves whatever the extension ("con.png" cannot be created there).
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
_FALLBACK = "image"


def safe_image_name(stem: str) -> str:
    r"""Turn a file stem into an image name that is safe as one file name everywhere.

    Forbidden characters become ``_``; leading dots and spaces go (``..``, ``.hidden``) and so
    do trailing ones (Windows drops them); a reserved device name gets a ``_`` in front; the
    result is cut to :data:`MAX_NAME_BYTES` bytes of UTF-8 and is never empty.

    Parameters
    ----------
    stem
        A file name without its extension, as found on disk or in a manifest.

    Returns
    -------
    str
        The name, unchanged when it was already safe.

    Examples
    --------
    >>> safe_image_name("cell 01")
    'cell 01'
    >>> safe_image_name("..")
    'image'
    >>> safe_image_name('a/b\\c<d>"e')
    'a_b_c_d__e'
    """
    name = _FORBIDDEN.sub("_", unicodedata.normalize("NFC", stem)).strip(" .")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(" .")
    if not name:
        return _FALLBACK
    if name.split(".", 1)[0].lower() in _RESERVED:
        name = "_" + name  # a suffix would not do: "con.x_" is still reserved
    return name


def name_component(name: str, what: str = "image name") -> str:
    """Check that a name read from the catalog is one harmless path component; return it.

    Parameters
    ----------
    name
        An image name, a model id...
    what
        What the name is, for the message.

    Raises
    ------
    UnsafePathError
        If the name is empty, ``.`` or ``..``, or holds a path separator or a NUL byte.
    """
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00"):
        raise UnsafePathError(
            f"the {what} {name!r} is not a plain file name and would lead outside its folder; "
            "the catalog may be damaged (see `cytoreview check`)"
        )
    return name


def path_inside(root: Path, relative: str) -> Path:
    """Join a relative path read from the catalog to ``root``, refusing any way out of it.

    Parameters
    ----------
    root
        The folder the path must stay in (the project folder, an export folder).
    relative
        A relative path such as ``images/cell.png`` or ``masks/cell/v0001-manual-1a2b3c4d.png``.

    Returns
    -------
    Path
        ``root / relative``.

    Raises
    ------
    UnsafePathError
        If ``relative`` is absolute (on any system), has a drive, holds a ``..`` part or a NUL
        byte, or is empty.
    """
    text = str(relative)
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    parts = windows.parts  # splits on "/" and "\\" alike
    if (
        not text
        or "\x00" in text
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or windows.root
        or ".." in parts
    ):
        raise UnsafePathError(
            f"{root}: the catalog names the path {text!r}, which leads outside this folder; "
            "the catalog may be damaged (see `cytoreview check`)"
        )
    joined = Path(root) / text
    # Belt and braces: the lexical normal form must still start with the root.
    base = os.path.normpath(Path(root))
    if os.path.commonpath([base, os.path.normpath(joined)]) != base:
        raise UnsafePathError(f"{root}: the catalog path {text!r} leads outside this folder")
    return joined
