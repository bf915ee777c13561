"""The project catalog: one SQLite database in WAL mode, migrated on open.

All writes go through :meth:`Catalog.write`, a ``BEGIN IMMEDIATE`` transaction: two processes
never interleave a write, a reader never waits for a writer (WAL), and a writer that cannot get
the lock within the busy timeout gets a :class:`~cytoreview.errors.ProjectLockedError` with a
message a person can act on.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cytoreview.errors import (
    CatalogDamagedError,
    NotACatalogError,
    ProjectError,
    ProjectLockedError,
    SchemaVersionError,
)
from cytoreview.settings import DEFAULT_BUSY_TIMEOUT_S
from cytoreview.storage.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)


def utc_now() -> str:
    """Current time as an ISO 8601 UTC string with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


#: The first 16 bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: SQLite's primary result codes for a damaged file (SQLITE_CORRUPT) and for a file that is not
#: a database (SQLITE_NOTADB); extended codes carry them in their low byte.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def damage_error(path: Path, exc: sqlite3.Error) -> CatalogDamagedError | None:
    """The typed error for an SQLite error that means "this file is damaged", else None.

    Only SQLITE_CORRUPT and SQLITE_NOTADB qualify: a constraint violation or a misspelt column
    is a program's error and must keep its own type.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or (code & 0xFF) not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return None
    return CatalogDamagedError(
        path, f"the catalog is damaged ({exc}); run `cytoreview check` on the project folder"
    )


def probe_catalog_file(path: Path) -> None:
    """Refuse a file that cannot be a catalog before SQLite opens (and would write) it.

    Raises
    ------
    NotACatalogError
        If the file is empty or does not start with SQLite's header. SQLite treats an empty
        file as a new database, so opening one would silently write a fresh schema into it.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read the catalog ({exc.strerror or exc})") from exc
    if not head:
        raise NotACatalogError(
            path,
            "the catalog file is empty (0 bytes), not a CytoReview catalog; only "
            "`cytoreview init` creates one (restore the file from a backup)",
        )
    if head != SQLITE_MAGIC:
        raise NotACatalogError(path, "not a CytoReview catalog (not an SQLite database)")


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
        if not create:
            probe_catalog_file(self.path)
        self.busy_timeout_s = busy_timeout_s
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
            # exactly one `with catalog.write()` block.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ProjectError(f"{self.path}: cannot open the catalog ({exc})") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            if not create:
                # Before anything that writes (the WAL switch): a foreign file stays untouched.
                self._require_own_schema()
            self._conn.execute("PRAGMA foreign_keys = ON")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # FULL: a committed mask version survives a power cut, not only a crash.
            self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise damage_error(self.path, exc) or ProjectError(
                f"{self.path}: not a readable CytoReview catalog ({exc})"
            ) from exc
        except ProjectError:
            self._conn.close()
            raise
        if str(mode).lower() != "wal":
            raise ProjectError(f"{self.path}: could not switch the catalog to WAL mode ({mode})")
        # One connection may be shared by a GUI thread and a worker thread.
        self._lock = threading.RLock()
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            self._raise_if_damaged(exc)
            raise

    def _require_own_schema(self) -> None:
        """Refuse an SQLite file that CytoReview did not create: only ``init`` adds a schema."""
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if found is None:
            raise NotACatalogError(
                self.path,
                "an SQLite database without CytoReview's tables, not a CytoReview catalog; "
                "only `cytoreview init` creates one",
            )

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
            except sqlite3.DatabaseError as exc:
                self._rollback()
                self._raise_if_damaged(exc)
                raise
            except BaseException:
                self._rollback()
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()
                if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
                    raise self._locked_error() from exc
                self._raise_if_damaged(exc)
                raise

    def _raise_if_damaged(self, exc: sqlite3.Error) -> None:
        """Raise the typed error if ``exc`` says the file is damaged; else return."""
        damaged = damage_error(self.path, exc)
        if damaged is not None:
            raise damaged from exc

    def _rollback(self) -> None:
        """Roll back if a transaction is still open.

        SQLite ends it itself after some errors (a full disk, an I/O error); a second error
        from ROLLBACK would then hide the first.
        """
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("%s: rollback failed after an error", self.path, exc_info=True)

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query and return all rows."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                self._raise_if_damaged(exc)
                raise

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
        except (TypeError, json.JSONDecodeError) as exc:
            raise CatalogDamagedError(
                self.path, f"the catalog is damaged: setting {key!r} is not valid JSON ({exc})"
            ) from exc

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        """Store a JSON value in the ``meta`` table, inside the caller's transaction."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )
