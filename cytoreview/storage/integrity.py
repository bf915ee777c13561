"""Checking a project folder: the catalog, the files it references and the files it does not.

Read-only: nothing here writes (the catalog is opened with ``query_only``); repairs are in
:mod:`cytoreview.storage.repair`, and the rules that pick a repair for a finding in
:mod:`cytoreview.workflows.check`.

Findings have a severity:

``damage``
    The catalog says something that is not true: a damaged page, a referenced file missing or
    with other bytes than its stored hash, a checkpoint whose CRCs fail. Counted as corruption.
``leftover``
    What a crash leaves and a repair cleans: temp files of the atomic writer, files no row
    references (a file written just before a kill, whose row was never committed), a training
    run whose process died.
``note``
    Worth saying, not a problem: a temp or unreferenced file young enough to belong to a writer
    that is still running, a training run in progress, a file quarantined by an earlier repair.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.errors import CatalogError
from cytoreview.storage.atomic import STALE_TEMP_AGE_S, TEMP_SUFFIX
from cytoreview.storage.catalog import probe_catalog_file
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.project import CATALOG_FILE
from cytoreview.storage.run_guard import (
    ALIVE,
    DEAD,
    RUN_LOCK_NAME,
    checkpoint_is_intact,
    run_state,
)
from cytoreview.storage.schema import SCHEMA_VERSION

DAMAGE, LEFTOVER, NOTE = "damage", "leftover", "note"
#: Folders of a project whose every file the catalog should know (``quarantine/`` is not one).
MANAGED_FOLDERS = ("images", "masks", "heatmaps", "models")
#: Files the operating system scatters around; never reported.
_OS_CLUTTER = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
#: Tables a catalog of this version must have.
_TABLES = (
    "meta",
    "images",
    "mask_versions",
    "predictions",
    "reviews",
    "training_runs",
    "audit_log",
    "heatmaps",
    "trainee_answers",
)
#: JSON columns: (table, column, may be NULL).
_JSON_COLUMNS = (
    ("meta", "value", False),
    ("training_runs", "config", False),
    ("training_runs", "metrics", True),
    ("heatmaps", "quality", False),
    ("predictions", "probabilities", False),
    ("audit_log", "details", False),
)
#: At most this many lines of SQLite's integrity report are kept.
_MAX_INTEGRITY_LINES = 20
#: Model files checked when present (derived from the checkpoint: rebuilt if missing).
ONNX_FILES = ("model.onnx", "model.int8.onnx")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_temp_name(name: str) -> bool:
    """True for the atomic writer's temp file names (``.<name>.<random>.partial``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


@dataclass(frozen=True)
class Finding:
    """One thing ``check`` reports.

    Parameters
    ----------
    kind
        What was found (``missing-file``, ``hash-mismatch``, ``temp-file``...).
    severity
        ``damage``, ``leftover`` or ``note`` (see the module's docstring).
    path
        The file, relative to the project folder (POSIX), absolute for a linked source, or
        None for the catalog as a whole.
    message
        One readable line, without the path.
    entity, entity_id
        The catalog row that references the file (``image``, ``mask_version``, ``heatmap``,
        ``training_run``), if any.
    human
        True when the file is a person's work (a manual, corrected or approved mask).
    sha256
        The hash the catalog stores for the file, if any (used to restore it).
    """

    kind: str
    severity: str
    path: str | None
    message: str
    entity: str | None = None
    entity_id: int | None = None
    human: bool = False
    sha256: str | None = None

    def line(self) -> str:
        """One line: severity, file and what is wrong."""
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


@dataclass(frozen=True)
class FileRef:
    """A file the catalog references, and how to verify it."""

    entity: str
    entity_id: int
    path: str  # relative to the project, or absolute for a linked image
    what: str  # readable: "mask version 3 (manual) of image cell_1"
    check: str  # "sha256", "checkpoint", "png" or "onnx"
    sha256: str | None = None
    human: bool = False
    linked: bool = False
    #: Missing is fine (a derived file rebuilt on demand).
    optional: bool = False


@dataclass
class CatalogFacts:
    """What the scanner read from the catalog (when it could)."""

    refs: list[FileRef] = field(default_factory=list)
    #: Run id, model id, status of every training run.
    runs: list[tuple[int, str, str]] = field(default_factory=list)
    #: (entity, entity id, path) of every file an earlier repair quarantined.
    quarantined: set[tuple[str, int, str]] = field(default_factory=set)


