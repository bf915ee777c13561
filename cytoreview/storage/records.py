"""Plain records read from the catalog."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from cytoreview.types import Provenance


@dataclass(frozen=True)
class ImageRecord:
    """One image of a project, as catalogued."""

    id: int
    name: str
    source_path: str
    stored_path: str | None
    sha256: str
    width: int
    height: int
    channels: int
    dtype: str
    n_pages: int
    format: str
    class_label: str | None
    split: str | None
    is_seed: bool
    imported_at: str
    imported_by: str
    pixel_size_um: float | None = None  # micrometres per pixel, when known
    #: EXIF orientation (1-8) applied when the image is read; None for images imported before
    #: CytoReview honoured it, which are read as stored so that their masks still fit.
    orientation: int | None = None
    #: For a crop cut from a slide: the slide's id, the level it was cut at and its top-left
    #: corner in level-0 pixels. None for an image imported as a file.
    slide_id: int | None = None
    slide_level: int | None = None
    slide_x: int | None = None
    slide_y: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ImageRecord:
        """Build from an ``images`` row."""
        data = dict(row)
        data["is_seed"] = bool(data["is_seed"])
        return cls(**data)


@dataclass(frozen=True)
class MaskVersion:
    """One saved version of an image's label mask."""

    id: int
    image_id: int
    version: int
    path: str
    sha256: str
    provenance: Provenance
    author: str
    created_at: str
    source_model: str | None
    uncertainty: float | None
    note: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> MaskVersion:
        """Build from a ``mask_versions`` row."""
        data = dict(row)
        data["provenance"] = Provenance(data["provenance"])
        return cls(**data)


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit log."""

    id: int
    at: str
    actor: str
    action: str
    entity: str
    entity_id: int | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditEntry:
        """Build from an ``audit_log`` row."""
        data = dict(row)
        data["details"] = json.loads(data["details"])
        return cls(**data)

    def line(self) -> str:
        """One readable line: time, who, what, on which entity, with the details."""
        details = ", ".join(f"{k}={v}" for k, v in sorted(self.details.items()) if v is not None)
        target = f"{self.entity} {self.entity_id}" if self.entity_id else self.entity
        return f"{self.at}  {self.actor:<16} {self.action:<10} {target:<10} {details}".rstrip()
