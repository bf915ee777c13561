"""The slides of a project: registered sources that cells and regions are cut from.

A slide is a source, not an image. Registering one records the file (linked where it lies by
default, or copied into ``slides/``), its SHA-256, its levels and its pixel size; nothing is
decoded. Crops cut from it become ordinary images (PNG copies in ``images/``) that remember
the slide, the level and the top-left corner in level-0 pixels, so painting, training,
auto-masks, classification and review work on them unchanged, and every result maps back to
the slide. Results for a whole slide live in ``slides/<name>/`` (see
:meth:`SlideStore.results_dir`).

Layout added to the project folder::

    slides/<name><suffix>        a copied slide (linked slides stay where they are)
    slides/<name>/               results for the slide (label pyramid, cell table, manifest)
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cytoreview.defaults import check_pixel_size
from cytoreview.errors import InputFileError, ProjectError
from cytoreview.storage.atomic import copy_to_temp, publish
from cytoreview.storage.catalog import Catalog, utc_now
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import ImageInfo
from cytoreview.storage.names import path_inside, safe_image_name
from cytoreview.storage.project import ImportOutcome, Project
from cytoreview.storage.records import ImageRecord
from cytoreview.storage.slides import Slide, SlideLevel, open_slide

#: Slides in formats made of several files (an index file plus a folder of data): they are
#: always linked, as copying the index file alone would give a slide that cannot be read.
MULTI_FILE_SUFFIXES = (".mrxs", ".vms", ".vmu", ".dcm")


@dataclass(frozen=True)
class SlideRecord:
    """One slide of a project, as catalogued."""

    id: int
    name: str
    source_path: str
    stored_path: str | None
    sha256: str
    width: int
    height: int
    levels: tuple[SlideLevel, ...]
    reader: str
    pixel_size_um: float | None
    objective: float | None
    imported_at: str
    imported_by: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SlideRecord:
        """Build from a ``slides`` row."""
        data = dict(row)
        levels = json.loads(data["levels"])
        data["levels"] = tuple(SlideLevel(int(h), int(w), float(d)) for h, w, d in levels)
        return cls(**data)

    def level_pixel_size(self, level: int) -> float | None:
        """Micrometres per pixel at ``level`` (None when the slide's pixel size is unknown)."""
        if self.pixel_size_um is None:
            return None
        return self.pixel_size_um * self.levels[level].downsample


@dataclass(frozen=True)
class SlideOutcome:
    """What :meth:`SlideStore.register` did: ``added`` or ``present`` (same file content)."""

    record: SlideRecord
    status: str


class SlideStore:
    """The slides of an open project (catalog rows, files and results folders)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    # -- registering ---------------------------------------------------------------------------
    def register(
        self,
        path: str | Path,
        *,
        actor: str,
        copy: bool = False,
        pixel_size_um: float | None = None,
    ) -> SlideOutcome:
        """Register a slide file as a source of the project.

        Parameters
        ----------
        path
            The slide (SVS, NDPI, MRXS, SCN, DICOM, BIF, pyramidal or tiled TIFF / OME-TIFF).
        actor
            Who registers it (audited).
        copy
            Copy the file into ``slides/`` (single-file formats only) instead of linking it.
            Linking is the default: scanner files are gigabytes and usually live on a slide
            server; the SHA-256 recorded here tells when a linked file changed or moved.
        pixel_size_um
            Micrometres per level-0 pixel, overriding (or supplying) the file's metadata.

        Raises
        ------
        InputFileError
            If no reader can open the file, or a multi-file slide is asked to be copied.
        """
        given = Path(path)
        source = given.resolve()
        with open_slide(source) as slide:
            levels, reader = slide.levels, slide.reader
            metadata_size, objective = slide.pixel_size_um, slide.objective_power
        size = pixel_size_um if pixel_size_um is not None else metadata_size
        if size is not None:
            try:
                size = check_pixel_size(size)
            except ValueError as exc:
                raise InputFileError(source, str(exc)) from None
        if copy and source.suffix.lower() in MULTI_FILE_SUFFIXES:
            raise InputFileError(
                source, "a slide made of several files cannot be copied; register it linked"
            )
        tmp: Path | None = None
        if copy:
            tmp, sha256 = copy_to_temp(source, self.project.root / "slides")
        else:
            sha256 = file_sha256(source)
        try:
            with self.project.catalog.write() as conn:
                row = conn.execute("SELECT * FROM slides WHERE sha256 = ?", (sha256,)).fetchone()
                if row is not None:
                    return SlideOutcome(SlideRecord.from_row(row), "present")
                stem = given.name.split(".")[0] or given.stem  # "case.ome.tif" -> "case"
                name, stored = self._place(conn, safe_image_name(stem), source, tmp)
                cursor = conn.execute(
                    "INSERT INTO slides (name, source_path, stored_path, sha256, width, height, "
                    "levels, reader, pixel_size_um, objective, imported_at, imported_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name, str(source), stored, sha256, levels[0].width, levels[0].height,
                        json.dumps([[lv.height, lv.width, lv.downsample] for lv in levels]),
                        reader, size, objective, utc_now(), actor,
                    ),
                )  # fmt: skip
                slide_id = int(cursor.lastrowid or 0)
                Catalog.audit(
                    conn, actor, "register_slide", "slide", slide_id, name=name,
                    source=str(source), sha256=sha256, copied=copy, pixel_size_um=size,
                    pixel_size_from="given" if pixel_size_um is not None else (
                        "metadata" if metadata_size is not None else None
                    ),
                )  # fmt: skip
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        return SlideOutcome(self.slide(slide_id), "added")

    def _place(
        self, conn: sqlite3.Connection, base: str, source: Path, tmp: Path | None
    ) -> tuple[str, str | None]:
        """A free slide name, and the copy published under it (None when linked)."""
        for k in range(1000):
            name = base if k == 0 else f"{base}_{k + 1}"
            if conn.execute("SELECT 1 FROM slides WHERE name = ?", (name,)).fetchone():
                continue
            if tmp is None:
                return name, None
            stored = f"slides/{name}{source.suffix.lower()}"
            target = path_inside(self.project.root, stored)
            try:
                publish(tmp, target, overwrite=False)
            except FileExistsError:
                continue
            return name, stored
        raise ProjectError(f"{self.project.root}: no free name for slide {base!r}")

    def set_pixel_size(self, record: SlideRecord, pixel_size_um: float, *, actor: str) -> None:
        """Set a slide's micrometres per level-0 pixel (asked once when the file has none)."""
        try:
            value = check_pixel_size(pixel_size_um)
        except ValueError as exc:
            raise ProjectError(str(exc)) from None
        with self.project.catalog.write() as conn:
            conn.execute("UPDATE slides SET pixel_size_um = ? WHERE id = ?", (value, record.id))
            Catalog.audit(
                conn, actor, "set_pixel_size", "slide", record.id, old=record.pixel_size_um,
                value=value,
            )  # fmt: skip

    # -- reading -------------------------------------------------------------------------------
    def slides(self) -> list[SlideRecord]:
        """Every slide, in the order registered."""
        rows = self.project.catalog.query("SELECT * FROM slides ORDER BY id")
        return [SlideRecord.from_row(r) for r in rows]

    def slide(self, key: int | str) -> SlideRecord:
        """A slide by id or name.

        Raises
        ------
        ProjectError
            If there is none; the message lists the slides there are.
        """
        column = "id" if isinstance(key, int) else "name"
        rows = self.project.catalog.query(f"SELECT * FROM slides WHERE {column} = ?", (key,))
        if not rows:
            names = ", ".join(s.name for s in self.slides()) or "none registered"
            raise ProjectError(f"{self.project.root}: no slide {key!r} (slides: {names})")
        return SlideRecord.from_row(rows[0])

    def path(self, record: SlideRecord) -> Path:
        """The slide's file: its copy in the project, or the linked original."""
        if record.stored_path:
            return path_inside(self.project.root, record.stored_path)
        return Path(record.source_path)

    def open(self, record: SlideRecord) -> Slide:
        """Open the slide lazily.

        Raises
        ------
        InputFileError
            If the file is gone (a linked slide moved) or can no longer be read, or its levels
            differ from those registered (the file was replaced).
        """
        path = self.path(record)
        if not path.is_file():
            raise InputFileError(
                path, f"slide {record.name!r} is missing (moved or deleted?); register it again"
            )
        slide = open_slide(path)
        if (slide.levels[0].height, slide.levels[0].width) != (record.height, record.width):
            slide.close()
            raise InputFileError(path, f"is no longer the slide {record.name!r} registered")
        return slide

    def results_dir(self, record: SlideRecord) -> Path:
        """``slides/<name>/``: where the slide's label pyramid, cell table and manifest go."""
        return path_inside(self.project.root, f"slides/{record.name}")

    def crops(self, record: SlideRecord) -> list[ImageRecord]:
        """The images cut from this slide."""
        rows = self.project.catalog.query(
            "SELECT * FROM images WHERE slide_id = ? ORDER BY id", (record.id,)
        )
        return [ImageRecord.from_row(r) for r in rows]

    # -- cutting -------------------------------------------------------------------------------
    def add_crop(
        self,
        record: SlideRecord,
        rgb: np.ndarray,
        *,
        level: int,
        x: int,
        y: int,
        actor: str,
        kind: str = "cell",
    ) -> ImportOutcome:
        """Add a region cut from the slide as an ordinary image of the project.

        Parameters
        ----------
        record
            The slide.
        rgb
            ``(H, W, 3)`` uint8 pixels read at ``level``.
        level
            The level they were read at.
        x, y
            Top-left corner in level-0 pixels.
        actor
            Who cut it (audited).
        kind
            ``cell`` (found by the cell finder) or ``region`` (drawn by a person); audited and
            part of nothing else.

        Returns
        -------
        ImportOutcome
            ``present`` when exactly these pixels were already cut.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise ValueError(f"a crop must be non-empty (H, W, 3) uint8, got {rgb.shape}")
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        if not ok:  # cv2 fails only on shapes checked above
            raise ProjectError(f"could not encode a crop of slide {record.name!r}")
        h, w = rgb.shape[:2]
        info = ImageInfo(width=w, height=h, channels=3, dtype="uint8", n_pages=1, format="png")
        return self.project.add_generated_image(
            encoded.tobytes(),
            info,
            name=f"{record.name}_L{level}_x{x}_y{y}",
            source=f"{self.path(record)}#level={level}&x={x}&y={y}&w={w}&h={h}",
            actor=actor,
            origin=(record.id, level, x, y),
            pixel_size_um=record.level_pixel_size(level),
            slide=record.name,
            kind=kind,
        )