def png_crc_ok(path: Path) -> bool:
    """True if ``path`` is a complete PNG whose every chunk passes its CRC-32."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data.startswith(_PNG_SIGNATURE):
        return False
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            return False
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[pos + 4 : end]) != crc:
            return False
        if chunk_type == b"IEND":
            return True
        pos = end + 4
    return False


def onnx_ok(path: Path) -> bool:
    """True if ``path`` parses as an ONNX model with a graph (no checksum exists for ONNX)."""
    # Imported here: only a check that finds ONNX files pays for it.
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except (OSError, DecodeError, ValueError, RuntimeError):
        return False
    return len(model.graph.node) > 0


class ProjectScanner:
    """Reads a project's catalog and folders and reports what is wrong (never writes).

    Parameters
    ----------
    root
        The project folder.
    temp_age_s
        Temp files and unreferenced files younger than this may belong to a writer that is still
        running (another window, a CLI job): they are notes, not leftovers. 0 treats every one
        as a leftover (right after a crash, when nothing else runs).
    """

    def __init__(self, root: Path, *, temp_age_s: float = STALE_TEMP_AGE_S) -> None:
        self.root = Path(root)
        self.catalog_path = self.root / CATALOG_FILE
        self.temp_age_s = float(temp_age_s)
        self.catalog_ok = False
        self._now = time.time()

    # -- the catalog ---------------------------------------------------------------------------
    def check_catalog(self) -> tuple[list[Finding], CatalogFacts]:
        """SQLite's integrity and foreign-key checks, the schema and stored JSON.

        When they pass, the references are read and ``catalog_ok`` is set: only then can the
        file checks that follow be trusted.
        """
        findings: list[Finding] = []
        facts = CatalogFacts()
        rel = self.catalog_path.name
        if not self.catalog_path.is_file():
            return [Finding("catalog-missing", DAMAGE, rel, "the catalog file is missing")], facts
        try:
            probe_catalog_file(self.catalog_path)
        except CatalogError as exc:
            return [Finding("not-a-catalog", DAMAGE, rel, exc.reason)], facts
        try:
            conn = sqlite3.connect(self.catalog_path, isolation_level=None)
        except sqlite3.Error as exc:
            return [Finding("catalog-unreadable", DAMAGE, rel, f"cannot open ({exc})")], facts
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            findings += self._catalog_findings(conn)
            if not findings:
                self._read_facts(conn, facts)
                self.catalog_ok = True
        except sqlite3.DatabaseError as exc:
            findings.append(Finding("catalog-integrity", DAMAGE, rel, f"unreadable ({exc})"))
        finally:
            conn.close()
        return findings, facts

    def _catalog_findings(self, conn: sqlite3.Connection) -> list[Finding]:
        rel = self.catalog_path.name
        lines = [r[0] for r in conn.execute(f"PRAGMA integrity_check({_MAX_INTEGRITY_LINES})")]
        if lines != ["ok"]:
            return [Finding("catalog-integrity", DAMAGE, rel, f"SQLite: {line}") for line in lines]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            return [
                Finding(
                    "not-a-catalog",
                    DAMAGE,
                    rel,
                    "an SQLite file without CytoReview's tables, not a CytoReview catalog",
                )
            ]
        version = int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
        if version > SCHEMA_VERSION:
            return [
                Finding(
                    "catalog-newer",
                    DAMAGE,
                    rel,
                    f"written by a newer CytoReview (schema "
                    f"{version}, this version reads up to {SCHEMA_VERSION})",
                )
            ]
        missing = [t for t in _TABLES if t not in tables]
        if missing or version < SCHEMA_VERSION:
            return [
                Finding(
                    "catalog-schema",
                    DAMAGE,
                    rel,
                    f"schema {version} is incomplete "
                    f"(missing: {', '.join(missing) or 'none'}); open the project once "
                    "to migrate it",
                )
            ]
        findings = [
            Finding("foreign-key", DAMAGE, rel, f"{r[0]} row {r[1]} refers to a missing {r[2]} row")
            for r in conn.execute("PRAGMA foreign_key_check")
        ]
        for table, column, nullable in _JSON_COLUMNS:
            condition = f"{column} IS NOT NULL AND " if nullable else ""
            bad = conn.execute(
                f"SELECT rowid FROM {table} WHERE {condition}NOT json_valid({column})"
            ).fetchall()
            findings += [
                Finding("bad-json", DAMAGE, rel, f"{table} row {r[0]}: {column} is not valid JSON")
                for r in bad
            ]
        scheme = conn.execute("SELECT value FROM meta WHERE key = 'class_scheme'").fetchone()
        if scheme is None:
            findings.append(Finding("catalog-schema", DAMAGE, rel, "no class scheme"))
        return findings

    def _read_facts(self, conn: sqlite3.Connection, facts: CatalogFacts) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # Images and slides (catalog v4+): a copy inside the project, or a linked source.
        for table, entity in (("images", "image"), ("slides", "slide")):
            if table not in tables:
                continue
            for r in conn.execute(
                f"SELECT id, name, stored_path, source_path, sha256 FROM {table}"
            ):
                linked = r["stored_path"] is None
                facts.refs.append(
                    FileRef(
                        entity,
                        r["id"],
                        r["source_path"] if linked else r["stored_path"],
                        f"{'linked ' if linked else ''}{entity} {r['name']!r}",
                        "sha256",
                        r["sha256"],
                        linked=linked,
                    )
                )
        for r in conn.execute(
            "SELECT m.id, m.version, m.path, m.sha256, m.provenance, i.name FROM mask_versions m "
            "JOIN images i ON i.id = m.image_id"
        ):
            facts.refs.append(
                FileRef(
                    "mask_version",
                    r["id"],
                    r["path"],
                    f"mask version {r['version']} ({r['provenance']}) of image {r['name']!r}",
                    "sha256",
                    r["sha256"],
                    human=r["provenance"] != "auto",
                )
            )
        for r in conn.execute(
            "SELECT h.id, h.path, h.model_id, h.method, i.name FROM heatmaps h "
            "JOIN images i ON i.id = h.image_id"
        ):
            facts.refs.append(
                FileRef(
                    "heatmap",
                    r["id"],
                    r["path"],
                    f"{r['method']} heatmap of image {r['name']!r} by {r['model_id']}",
                    "png",
                )
            )
        for r in conn.execute("SELECT id, model_id, status, checkpoint FROM training_runs"):
            model_id = str(r["model_id"] or "")
            facts.runs.append((int(r["id"]), model_id, str(r["status"])))
            if r["checkpoint"]:
                what = f"checkpoint of model {model_id} (training run {r['id']})"
                facts.refs.append(
                    FileRef("training_run", r["id"], r["checkpoint"], what, "checkpoint")
                )
                folder = Path(r["checkpoint"]).parent
                for name in ONNX_FILES:
                    facts.refs.append(
                        FileRef(
                            "training_run",
                            r["id"],
                            (folder / name).as_posix(),
                            f"ONNX export of model {model_id}",
                            "onnx",
                            optional=True,
                        )
                    )
        for r in conn.execute(
            "SELECT entity, entity_id, details FROM audit_log WHERE action = 'quarantine'"
        ):
            path = json.loads(r["details"]).get("path")
            if r["entity_id"] is not None and path:
                facts.quarantined.add((str(r["entity"]), int(r["entity_id"]), str(path)))

    # -- referenced files ------------------------------------------------------------------------
    def verify(self, ref: FileRef, facts: CatalogFacts) -> Finding | None:
        """Check one referenced file: present, and its bytes what the catalog says."""
        path = Path(ref.path) if ref.linked else self.root / ref.path
        base = {
            "entity": ref.entity,
            "entity_id": ref.entity_id,
            "human": ref.human,
            "sha256": ref.sha256,
        }
        if not path.is_file():
            if ref.optional and not path.exists():
                return None
            if (ref.entity, ref.entity_id, ref.path) in facts.quarantined and not path.exists():
                return Finding(
                    "quarantined",
                    NOTE,
                    ref.path,
                    f"{ref.what}: gone since an earlier repair quarantined it (see the audit "
                    "log and quarantine/)",
                    **base,
                )
            kind = "linked-source" if ref.linked else "missing-file"
            why = "the linked source file is missing" if ref.linked else "the file is missing"
            return Finding(kind, DAMAGE, ref.path, f"{ref.what}: {why}", **base)
        if ref.check == "sha256":
            try:
                actual = file_sha256(path)
            except OSError as exc:
                return Finding(
                    "unreadable-file",
                    DAMAGE,
                    ref.path,
                    f"{ref.what}: cannot be read ({exc.strerror or exc})",
                    **base,
                )
            if actual != ref.sha256:
                kind = "linked-source" if ref.linked else "hash-mismatch"
                return Finding(
                    kind,
                    DAMAGE,
                    ref.path,
                    f"{ref.what}: the file's bytes differ from those catalogued (SHA-256 mismatch)",
                    **base,
                )
            return None
        intact = {"checkpoint": checkpoint_is_intact, "png": png_crc_ok, "onnx": onnx_ok}
        if not intact[ref.check](path):
            return Finding(
                "damaged-file",
                DAMAGE,
                ref.path,
                f"{ref.what}: the file is damaged (its checksums or structure fail)",
                **base,
            )
        return None

    # -- files the catalog does not know ---------------------------------------------------------
    def _age(self, path: Path) -> float:
        try:
            return self._now - path.stat().st_mtime
        except OSError:
            return 0.0

    def _leftover(self, kind: str, path: Path, message: str, age: float | None = None) -> Finding:
        age = self._age(path) if age is None else age
        rel = path.relative_to(self.root).as_posix()
        if age < self.temp_age_s:
            return Finding(
                kind,
                NOTE,
                rel,
                f"{message}; {age:.0f} s old, may belong to a writer "
                "that is still running (left alone)",
            )
        return Finding(kind, LEFTOVER, rel, message)

    def unreferenced(self, facts: CatalogFacts) -> list[Finding]:
        """Temp files, files no row references, model folders of no run, stale owner records."""
        known = {r.path for r in facts.refs if not r.linked}
        findings: list[Finding] = []
        for entry in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if entry.is_file() and is_temp_name(entry.name):
                findings.append(self._leftover("temp-file", entry, "temp file of a crashed write"))
        for folder in ("images", "masks", "heatmaps"):
            for path in _files_under(self.root / folder):
                findings += self._classify(path, known)
        runs = {model_id: status for _, model_id, status in facts.runs}
        models = self.root / "models"
        for entry in sorted(models.iterdir()) if models.is_dir() else []:
            if not entry.is_dir() or entry.is_symlink():
                findings += self._classify(entry, known)
            elif entry.name not in runs:
                # A run being started has its folder a moment before its row.
                age = min(self._age(p) for p in [entry, *_files_under(entry)])
                findings.append(
                    self._leftover(
                        "orphan-model-folder", entry, "model folder of no training run", age
                    )
                )
            else:
                for path in _files_under(entry):
                    if is_temp_name(path.name):
                        findings.append(
                            self._leftover("temp-file", path, "temp file of a crashed write")
                        )
                lock = entry / RUN_LOCK_NAME
                if lock.is_file() and runs[entry.name] != "running":
                    findings.append(
                        Finding(
                            "stale-run-lock",
                            LEFTOVER,
                            lock.relative_to(self.root).as_posix(),
                            f"owner record of a closed run ({runs[entry.name]})",
                        )
                    )
        return findings

    def _classify(self, path: Path, known: set[str]) -> list[Finding]:
        if path.name.lower() in _OS_CLUTTER:
            return []
        if is_temp_name(path.name):
            return [self._leftover("temp-file", path, "temp file of a crashed write")]
        rel = path.relative_to(self.root).as_posix()
        if rel in known:
            return []
        return [self._leftover("orphan-file", path, "no catalog row references this file")]

    # -- training runs ---------------------------------------------------------------------------
    def runs(self, facts: CatalogFacts) -> list[Finding]:
        """``running`` runs: in progress (note) or whose process died (leftover)."""
        findings = []
        for run_id, model_id, status in facts.runs:
            if status != "running":
                continue
            state, owner = run_state(self.root / "models" / model_id)
            rel = f"models/{model_id}"
            who = f"process {owner.pid} on {owner.host}" if owner else "no owner record"
            if state == DEAD:
                findings.append(
                    Finding(
                        "interrupted-run",
                        LEFTOVER,
                        rel,
                        f"training run {run_id} is recorded as "
                        f"running but its process is gone ({who})",
                        "training_run",
                        run_id,
                    )
                )
            else:
                where = (
                    "in progress"
                    if state == ALIVE
                    else "whose process cannot be checked from here (another computer, or "
                    "Windows); left alone"
                )
                findings.append(
                    Finding(
                        "running",
                        NOTE,
                        rel,
                        f"training run {run_id} {where} ({who})",
                        "training_run",
                        run_id,
                    )
                )
        return findings


def _files_under(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` (symlinks as files, never followed), in sorted order."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or path.is_file():
            yield path
