"""The project catalog: one SQLite database in WAL mode, migrated on open.

All writes go through :meth:`Catalog.write`, a ``BEGIN IMMEDIATE`` transaction: two processes
never interleave a write, a reader never waits for a writer (WAL), and a writer that cannot get
the lock within the busy timeout gets a :class:`~cytoreview.errors.ProjectLockedError` with a
message a person can act on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cytoreview.errors import ProjectError, ProjectLockedError, SchemaVersionError
from cytoreview.settings import DEFAULT_BUSY_TIMEOUT_S
from cytoreview.storage.schema import MIGRATIONS, SCHEMA_VERSION


def utc_now() -> str:
    """Current time as an ISO 8601 UTC string with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Catalog:
    """A connection to a project's SQLite catalog.

    Parameters
    ----------
    path
        The database file.
    busy_timeout_s
        How long a write waits for another process's lock before failing.
    create
        Create the file if missing; otherwise a missing file is an error.
    """

    def __init__(
        self, path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, *, create: bool = False
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ProjectError(f"{self.path}: catalog file is missing")
        self.busy_timeout_s = busy_timeout_s
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
            # exactly one `with catalog.write()` block.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA foreign_keys = ON")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # FULL: a committed mask version survives a power cut, not only a crash.
            self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{self.path}: not a readable CytoReview catalog ({exc})") from exc
        if str(mode).lower() != "wal":
            raise ProjectError(f"{self.path}: could not switch the catalog to WAL mode ({mode})")
        # One connection may be shared by a GUI thread and a worker thread.
        self._lock = threading.RLock()
        self._migrate()

    # -- schema ----------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The number of migrations applied to this catalog."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
            except sqlite3.OperationalError as exc:
                if _is_lock_error(exc):
                    raise self._locked_error() from exc
                raise
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path}: written by a newer CytoReview (schema {current}, this version "
                    f"reads up to {SCHEMA_VERSION}); update CytoReview to open it"
                )
            for number in range(current + 1, SCHEMA_VERSION + 1):
                # executescript commits first, so the migration and its version row go in one
                # explicit transaction of their own: a crash leaves the old schema intact.
                script = (
                    "BEGIN IMMEDIATE;\n"
                    + MIGRATIONS[number - 1]
                    + f"\nINSERT INTO schema_version VALUES ({number}, '{utc_now()}');\nCOMMIT;"
                )
                try:
                    self._conn.executescript(script)
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
                        raise self._locked_error() from exc
                    if self.schema_version() >= number:
                        continue  # another process migrated at the same moment
                    raise ProjectError(f"{self.path}: migration {number} failed ({exc})") from exc

    # -- access ----------------------------------------------------------------------------
    def _locked_error(self) -> ProjectLockedError:
        return ProjectLockedError(
            f"{self.path.parent}: the project is busy: another CytoReview process has been "
            f"writing to it for more than {self.busy_timeout_s:g} s; try again when it finishes"
        )

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: commits on success, rolls back on any exception."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_lock_error(exc):
                    raise self._locked_error() from exc
                raise
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._conn.execute("ROLLBACK")
                if _is_lock_error(exc):
                    raise self._locked_error() from exc
                raise

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query and return all rows."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._conn.close()

    # -- helpers used inside write transactions ---------------------------------------------
    @staticmethod
    def audit(
        conn: sqlite3.Connection,
        actor: str,
        action: str,
        entity: str,
        entity_id: int | None = None,
        **details: Any,
    ) -> None:
        """Append one entry to the audit log, inside the caller's transaction."""
        conn.execute(
            "INSERT INTO audit_log (at, actor, action, entity, entity_id, details) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (utc_now(), actor, action, entity, entity_id, json.dumps(details, sort_keys=True)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value from the ``meta`` table."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise ProjectError(
                f"{self.path}: the catalog's setting {key!r} is damaged (not JSON: {exc})"
            ) from None

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        """Store a JSON value in the ``meta`` table, inside the caller's transaction."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )
