"""Writing derived files (exports, demo data, overview sheets) atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from cytoreview.errors import ProjectExistsError
from cytoreview.storage.atomic import atomic_write_bytes


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of a (H, W) label/grey image or an (H, W, 3) RGB uint8 image."""
    array = np.ascontiguousarray(array)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    return buffer.tobytes()


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write an RGB or single-channel uint8 image as PNG, atomically; return the path."""
    path = Path(path)
    atomic_write_bytes(path, encode_png(array))
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically; return the path."""
    path = Path(path)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


#: Marker file that says a folder was made by ``cytoreview demo`` and may be replaced by it.
DEMO_MARKER = ".cytoreview-demo"


def clear_demo_folder(folder: str | Path) -> None:
    """Remove a previous demo so the demo can run again; refuse any folder it did not make.

    Raises
    ------
    ProjectExistsError
        If ``folder`` exists, is not empty and has no demo marker: it may hold someone's work.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir() or (any(folder.iterdir()) and not (folder / DEMO_MARKER).exists()):
        raise ProjectExistsError(
            f"{folder}: exists and was not made by `cytoreview demo`; choose another --out"
        )
    shutil.rmtree(folder)


def mark_demo_folder(folder: str | Path) -> None:
    """Create ``folder`` and mark it as the demo's own."""
    write_text(Path(folder) / DEMO_MARKER, "made by `cytoreview demo`; safe to delete\n")


def new_scratch_folder(prefix: str) -> Path:
    """Create a new, empty folder under the system's temporary directory (never reused).

    For sample data a person may look at and throw away; the system's temp clean-up or the
    person removes it, not this program (it may hold work by then).
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


def write_files(folder: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Write several files under ``folder`` (relative names, sub-folders allowed), each atomically.

    The files are written in sorted order with the HTML pages last, so a reader that opens the
    page never finds it pointing at a file that is not there yet.
    """
    folder = Path(folder)
    written = []
    order = sorted(files, key=lambda name: (name.endswith((".html", ".htm")), name))
    for name in order:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"{name!r}: report files must stay inside {folder}")
        path = folder / rel
        atomic_write_bytes(path, files[name])
        written.append(path)
    return written
