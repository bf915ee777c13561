"""Repairs of what ``check`` found: a quarantine folder and audited catalog changes.

Nothing is deleted that a person may have made: images and masks (and anything unknown) are
moved to ``PROJECT/quarantine/<time>/`` under their old relative path, and ``manifest.json``
there lists every file with its hash, size and reason. Only machine-made leftovers that are
rebuilt on demand (temp files of model exports and heatmaps, stale owner records, an aborted
model folder without weights) are deleted, and listed in the manifest all the same.

A catalog row is never dropped silently: mask versions and images keep their rows (mask
versions are immutable history; the audit log records that the file was quarantined, and
``check`` then reports it as known); derived rows (a heatmap, a run's checkpoint reference) are
changed in one transaction with their audit entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cytoreview.storage.atomic import atomic_write_bytes, fsync_dir
from cytoreview.storage.catalog import Catalog, utc_now
from cytoreview.storage.hashing import bytes_sha256, file_sha256
from cytoreview.storage.integrity import Finding, is_temp_name

#: The folder, inside the project, where repairs put what they could not trust.
QUARANTINE_DIR = "quarantine"
MANIFEST_NAME = "manifest.json"
#: Runs whose checkpoint may become the current model.
_USABLE = ("finished", "cancelled", "stopped")


class Quarantine:
    """One repair's quarantine folder, created with its first entry.

    Parameters
    ----------
    root
        The project folder.
    actor
        Who runs the repair (written into the manifest).
    """

    def __init__(self, root: Path, actor: str) -> None:
        self.root = Path(root)
        self.actor = actor
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        self.folder = self.root / QUARANTINE_DIR / stamp
        self.entries: list[dict[str, Any]] = []

    @property
    def used(self) -> bool:
        """True once something was moved or deleted."""
        return bool(self.entries)

    def move(self, rel: str, reason: str, finding: Finding | None = None) -> str:
        """Move a file or folder of the project into quarantine; return its new relative path."""
        source = self.root / rel
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = self._describe(rel, source, reason, finding)
        # A rename within the project's file system: the file is in one place or the other.
        os.replace(source, target)
        fsync_dir(target.parent)
        fsync_dir(source.parent)
        entry["moved_to"] = target.relative_to(self.root).as_posix()
        self._add(entry)
        return str(entry["moved_to"])

    def delete(self, rel: str, reason: str, finding: Finding | None = None) -> None:
        """Delete a machine-made leftover (listed in the manifest all the same)."""
        path = self.root / rel
        entry = self._describe(rel, path, reason, finding)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        entry["deleted"] = True
        self._add(entry)

    def _describe(
        self, rel: str, path: Path, reason: str, finding: Finding | None
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": rel, "reason": reason, "at": utc_now()}
        if path.is_file() and not path.is_symlink():
            entry["size"] = path.stat().st_size
            with contextlib.suppress(OSError):
                entry["sha256"] = file_sha256(path)
        if finding is not None:
            entry.update(kind=finding.kind, human=finding.human)
            if finding.entity:
                entry.update(entity=finding.entity, entity_id=finding.entity_id)
            if finding.sha256:
                entry["catalogued_sha256"] = finding.sha256
        return entry

    def _add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        # Rewritten after every entry: a crash during the repair leaves a true manifest.
        manifest = {
            "project": str(self.root),
            "actor": self.actor,
            "entries": self.entries,
            "note": "files moved here by `cytoreview check --repair`; 'path' is where each was "
            "in the project. Nothing here is used by CytoReview.",
        }
        text = json.dumps(manifest, indent=2, sort_keys=True)
        atomic_write_bytes(self.folder / MANIFEST_NAME, text.encode())


# -- audited catalog operations -----------------------------------------------------------------
def record_quarantine(
    catalog: Catalog, actor: str, finding: Finding, moved_to: str | None, reason: str
) -> None:
    """Audit that a referenced file was moved out (its row stays, e.g. a mask version)."""
    with catalog.write() as conn:
        Catalog.audit(
            conn,
            actor,
            "quarantine",
            finding.entity or "file",
            finding.entity_id,
            path=finding.path,
            moved_to=moved_to,
            reason=reason,
            human=finding.human,
        )


def drop_heatmap_row(
    catalog: Catalog, actor: str, finding: Finding, moved_to: str | None, reason: str
) -> None:
    """Forget a heatmap whose file is gone or damaged (derived data: made again on demand)."""
    with catalog.write() as conn:
        conn.execute("DELETE FROM heatmaps WHERE id = ?", (finding.entity_id,))
        Catalog.audit(
            conn,
            actor,
            "quarantine",
            "heatmap",
            finding.entity_id,
            path=finding.path,
            moved_to=moved_to,
            reason=reason,
            row="deleted",
        )


def detach_checkpoint(
    catalog: Catalog, actor: str, finding: Finding, moved_to: str | None, reason: str
) -> str | None:
    """Stop a run from pointing at a checkpoint that is gone or damaged.

    Returns
    -------
    str or None
        When the run's model was the current one of its kind: the model that replaces it (the
        newest usable run with a checkpoint), None if none is left.
    """
    run_id = finding.entity_id
    with catalog.write() as conn:
        row = conn.execute(
            "SELECT kind, model_id FROM training_runs WHERE id = ?", (run_id,)
        ).fetchone()
        conn.execute("UPDATE training_runs SET checkpoint = NULL WHERE id = ?", (run_id,))
        key = f"current_model_{row['kind']}"
        current = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        replaced: str | None = None
        if current is not None and json.loads(current["value"]) == row["model_id"]:
            fallback = conn.execute(
                "SELECT model_id FROM training_runs WHERE kind = ? AND checkpoint IS NOT NULL "
                f"AND status IN ({', '.join('?' * len(_USABLE))}) ORDER BY id DESC LIMIT 1",
                (row["kind"], *_USABLE),
            ).fetchone()
            replaced = fallback["model_id"] if fallback else None
            Catalog.set_meta(conn, key, replaced)
        Catalog.audit(
            conn,
            actor,
            "quarantine",
            "training_run",
            run_id,
            path=finding.path,
            moved_to=moved_to,
            reason=reason,
            checkpoint="detached",
            current_model=replaced,
        )
    return replaced


def record_repair(catalog: Catalog, actor: str, **details: Any) -> None:
    """One audit entry summing up a repair (what was cleaned, where the manifest is)."""
    with catalog.write() as conn:
        Catalog.audit(conn, actor, "repair", "project", None, **details)


# -- restoring a referenced file from an intact copy --------------------------------------------
def restore_candidates(root: Path, catalog: Catalog, finding: Finding) -> list[Path]:
    """Files that may hold the catalogued bytes of a missing or damaged file.

    The atomic writer's temp files beside it (a crash between writing a file and publishing it
    leaves the complete bytes under a temp name), and for an image its import source.
    """
    if finding.path is None:
        return []
    target = root / finding.path
    out: list[Path] = []
    if target.parent.is_dir():
        prefix = f".{target.name}."
        out += sorted(
            p
            for p in target.parent.iterdir()
            if p.is_file() and is_temp_name(p.name) and p.name.startswith(prefix)
        )
    if finding.entity == "image":
        row = catalog.query("SELECT source_path FROM images WHERE id = ?", (finding.entity_id,))
        if row and row[0]["source_path"]:
            out.append(Path(row[0]["source_path"]))
    return out


def restore_from(root: Path, finding: Finding, candidates: list[Path]) -> Path | None:
    """Put back the catalogued bytes from the first candidate whose SHA-256 matches.

    The target must be absent (quarantine a damaged one first). Returns the candidate used.
    """
    if finding.path is None or finding.sha256 is None:
        return None
    target = root / finding.path
    for candidate in candidates:
        try:
            data = candidate.read_bytes() if candidate.is_file() else None
        except OSError:
            continue
        if data is None or bytes_sha256(data) != finding.sha256:
            continue
        atomic_write_bytes(target, data, overwrite=False)
        if is_temp_name(candidate.name) and candidate.parent == target.parent:
            candidate.unlink(missing_ok=True)  # its bytes are published now
        return candidate
    return None


def audit_restore(catalog: Catalog, actor: str, finding: Finding, source: Path) -> None:
    """Audit that a referenced file was restored with its catalogued bytes."""
    with catalog.write() as conn:
        Catalog.audit(
            conn,
            actor,
            "restore",
            finding.entity or "file",
            finding.entity_id,
            path=finding.path,
            source=str(source),
            sha256=finding.sha256,
        )
