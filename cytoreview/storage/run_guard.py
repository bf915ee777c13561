"""Training runs whose process died: who owns a run, whether it still lives, and the clean-up.

A run is recorded as ``running`` when it starts and closed when it ends. A process killed in
between (SIGKILL, a power cut, the window closed by the system) never closes it: the row stayed
``running`` for ever and its folder (a ~57 MB checkpoint plus exports and temp files) leaked.

So a run leaves an owner record, ``run.lock`` in its model folder, *before* its row exists:
the process id, the host, and the process's start time (a process id alone can be reused by an
unrelated process after a reboot or a wrap-around). Whoever opens or checks the project asks
whether that owner still lives; a run whose owner is gone is marked ``interrupted`` (audited)
and its folder is cleaned, keeping the best checkpoint if the run had written one.

Light by design (no torch): :meth:`Project.open` runs it on every open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoreview.errors import ProjectLockedError
from cytoreview.storage.atomic import atomic_write_bytes
from cytoreview.storage.catalog import Catalog, utc_now

log = logging.getLogger(__name__)

#: The owner record a running training run keeps in its model folder.
RUN_LOCK_NAME = "run.lock"
#: Files a kept checkpoint needs (see :mod:`cytoreview.storage.checkpoints`).
CHECKPOINT_FILES = ("model.pt", "config.json")
#: The status given to a run whose process died before it could close the run.
INTERRUPTED = "interrupted"
#: Owner states; ``unknown``: another host, or a platform where liveness cannot be proven.
ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"


@dataclass(frozen=True)
class RunOwner:
    """The process that runs a training run."""

    pid: int
    host: str
    #: The process's start time as the OS reports it (None where it cannot be read).
    start: str | None

    def to_json(self) -> bytes:
        """The lock file's content."""
        return json.dumps(
            {"pid": self.pid, "host": self.host, "start": self.start}, sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunOwner | None:
        """Parse a lock file; None when it is damaged or foreign."""
        try:
            raw = json.loads(data)
            return cls(int(raw["pid"]), str(raw["host"]), raw.get("start"))
        except (ValueError, KeyError, TypeError):
            return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque token; None if unknown or not running.

    On Linux: field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), which changes when a
    process id is reused. Elsewhere None: liveness then rests on the process id alone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def current_owner() -> RunOwner:
    """The calling process as a run owner."""
    pid = os.getpid()
    return RunOwner(pid, socket.gethostname(), process_start(pid))


def owner_state(owner: RunOwner) -> str:
    """Whether the process that owns a run still runs: ``alive``, ``dead`` or ``unknown``."""
    if owner.host != socket.gethostname():
        return UNKNOWN  # a project on a shared drive, trained from another computer
    if os.name == "nt":
        return UNKNOWN  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return DEAD
    except PermissionError:
        pass  # the process exists, under another user
    except OSError:
        return UNKNOWN
    if owner.start is not None:
        now = process_start(owner.pid)
        if now is not None and now != owner.start:
            return DEAD  # the process id now belongs to another process
    return ALIVE


def write_run_lock(folder: Path) -> None:
    """Record this process as the owner of the run in ``folder`` (before its row exists)."""
    atomic_write_bytes(folder / RUN_LOCK_NAME, current_owner().to_json())


def remove_run_lock(folder: Path) -> None:
    """Forget the owner record of a run that has been closed."""
    with contextlib.suppress(FileNotFoundError):
        (folder / RUN_LOCK_NAME).unlink()


def read_run_lock(folder: Path) -> RunOwner | None:
    """The owner record of a run folder; None if there is none or it is unreadable."""
    try:
        return RunOwner.from_json((folder / RUN_LOCK_NAME).read_bytes())
    except OSError:
        return None


def run_state(folder: Path) -> tuple[str, RunOwner | None]:
    """Liveness of the run whose model folder is ``folder``, and its owner record.

    A ``running`` row without an owner record is dead: every run writes its record before its
    row, so only a run of an older version (that had none) or one whose clean-up was cut short
    lacks it.
    """
    owner = read_run_lock(folder)
    return (DEAD, None) if owner is None else (owner_state(owner), owner)


