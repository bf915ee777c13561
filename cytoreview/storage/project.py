"""A CytoReview project: a folder a pathologist can copy or back up.

Layout::

    PROJECT/
        cytoreview.sqlite      catalog (images, mask versions, predictions, reviews, audit log)
        images/                copies of imported images, byte for byte
        masks/<image name>/    label masks, one file per version, never overwritten
        README.txt             what this folder is

Human work is protected here, at the lowest layer: mask files are written atomically and never
replaced, the catalog row that makes a version current is committed only after its file is on
disk, and an automatic mask is refused when a person's mask is already current.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cytoreview.defaults import check_pixel_size
from cytoreview.errors import (
    CatalogDamagedError,
    ImageReadError,
    ProjectError,
    ProjectExistsError,
    ProjectNotFoundError,
    UnsafePathError,
)
from cytoreview.settings import DEFAULT_BUSY_TIMEOUT_S
from cytoreview.storage.atomic import (
    atomic_write_bytes,
    copy_to_temp,
    publish,
    remove_stale_temps,
    write_temp,
)
from cytoreview.storage.catalog import Catalog, utc_now
from cytoreview.storage.hashing import bytes_sha256
from cytoreview.storage.image_refs import ImageRef, file_problem, read_ref
from cytoreview.storage.images import DEFAULT_MAX_PIXELS, ImageInfo, LoadedImage
from cytoreview.storage.mask_codec import decode_mask_png, encode_mask_png, validate_label_mask
from cytoreview.storage.names import name_component, path_inside, safe_image_name
from cytoreview.storage.records import AuditEntry, ImageRecord, MaskVersion
from cytoreview.storage.run_guard import recover_interrupted_runs
from cytoreview.types import CLASS_SCHEMES, DEFAULT_SCHEME, ClassScheme, Provenance

log = logging.getLogger(__name__)

CATALOG_FILE = "cytoreview.sqlite"
#: Who the audit log names for what the program does by itself (closing a dead run on open).
SYSTEM_ACTOR = "cytoreview"
_README = """This folder is a CytoReview project.

cytoreview.sqlite  the catalog: images, mask versions and their provenance, predictions,
                   reviews, training runs and the audit log of every change
images/            copies of the imported images, unchanged
masks/             label masks (0 background, 1 cytoplasm, 2 nucleus), one PNG per version

Copy or back up the whole folder. Do not edit files inside it by hand: open it with
`cytoreview status PROJECT` or `cytoreview gui PROJECT`.
"""


@dataclass(frozen=True)
class ImportOutcome:
    """What :meth:`Project.import_file` did with one file.

    Attributes
    ----------
    record
        The catalogued image (the one already there when ``status`` is not ``"added"``).
    status
        ``"added"``: a new image; ``"present"``: the same content was already catalogued and
        intact; ``"restored"``: it was catalogued but its file was missing or damaged (or its
        linked source gone), and this file put it back.
    detail
        For ``"restored"``, what was wrong before.
    """

    record: ImageRecord
    status: Literal["added", "present", "restored"]
    detail: str = ""


class Project:
    """An open project folder. Use :meth:`init` or :meth:`open`, and close it (or use ``with``)."""

    def __init__(self, root: Path, catalog: Catalog) -> None:
        self.root = root
        self.catalog = catalog
        try:
            self.scheme = ClassScheme.from_dict(catalog.get_meta("class_scheme"))
            self.max_pixels = int(catalog.get_meta("max_pixels", DEFAULT_MAX_PIXELS))
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogDamagedError(
                catalog.path,
                f"the catalog is damaged: its class scheme or pixel limit is "
                f"unreadable ({type(exc).__name__}: {exc})",
            ) from exc

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        root: str | Path,
        *,
        actor: str,
        scheme: ClassScheme | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> Project:
        """Create a new project folder (it may exist if empty) and return it open.

        Raises
        ------
        ProjectExistsError
            If the folder already holds a project or other files.
        """
        root = Path(root)
        scheme = scheme or CLASS_SCHEMES[DEFAULT_SCHEME]
        if (root / CATALOG_FILE).exists():
            raise ProjectExistsError(f"{root}: a CytoReview project already exists here")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ProjectExistsError(f"{root}: folder is not empty; choose a new or empty folder")
        if max_pixels <= 0:
            raise ProjectError(f"max_pixels must be positive, got {max_pixels}")
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("images", "masks"):
            (root / sub).mkdir(exist_ok=True)
        atomic_write_bytes(root / "README.txt", _README.encode())
        catalog = Catalog(root / CATALOG_FILE, busy_timeout_s, create=True)
        with catalog.write() as conn:
            catalog.set_meta(conn, "class_scheme", scheme.to_dict())
            catalog.set_meta(conn, "max_pixels", int(max_pixels))
            catalog.set_meta(conn, "created_at", utc_now())
            catalog.set_meta(conn, "created_by", actor)
            Catalog.audit(
                conn, actor, "init", "project", None, scheme=scheme.to_dict(), max_pixels=max_pixels
            )
        return cls(root, catalog)

    @classmethod
    def open(cls, root: str | Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Project:
        """Open an existing project; leftovers of a crashed writer are cleaned up."""
        root = Path(root)
        if not (root / CATALOG_FILE).is_file():
            raise ProjectNotFoundError(
                f"{root}: not a CytoReview project (no {CATALOG_FILE}); "
                "create one with `cytoreview init`"
            )
        catalog = Catalog(root / CATALOG_FILE, busy_timeout_s)
        try:
            if catalog.get_meta("class_scheme") is None:
                raise ProjectError(
                    f"{root}: the catalog has no class scheme; the project is damaged"
                )
            project = cls(root, catalog)
        except BaseException:
            catalog.close()
            raise
        removed = remove_stale_temps(root / "masks") + remove_stale_temps(root / "images")
        # Copied slides only: slides/<name>/ holds label pyramids of thousands of chunk files.
        removed += remove_stale_temps(root / "slides", recursive=False)
        if removed:
            log.warning("%s: removed %d half-written file(s) left by a crash", root, removed)
        # A training run whose process was killed would otherwise stay "running" for ever.
        recover_interrupted_runs(root, catalog, actor=SYSTEM_ACTOR)
        return project

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images ------------------------------------------------------------------------------
    def find_by_sha(self, sha256: str) -> ImageRecord | None:
        """The image with this content hash, if the project has it."""
        rows = self.catalog.query("SELECT * FROM images WHERE sha256 = ?", (sha256,))
        return ImageRecord.from_row(rows[0]) if rows else None

    def images(self, class_label: str | None = None) -> list[ImageRecord]:
        """All images (of one class if given), in name order."""
        if class_label is None:
            rows = self.catalog.query("SELECT * FROM images ORDER BY name")
        else:
            rows = self.catalog.query(
                "SELECT * FROM images WHERE class_label = ? ORDER BY name", (class_label,)
            )
        return [ImageRecord.from_row(r) for r in rows]

    def image(self, key: int | str) -> ImageRecord:
        """One image by id or by name."""
        column = "id" if isinstance(key, int) else "name"
        rows = self.catalog.query(f"SELECT * FROM images WHERE {column} = ?", (key,))
        if not rows:
            raise ProjectError(f"{self.root}: no image {key!r} in this project")
        return ImageRecord.from_row(rows[0])

    def image_path(self, record: ImageRecord) -> Path:
        """The file to read the image from: the project's copy, else the linked source.

        Raises
        ------
        UnsafePathError
            If the catalogued copy's path leads outside the project (a damaged catalog).
        """
        if record.stored_path:
            return path_inside(self.root, record.stored_path)
        return Path(record.source_path)

    def image_ref(self, record: ImageRecord) -> ImageRef:
        """What a reader needs to load ``record`` without the catalog (e.g. a batch worker).

        Raises
        ------
        UnsafePathError
            If the catalogued copy's path leads outside the project (a damaged catalog).
        """
        return ImageRef(
            name=record.name,
            path=self.image_path(record),
            sha256=record.sha256,
            linked=not record.stored_path,
            max_pixels=self.max_pixels,
            exif_orientation=record.orientation is not None,
        )

    def image_problem(self, record: ImageRecord) -> str | None:
        """Why an image's file cannot be trusted now, or None when it is intact.

        The file is hashed and compared with the catalog (see
        :func:`~cytoreview.storage.image_refs.file_problem`).
        """
        try:
            return file_problem(self.image_ref(record))
        except UnsafePathError as exc:
            return str(exc)

    def load_image(self, record: ImageRecord) -> LoadedImage:
        """Read an image of the project (display RGB plus the original pixels).

        Raises
        ------
        ImageReadError
            If the file is missing, damaged, changed since import (linked images) or unreadable;
            the message names the file and says how to restore it.
        """
        try:
            ref = self.image_ref(record)
        except UnsafePathError as exc:
            raise ImageReadError(record.stored_path or record.source_path, str(exc)) from None
        return read_ref(ref)

    def add_image(
        self,
        source: Path,
        info: ImageInfo,
        sha256: str,
        *,
        actor: str,
        class_label: str | None = None,
        split: str | None = None,
        copy: bool = True,
    ) -> ImageRecord:
        """Catalogue an image checked by the reader (see :meth:`import_file`); return its row.

        If the same content is already catalogued, that image is returned (and restored when
        its file was missing or damaged).
        """
        return self.import_file(
            source, info, sha256, actor=actor, class_label=class_label, split=split, copy=copy
        ).record

    def import_file(
        self,
        source: Path,
        info: ImageInfo,
        sha256: str,
        *,
        actor: str,
        class_label: str | None = None,
        split: str | None = None,
        copy: bool = True,
    ) -> ImportOutcome:
        """Catalogue an image already checked by the reader; copy it into the project.

        Safe with other processes importing into the same project at the same moment: the
        file is first copied under a temporary name (outside the lock: the slow part); then one
        ``BEGIN IMMEDIATE`` transaction checks for the same content, picks a free name,
        publishes the copy under that name without ever replacing a file, and inserts the row.
        A crash leaves at most a temp file (swept on open) or a file no row refers to.

        Parameters
        ----------
        source
            The image file.
        info
            Its header facts, from :func:`~cytoreview.storage.images.read_image`.
        sha256
            Hex SHA-256 of its bytes, computed by the caller; the copy is checked against it.
        actor
            Who imports (audited).
        class_label
            Resolved against the project's scheme (``UnknownClassError`` if not part of it).
        split
            ``train``, ``val``, ``test`` or None.
        copy
            Copy into ``images/`` (default) or only link to ``source``.

        Raises
        ------
        ImageReadError
            If the source changed between the caller's hash and the copy.
        """
        label = self.scheme.resolve(class_label) if class_label else None
        given = Path(source)  # the name comes from the path given (a link's own name)...
        source = given.resolve()  # ...the catalog records the file it leads to
        tmp: Path | None = None
        if copy:
            tmp = self._copy_in(source, sha256)
        try:
            with self._publishing() as published, self.catalog.write() as conn:
                row = conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha256,)).fetchone()
                if row is not None:
                    existing = ImageRecord.from_row(row)
                    return self._keep_or_restore(conn, existing, source, tmp, actor)
                base, suffix = safe_image_name(given.stem), given.suffix.lower()
                name, stored = self._place(conn, base, sha256, suffix, tmp, published)
                image_id = self._insert_image(
                    conn, name, str(source), stored, sha256, info, label, split, actor
                )
                Catalog.audit(
                    conn, actor, "import", "image", image_id, name=name, source=str(source),
                    sha256=sha256, class_label=label, copied=copy,
                )  # fmt: skip
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)  # published copies were renamed away
        return ImportOutcome(self.image(image_id), "added")

    def add_generated_image(
        self,
        data: bytes,
        info: ImageInfo,
        *,
        name: str,
        source: str,
        actor: str,
        origin: tuple[int, int, int, int] | None = None,
        pixel_size_um: float | None = None,
        **details: Any,
    ) -> ImportOutcome:
        """Catalogue an image made by the program (a crop cut from a slide) from its file bytes.

        The bytes are written to a temp file and published under a free name in the same way
        as an imported copy, so a crash leaves at most a temp file.

        Parameters
        ----------
        data
            The encoded image file (PNG).
        info
            Its header facts.
        name
            Wanted name (made safe; a suffix is added if taken).
        source
            What the row records as where it came from (e.g. the slide path and region).
        actor
            Who made it (audited, with ``details``).
        origin
            ``(slide_id, level, x, y)`` of a crop: its slide, the level it was cut at and its
            top-left corner in level-0 pixels.
        pixel_size_um
            Micrometres per pixel of the crop.
        """
        sha256 = bytes_sha256(data)
        info = replace(info, pixel_size_um=pixel_size_um)
        tmp = write_temp(self.root / "images", data)
        try:
            with self._publishing() as published, self.catalog.write() as conn:
                row = conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha256,)).fetchone()
                if row is not None:
                    existing = ImageRecord.from_row(row)
                    return self._keep_or_restore(conn, existing, Path(source), tmp, actor)
                image_name, stored = self._place(
                    conn, safe_image_name(name), sha256, ".png", tmp, published
                )
                image_id = self._insert_image(
                    conn, image_name, source, stored, sha256, info, None, None, actor, origin
                )
                Catalog.audit(
                    conn, actor, "add_crop", "image", image_id, name=image_name, source=source,
                    sha256=sha256, **details,
                )  # fmt: skip
        finally:
            tmp.unlink(missing_ok=True)
        return ImportOutcome(self.image(image_id), "added")

    @staticmethod
    def _insert_image(
        conn: sqlite3.Connection,
        name: str,
        source: str,
        stored: str | None,
        sha256: str,
        info: ImageInfo,
        label: str | None,
        split: str | None,
        actor: str,
        origin: tuple[int, int, int, int] | None = None,
    ) -> int:
        """Insert one ``images`` row; return its id."""
        slide_id, level, x, y = origin if origin is not None else (None, None, None, None)
        cursor = conn.execute(
            "INSERT INTO images (name, source_path, stored_path, sha256, width, height, "
            "channels, dtype, n_pages, format, class_label, split, imported_at, "
            "imported_by, pixel_size_um, orientation, slide_id, slide_level, slide_x, slide_y) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name, source, stored, sha256, info.width, info.height, info.channels,
                info.dtype, info.n_pages, info.format, label, split, utc_now(), actor,
                info.pixel_size_um, info.orientation, slide_id, level, x, y,
            ),
        )  # fmt: skip
        return int(cursor.lastrowid or 0)

    def _copy_in(self, source: Path, sha256: str) -> Path:
        """Copy ``source`` to a temp file in ``images/`` and check it holds ``sha256``."""
        tmp, copied = copy_to_temp(source, self.root / "images")
        if copied != sha256:
            tmp.unlink(missing_ok=True)
            raise ImageReadError(source, "file changed while it was being imported; try again")
        return tmp

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[list[Path]]:
        """Collect files published inside a transaction; remove them if it does not commit."""
        published: list[Path] = []
        try:
            yield published
        except BaseException:
            for path in published:
                path.unlink(missing_ok=True)
            raise

    def _place(
        self,
        conn: sqlite3.Connection,
        base: str,
        sha256: str,
        suffix: str,
        tmp: Path | None,
        published: list[Path],
    ) -> tuple[str, str | None]:
        """Pick a free name inside the write transaction and publish the copy under it.

        Returns (name, stored path relative to the project, None when linked). A name is free
        when no row has it and, for a copy, no file has its path: an existing file is never
        replaced (it may be a crash leftover or belong to a name that differs only in case).
        """
        tag = sha256[:8]
        candidates = [base, f"{base}__{tag}", *(f"{base}__{tag}_{k}" for k in range(2, 1000))]
        for name in candidates:
            if conn.execute("SELECT 1 FROM images WHERE name = ?", (name,)).fetchone():
                continue
            if tmp is None:
                return name, None
            stored = f"images/{name}{suffix}"
            target = path_inside(self.root, stored)
            try:
                publish(tmp, target, overwrite=False)
            except FileExistsError:
                continue
            published.append(target)
            return name, stored
        raise ProjectError(f"{self.root}: no free name for {base!r}; the images folder is full")

    def _keep_or_restore(
        self,
        conn: sqlite3.Connection,
        existing: ImageRecord,
        source: Path,
        tmp: Path | None,
        actor: str,
    ) -> ImportOutcome:
        """The same content is catalogued: restore its file if it is missing or damaged."""
        problem = self.image_problem(existing)
        if problem is None:
            return ImportOutcome(existing, "present")
        if existing.stored_path:
            target = path_inside(self.root, existing.stored_path)
            own = tmp is None  # a linking import restores a copied image as a copy
            copied = self._copy_in(source, existing.sha256) if tmp is None else tmp
            try:
                # Overwriting is right here: the file on disk no longer matches its row.
                target.parent.mkdir(parents=True, exist_ok=True)
                publish(copied, target, overwrite=True)
            finally:
                if own:
                    copied.unlink(missing_ok=True)
        else:
            conn.execute(
                "UPDATE images SET source_path = ? WHERE id = ?", (str(source), existing.id)
            )
        Catalog.audit(
            conn,
            actor,
            "restore_image",
            "image",
            existing.id,
            name=existing.name,
            source=str(source),
            problem=problem,
        )
        record = ImageRecord.from_row(
            conn.execute("SELECT * FROM images WHERE id = ?", (existing.id,)).fetchone()
        )
        return ImportOutcome(record, "restored", problem)

    def set_class(
        self, image_id: int, class_label: str | None, *, actor: str, **details: Any
    ) -> str | None:
        """Set or clear the expert class label of an image; return the label it had.

        ``details`` (e.g. where the new label comes from) go into the audit entry.
        """
        label = self.scheme.resolve(class_label) if class_label else None
        with self.catalog.write() as conn:
            old = conn.execute(
                "SELECT class_label FROM images WHERE id = ?", (image_id,)
            ).fetchone()
            if old is None:
                raise ProjectError(f"no image with id {image_id}")
            conn.execute("UPDATE images SET class_label = ? WHERE id = ?", (label, image_id))
            Catalog.audit(
                conn, actor, "set_class", "image", image_id, old=old[0], new=label, **details
            )
        return None if old[0] is None else str(old[0])

    def set_pixel_size(
        self, pixel_size_um: float | None, *, actor: str, image_ids: Iterable[int] | None = None
    ) -> None:
        """Set the micrometres per pixel of some images, or the project default.

        Parameters
        ----------
        pixel_size_um
            Micrometres per pixel (see :data:`~cytoreview.defaults.PIXEL_SIZE_UM_RANGE`), or
            None to clear.
        actor
            Who made the change (audited).
        image_ids
            Images to set; None sets the project default used where an image has none.
        """
        try:
            value = None if pixel_size_um is None else check_pixel_size(pixel_size_um)
        except ValueError as exc:
            raise ProjectError(str(exc)) from None
        with self.catalog.write() as conn:
            if image_ids is None:
                Catalog.set_meta(conn, "pixel_size_um", value)
                Catalog.audit(conn, actor, "set_pixel_size", "project", None, value=value)
                return
            ids = sorted(set(image_ids))
            conn.executemany(
                "UPDATE images SET pixel_size_um = ? WHERE id = ?", [(value, i) for i in ids]
            )
            Catalog.audit(conn, actor, "set_pixel_size", "image", None, value=value, ids=ids)

    def pixel_size(self, record: ImageRecord) -> float | None:
        """Micrometres per pixel of an image: its own (from TIFF tags) or the project default."""
        if record.pixel_size_um:
            return record.pixel_size_um
        default = self.catalog.get_meta("pixel_size_um")
        return float(default) if default else None

    def set_seeds(self, image_ids: Iterable[int], *, actor: str, **details: Any) -> None:
        """Make exactly ``image_ids`` the seed set (images to paint by hand)."""
        wanted = sorted(set(image_ids))
        with self.catalog.write() as conn:
            before = {r[0] for r in conn.execute("SELECT id FROM images WHERE is_seed = 1")}
            conn.execute("UPDATE images SET is_seed = 0 WHERE is_seed = 1")
            conn.executemany("UPDATE images SET is_seed = 1 WHERE id = ?", [(i,) for i in wanted])
            Catalog.audit(
                conn, actor, "set_seeds", "project", None, n=len(wanted),
                added=sorted(set(wanted) - before), removed=sorted(before - set(wanted)),
                **details,
            )  # fmt: skip

    # -- masks -------------------------------------------------------------------------------
    def save_mask(
        self,
        image_id: int,
        mask: np.ndarray,
        provenance: Provenance | str,
        *,
        actor: str,
        source_model: str | None = None,
        uncertainty: float | None = None,
        note: str | None = None,
        based_on: int | None = None,
    ) -> MaskVersion:
        """Save a new version of an image's mask; earlier versions stay on disk and in the log.

        ``based_on`` is the version number the edit started from (0: no mask yet). When another
        writer (a second window, a CLI job) saved a newer version meanwhile, the edit is still
        saved, as the newest version, and the conflict is written in its note and the audit log
        (both versions stay): the saved version's number is then not ``based_on + 1``.

        Raises
        ------
        ValueError
            If the mask does not fit the image (shape) or holds values other than 0/1/2.
        ProjectError
            If an ``auto`` mask would replace a person's mask.
        """
        provenance = Provenance(provenance)
        record = self.image(image_id)
        mask = validate_label_mask(mask, (record.height, record.width))
        data = encode_mask_png(mask)
        with self.catalog.write() as conn:
            current = self._current_row(conn, image_id)
            if (
                provenance is Provenance.AUTO
                and current is not None
                and Provenance(current["provenance"]).is_human
            ):
                raise ProjectError(
                    f"{record.name}: has a {current['provenance']} mask (version "
                    f"{current['version']}); an automatic mask never replaces a person's work"
                )
            version = (current["version"] if current is not None else 0) + 1
            conflict = based_on is not None and based_on != version - 1
            if conflict:  # checked inside the write transaction: no other writer in between
                found = f"v{version - 1} by {current['author']}" if current is not None else "none"
                clash = f"edited from v{based_on}; the current version was {found}"
                note = f"{note}; {clash}" if note else clash
            # A random tag keeps names unique even where a crash left an uncommitted file.
            folder = name_component(record.name)
            rel = f"masks/{folder}/v{version:04d}-{provenance.value}-{uuid.uuid4().hex[:8]}.png"
            # The file is complete on disk before the row that makes it current is committed.
            atomic_write_bytes(path_inside(self.root, rel), data, overwrite=False)
            cursor = conn.execute(
                "INSERT INTO mask_versions (image_id, version, path, sha256, provenance, "
                "author, created_at, source_model, uncertainty, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    version,
                    rel,
                    bytes_sha256(data),
                    provenance.value,
                    actor,
                    utc_now(),
                    source_model,
                    uncertainty,
                    note,
                ),
            )
            version_id = int(cursor.lastrowid or 0)
            Catalog.audit(
                conn, actor, "save_mask", "image", image_id, version=version,
                provenance=provenance.value, path=rel, source_model=source_model,
                **({"based_on": based_on, "conflict": True} if conflict else {}),
            )  # fmt: skip
        return self._version(version_id)

    @staticmethod
    def _current_row(conn: Any, image_id: int) -> Any:
        return conn.execute(
            "SELECT * FROM mask_versions WHERE image_id = ? ORDER BY version DESC LIMIT 1",
            (image_id,),
        ).fetchone()

    def _version(self, version_id: int) -> MaskVersion:
        rows = self.catalog.query("SELECT * FROM mask_versions WHERE id = ?", (version_id,))
        return MaskVersion.from_row(rows[0])

    def mask_versions(self, image_id: int) -> list[MaskVersion]:
        """All mask versions of an image, oldest first."""
        rows = self.catalog.query(
            "SELECT * FROM mask_versions WHERE image_id = ? ORDER BY version", (image_id,)
        )
        return [MaskVersion.from_row(r) for r in rows]

    def read_mask_version(self, version: MaskVersion) -> np.ndarray | None:
        """The label image of one version; None if its file is missing, damaged or misplaced."""
        try:
            data = path_inside(self.root, version.path).read_bytes()
        except (OSError, UnsafePathError):
            return None
        if bytes_sha256(data) != version.sha256:
            return None
        return decode_mask_png(data)

    def current_mask(self, image_id: int) -> tuple[MaskVersion, np.ndarray] | None:
        """The newest intact mask version of an image and its pixels, or None.

        A version whose file is missing or fails its checksum (disk damage, a hand edit) is
        skipped with a warning, so the last good version is what a person sees.
        """
        for version in reversed(self.mask_versions(image_id)):
            mask = self.read_mask_version(version)
            if mask is not None:
                return version, mask
            log.warning("%s: mask version file is missing or damaged; using an older one",
                        self.root / version.path)  # fmt: skip
        return None

    def current_versions(self) -> dict[int, MaskVersion]:
        """The newest mask version of every image that has one, by image id."""
        rows = self.catalog.query(
            "SELECT m.* FROM mask_versions m JOIN (SELECT image_id, MAX(version) AS v "
            "FROM mask_versions GROUP BY image_id) c ON m.image_id = c.image_id AND m.version = c.v"
        )
        return {int(r["image_id"]): MaskVersion.from_row(r) for r in rows}

    # -- audit ---------------------------------------------------------------------------------
    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit log, oldest first (the last ``limit`` entries if given)."""
        if limit is None:
            rows = self.catalog.query("SELECT * FROM audit_log ORDER BY id")
        else:
            rows = self.catalog.query(
                "SELECT * FROM (SELECT * FROM audit_log ORDER BY id DESC LIMIT ?) ORDER BY id",
                (int(limit),),
            )
        return [AuditEntry.from_row(r) for r in rows]

    def write_export(self, path: Path, data: bytes) -> None:
        """Write one exported file atomically (exports may go outside the project folder)."""
        atomic_write_bytes(Path(path), data)
