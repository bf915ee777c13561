"""Reading one catalogued image without the catalog: what a batch worker process needs.

A batch job's workers (see :mod:`cytoreview.workflows.executors`) read images by path but never
open the catalog, which one process writes. :class:`ImageRef` carries what the catalog knows
about one image (where its file is, its content hash, how to decode it); :func:`read_ref`
checks the file against that hash and decodes it, exactly as
:meth:`cytoreview.storage.project.Project.load_image` does (which calls it).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from cytoreview.errors import ImageReadError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import LoadedImage, read_image

__all__ = ["ImageRef", "file_problem", "read_ref"]


@dataclass(frozen=True)
class ImageRef:
    """One image of a project as a worker reads it: small and picklable.

    Attributes
    ----------
    name
        The image's name in the project (for messages).
    path
        The file: the project's copy, else the linked source.
    sha256
        The content hash recorded at import: a file that no longer matches is not used.
    linked
        Whether ``path`` is the user's source file (not a copy inside the project).
    max_pixels
        The project's size limit, checked from the header before decoding.
    exif_orientation
        Turn a JPEG as its EXIF orientation says (images imported since CytoReview does).
    """

    name: str
    path: Path
    sha256: str
    linked: bool
    max_pixels: int
    exif_orientation: bool


def file_problem(ref: ImageRef) -> str | None:
    """Why an image's file cannot be trusted now, or None when it is intact.

    The file is hashed and compared with the catalog's hash: a project copy that went missing
    or changed on disk, and a linked source that was moved, deleted or edited since import are
    all found here, before their pixels are used.
    """
    try:
        mode = ref.path.stat().st_mode
        if not stat.S_ISREG(mode):
            return "is not a regular file"
        same = file_sha256(ref.path) == ref.sha256
    except FileNotFoundError:
        if ref.linked:
            return "linked source file is missing (moved or deleted?); import it again"
        return "image file is missing from the project; import its source again to restore it"
    except OSError as exc:
        return f"cannot read the image file ({exc.strerror or exc})"
    if same:
        return None
    if ref.linked:
        return "linked source file changed since it was imported; import it again"
    return "image file is damaged (it no longer matches its import); import its source again"


def read_ref(ref: ImageRef) -> LoadedImage:
    """Check an image's file against its recorded hash and decode it.

    Raises
    ------
    ImageReadError
        If the file is missing, damaged, changed since import (linked images) or unreadable;
        the message names the file and says how to restore it.
    """
    problem = file_problem(ref)
    if problem is not None:
        raise ImageReadError(ref.path, f"{problem} (image {ref.name!r})")
    return read_image(ref.path, max_pixels=ref.max_pixels, exif_orientation=ref.exif_orientation)