def checkpoint_is_intact(path: Path) -> bool:
    """True if ``path`` is a complete torch checkpoint (a zip whose members pass their CRCs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        return False


@dataclass(frozen=True)
class InterruptedRun:
    """A run found dead and closed as ``interrupted``."""

    run_id: int
    model_id: str
    kept_checkpoint: str | None
    removed: tuple[str, ...]
    owner: RunOwner | None


def _clean_run_folder(root: Path, folder: Path) -> tuple[str | None, list[str]]:
    """Delete a dead run's partial files; keep an intact best checkpoint and its config.

    Everything else in the folder is derived from the checkpoint (ONNX exports, precision
    records) or half-written, and is rebuilt on demand. The owner record goes last.
    """
    keep: set[str] = set()
    checkpoint = folder / CHECKPOINT_FILES[0]
    if checkpoint.is_file() and checkpoint_is_intact(checkpoint):
        keep = set(CHECKPOINT_FILES)
    removed: list[str] = []
    if folder.is_dir():
        entries = sorted(folder.iterdir(), key=lambda p: p.name == RUN_LOCK_NAME)
        for entry in entries:
            if entry.name in keep:
                continue
            rel = entry.relative_to(root).as_posix()
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(rel)
        if not keep:
            with contextlib.suppress(OSError):
                folder.rmdir()
    kept = checkpoint.relative_to(root).as_posix() if keep else None
    return kept, removed


def close_interrupted_run(
    root: Path, catalog: Catalog, run_id: int, *, actor: str, reason: str
) -> InterruptedRun | None:
    """Mark one dead ``running`` run ``interrupted`` and clean its folder (audited).

    The row is re-read inside the write transaction, so two processes opening the project at
    once close a run only once. Files are removed before the commit: a crash in between leaves a
    ``running`` row without owner record, which the next open closes again.

    Returns
    -------
    InterruptedRun or None
        None when the run is no longer ``running`` (another process closed it).
    """
    with catalog.write() as conn:
        row = conn.execute(
            "SELECT kind, model_id FROM training_runs WHERE id = ? AND status = 'running'",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        model_id = str(row["model_id"] or "")
        folder = root / "models" / model_id
        owner = read_run_lock(folder) if model_id else None
        kept, removed = _clean_run_folder(root, folder) if model_id else (None, [])
        details: dict[str, Any] = {"reason": reason, "kept_checkpoint": kept}
        conn.execute(
            "UPDATE training_runs SET status = ?, finished_at = ?, metrics = ?, checkpoint = ? "
            "WHERE id = ?",
            (INTERRUPTED, utc_now(), json.dumps(details, sort_keys=True), kept, run_id),
        )
        Catalog.audit(
            conn,
            actor,
            "train_interrupted",
            "training_run",
            run_id,
            model_id=model_id,
            reason=reason,
            kept_checkpoint=kept,
            removed=len(removed),
            pid=owner.pid if owner else None,
            host=owner.host if owner else None,
        )
    return InterruptedRun(run_id, model_id, kept, tuple(removed), owner)


def dead_runs(root: Path, catalog: Catalog) -> list[tuple[int, str, RunOwner | None]]:
    """``running`` runs whose process is gone: (run id, model id, owner record)."""
    out = []
    for row in catalog.query("SELECT id, model_id FROM training_runs WHERE status = 'running'"):
        model_id = str(row["model_id"] or "")
        state, owner = run_state(root / "models" / model_id) if model_id else (DEAD, None)
        if state == DEAD:
            out.append((int(row["id"]), model_id, owner))
    return out


def recover_interrupted_runs(root: Path, catalog: Catalog, *, actor: str) -> list[InterruptedRun]:
    """Close every run whose process died (see the module's docstring); return them.

    A project another process is writing to is left for the next open: opening must not fail
    because of a clean-up.
    """
    closed = []
    for run_id, model_id, owner in dead_runs(root, catalog):
        reason = (
            f"process {owner.pid} on {owner.host} ended without closing the run"
            if owner
            else "no owner record (the run's process ended without closing it)"
        )
        try:
            done = close_interrupted_run(root, catalog, run_id, actor=actor, reason=reason)
        except ProjectLockedError:
            log.info("%s: run %d left for later: the project is busy", root, run_id)
            continue
        except OSError as exc:  # e.g. a file that cannot be removed: opening goes on
            log.warning("%s: could not clean interrupted run %d (%s)", root, run_id, exc)
            continue
        if done is not None:
            closed.append(done)
            log.warning(
                "%s: training run %d (%s) was interrupted; %s",
                root,
                run_id,
                model_id,
                f"its best checkpoint {done.kept_checkpoint} is kept"
                if done.kept_checkpoint
                else "it had saved no checkpoint",
            )
    return closed
