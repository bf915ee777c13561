"""Saving painted masks without a Save button, and never losing an edit a save could not write.

When. Every finished stroke is saved as soon as it ends (:data:`DEFAULT_DELAY_MS` is 0): a
crash loses at most the stroke being painted. Measured with ``bench_paint_kill.py`` (a stroke
every 0.7 s, SIGKILL at a random moment): with no maximum wait and a 0.8 s pause, 8 of 8 kills
lost every stroke since painting began; with the pause and a 2 s maximum wait, 99 kills lost 0-3
strokes each (164 of 888); saving every stroke, 15 kills lost none. Painting does not wait for
it (strokes take the same 9 ms; ``bench_autosave_latency.py``); the price is one mask version
per stroke in the history (23 KiB a stroke for a 2048 px field instead of 3). While a save is
being written, the strokes that end meanwhile are saved together right after it. A pause and a
maximum wait can still be set (``Autosave(delay_ms=..., max_wait_ms=...)``) for slow disks.
Pending edits are also saved at once when another image opens, before approval, and when the
window or project closes.

Where. A timed save copies the pixels on the GUI thread (0.8 ms for 2048 x 2048) and writes the
copy on one worker thread: PNG encoding, the fsynced atomic write and the catalog commit take
2 ms for a 96 px crop, 12 ms for 1000 px and 42 ms for 2048 px here, more on a busy disk, and
painting must not wait for them. Explicit saves (:meth:`Autosave.flush`) run on the caller's
thread: what follows them needs the mask on disk.

Failures. An edit stays pending until a save of exactly its strokes succeeded. Whatever made a
save fail (disk full, no permission, the project locked by another process...), the edit is kept,
retried with back-off (1, 2, 4 ... 30 s), and :attr:`Autosave.failed` tells the panel, which
shows one line naming the image and the reason. Opening another image keeps it queued (the panel
shows the unsaved pixels when the image opens again); closing the window or the project first
asks (:meth:`Autosave.unsaved_lines`).

Every mark gets a generation number; a save of generation *g* clears the pending edit only if no
stroke came after it, so strokes painted while a save is in flight are saved by the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from cytoreview.errors import CytoReviewError
from cytoreview.gui.state import WorkbenchState
from cytoreview.storage.project import Project
from cytoreview.storage.records import MaskVersion
from cytoreview.types import Provenance
from cytoreview.workflows.mask_edits import SavedEdit, save_edit

log = logging.getLogger(__name__)

#: Quiet time after the last stroke before the mask is written: none, every stroke is kept.
DEFAULT_DELAY_MS = 0
#: Longest an unsaved stroke waits while strokes keep coming.
DEFAULT_MAX_WAIT_MS = 2000
#: Retry delays after failed saves: the first, doubled after each failure up to the last.
RETRY_FIRST_MS, RETRY_MAX_MS = 1000, 30_000


def retry_delay_ms(failures: int) -> int:
    """Back-off before the next try after ``failures`` failed saves in a row (1 s ... 30 s)."""
    return int(min(RETRY_FIRST_MS * 2 ** max(failures - 1, 0), RETRY_MAX_MS))


@dataclass
class PendingSave:
    """An unsaved edit: which image, its mask array (a live reference) and how to label it."""

    image_id: int
    mask: np.ndarray
    provenance: Provenance
    generation: int  # of the newest stroke
    first_marked: float  # monotonic time of the oldest unsaved stroke


@dataclass(frozen=True)
class _Attempt:
    """One edit being written: a copy of its pixels, taken on the GUI thread."""

    image_id: int
    generation: int
    pixels: np.ndarray
    provenance: Provenance
    baseline: np.ndarray | None  # the pixels last saved (None: unknown)
    based_on: int  # the version number the edit started from


@dataclass(frozen=True)
class _Outcome:
    attempt: _Attempt
    saved: SavedEdit | None = None  # None and no error: nothing changed since the last save
    error: str | None = None
    ms: float = 0.0


class Autosave(QObject):
    """Mask saving for the open project: timed, off the GUI thread, retried until it succeeds.

    Parameters
    ----------
    state
        The workbench state (the open project, the person's name).
    delay_ms
        Quiet time after a stroke before saving.
    max_wait_ms
        Longest time an unsaved stroke waits while strokes keep coming.
    background
        Write timed saves on a worker thread (False: on the GUI thread, for comparison).

    Signals
    -------
    saved(int, object)
        Image id and the :class:`~cytoreview.workflows.mask_edits.SavedEdit`.
    failed(int, str)
        Image id and why its save failed (the edit stays pending and is retried).
    """

    saved = Signal(int, object)
    failed = Signal(int, str)
    _done = Signal(object)  # a worker's future, delivered on the GUI thread

    def __init__(
        self,
        state: WorkbenchState,
        delay_ms: int = DEFAULT_DELAY_MS,
        max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
        *,
        background: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.background = background
        self._pending: dict[int, PendingSave] = {}
        self._baselines: dict[int, tuple[np.ndarray, int]] = {}  # pixels, version number
        self._errors: dict[int, str] = {}
        self._generation = 0
        self._failures = 0  # failed saves in a row
        self._inflight: Future[list[_Outcome]] | None = None
        self._again = False  # a save was due while one was in flight
        self._executor: ThreadPoolExecutor | None = None
        self._shut = False
        self._quiet = self._single_shot(delay_ms)
        self._deadline = self._single_shot(max_wait_ms)
        self._retry = self._single_shot(RETRY_FIRST_MS)
        self._done.connect(self._on_done)
        #: Milliseconds the last save took (PNG encode, atomic write, catalog commit).
        self.last_save_ms: float = 0.0
        state.add_before_close(self.flush)
        state.add_close_guard(self._close_guard)
        state.project_changed.connect(self._on_project_changed)

    def _single_shot(self, interval_ms: int) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(int(interval_ms))
        timer.timeout.connect(self._start_save)
        return timer

    @property
    def delay_ms(self) -> int:
        """The quiet time before a save."""
        return int(self._quiet.interval())

    @property
    def max_wait_ms(self) -> int:
        """The longest an unsaved stroke waits while strokes keep coming."""
        return int(self._deadline.interval())

    # -- what the panel tells ------------------------------------------------------------------
    def set_baseline(self, image_id: int, pixels: np.ndarray, version: int) -> None:
        """The pixels shown when ``image_id`` opened and their version number (0: no mask).

        A stroke undone before the save writes nothing, and a save says which version the edit
        started from, so that a newer version saved meanwhile by someone else is noticed.
        """
        self._baselines[int(image_id)] = (np.array(pixels, copy=True), int(version))

    def mark_dirty(self, image_id: int, mask: np.ndarray, provenance: Provenance) -> None:
        """Schedule a save of ``mask`` as a new version of ``image_id``.

        ``mask`` is kept by reference: the save writes its pixels as they are when it starts.
        """
        self._generation += 1
        previous = self._pending.get(image_id)
        first = previous.first_marked if previous is not None else time.monotonic()
        self._pending[image_id] = PendingSave(image_id, mask, provenance, self._generation, first)
        if self._failures or self._shut:
            return  # the retry timer is running: it saves whatever is pending
        self._quiet.start()
        if not self._deadline.isActive():
            self._deadline.start()

    def is_pending(self, image_id: int | None = None) -> bool:
        """Whether ``image_id`` (or any image) has unsaved edits."""
        return bool(self._pending) if image_id is None else image_id in self._pending

    def unsaved_reason(self, image_id: int) -> str | None:
        """Save the pending edits now; why ``image_id``'s edit is still not on disk (None: it is).

        What a person approves must be what is on disk: both approving docks ask this first.
        """
        self.flush()
        if not self.is_pending(image_id):
            return None
        return self.error(image_id) or "not saved yet"

    def pending_mask(self, image_id: int) -> np.ndarray | None:
        """The unsaved pixels of ``image_id`` (the live array), if any."""
        item = self._pending.get(image_id)
        return None if item is None else item.mask

    def error(self, image_id: int) -> str | None:
        """Why the last save of ``image_id`` failed, while its edit is still pending."""
        return self._errors.get(image_id) if image_id in self._pending else None

    @property
    def retry_in_ms(self) -> int | None:
        """Milliseconds until failed saves are tried again (None: no retry waiting)."""
        return int(self._retry.remainingTime()) if self._retry.isActive() else None

    def discard(self, image_id: int) -> None:
        """Forget the unsaved edit of ``image_id`` (the person chose to drop it)."""
        self._pending.pop(image_id, None)
        self._errors.pop(image_id, None)
        if not self._pending:
            self._failures = 0
            self._retry.stop()

    def discard_all(self) -> list[int]:
        """Forget every unsaved edit (the person chose to); return the image ids dropped."""
        dropped = sorted(self._pending)
        for image_id in dropped:
            self.discard(image_id)
        if dropped:
            log.error("unsaved mask edits of image(s) %s were discarded by the person", dropped)
        return dropped

    def unsaved_lines(self) -> list[str]:
        """One line per image with unsaved edits: its name and why it is not saved."""
        lines = []
        for image_id in sorted(self._pending):
            reason = self._errors.get(image_id, "not saved yet")
            lines.append(f"{self.image_name(image_id)}: {reason}")
        return lines

    def image_name(self, image_id: int) -> str:
        """The name of image ``image_id`` (its id in words when the catalog cannot say)."""
        project = self.state.project
        try:
            return project.image(image_id).name if project is not None else f"image {image_id}"
        except Exception:  # noqa: BLE001 - the catalog may be what fails; the id still names it
            return f"image {image_id}"

    # -- saving --------------------------------------------------------------------------------
    def _start_save(self) -> None:
        """A timer fired: write the pending edits, on the worker thread when there is one."""
        for timer in (self._quiet, self._deadline, self._retry):
            timer.stop()
        if self._inflight is not None:
            self._again = True
            return
        project = self.state.project
        attempts = self._snapshot() if project is not None else []
        if not attempts:
            return
        if not self.background or self._shut:
            self._finish(self._write(project, attempts, self.state.actor))
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cytoreview-autosave")
        future = self._executor.submit(self._write, project, attempts, self.state.actor)
        self._inflight = future
        # Called on the worker thread; the signal hands the future over to the GUI thread.
        future.add_done_callback(self._done.emit)

    def _on_done(self, future: Future[list[_Outcome]]) -> None:
        if future is not self._inflight:  # flush() has taken care of it already
            return
        self._inflight = None
        self._finish(future.result())
        if self._again:
            self._again = False
            self._start_save()

    def flush(self) -> list[MaskVersion]:
        """Save every pending edit now, on this thread; return the versions written.

        An edit that cannot be saved stays pending (see :meth:`is_pending`) and is retried.
        """
        for timer in (self._quiet, self._deadline, self._retry):
            timer.stop()
        self._again = False
        written: list[MaskVersion] = []
        if self._inflight is not None:  # the save in flight first: its result is needed
            future, self._inflight = self._inflight, None
            written += self._finish(future.result())
        project = self.state.project
        if project is None:
            if self._pending:
                log.error("no project open: unsaved edits of %s are lost", self.unsaved_lines())
            self._pending.clear()
            return written
        attempts = self._snapshot()
        if attempts:
            written += self._finish(self._write(project, attempts, self.state.actor))
        return written

    def _snapshot(self) -> list[_Attempt]:
        """Copies of the pending pixels, taken on the GUI thread (the only one that paints)."""
        attempts = []
        for item in self._pending.values():
            baseline, based_on = self._baselines.get(item.image_id, (None, None))
            if based_on is None:  # a caller that never said what it showed
                project = self.state.project
                versions = project.mask_versions(item.image_id) if project is not None else []
                based_on = versions[-1].version if versions else 0
            attempts.append(
                _Attempt(item.image_id, item.generation, item.mask.copy(), item.provenance,
                         baseline, based_on)
            )  # fmt: skip
        return attempts

    @staticmethod
    def _write(project: Project, attempts: Sequence[_Attempt], actor: str) -> list[_Outcome]:
        """Write each attempt (on the worker thread: no Qt here)."""
        outcomes = []
        for attempt in attempts:
            baseline = attempt.baseline
            if baseline is not None and np.array_equal(attempt.pixels, baseline):
                outcomes.append(_Outcome(attempt))  # painted and undone: nothing new to keep
                continue
            start = time.perf_counter()
            try:
                saved = save_edit(
                    project, attempt.image_id, attempt.pixels, attempt.provenance,
                    actor=actor, based_on=attempt.based_on,
                )  # fmt: skip
            # Whatever the reason (disk full, permission, a locked or damaged catalog), the
            # edit must survive: it stays pending and the reason is shown.
            except Exception as exc:
                if not isinstance(exc, OSError | ValueError | CytoReviewError):  # a bug: trace it
                    log.exception("saving the mask of image %s failed", attempt.image_id)
                outcomes.append(_Outcome(attempt, error=_describe(exc)))
                continue
            outcomes.append(_Outcome(attempt, saved, ms=(time.perf_counter() - start) * 1000))
        return outcomes

    def _finish(self, outcomes: Sequence[_Outcome]) -> list[MaskVersion]:
        """Back on the GUI thread: clear what was saved, keep and report what was not."""
        written: list[MaskVersion] = []
        failed: list[_Outcome] = []
        for outcome in outcomes:
            attempt = outcome.attempt
            if outcome.error is not None:
                failed.append(outcome)
                continue
            item = self._pending.get(attempt.image_id)
            if item is not None and item.generation == attempt.generation:
                del self._pending[attempt.image_id]  # no stroke came after this save
            self._errors.pop(attempt.image_id, None)
            if outcome.saved is None:
                continue
            self._baselines[attempt.image_id] = (attempt.pixels, outcome.saved.version.version)
            self.last_save_ms = outcome.ms
            written.append(outcome.saved.version)
            self.saved.emit(attempt.image_id, outcome.saved)
        if failed:
            self._failures += 1
            delay = retry_delay_ms(self._failures)
            self._retry.start(delay)
            for outcome in failed:
                image_id = outcome.attempt.image_id
                self._errors[image_id] = str(outcome.error)
                log.warning("mask of image %s not saved (%s); retrying in %d ms",
                            image_id, outcome.error, delay)  # fmt: skip
                self.failed.emit(image_id, str(outcome.error))
        elif outcomes:
            self._failures = 0
        return written

    # -- closing -------------------------------------------------------------------------------
    def _close_guard(self) -> str | None:
        """Before the project closes: save, and say what could not be saved."""
        self.flush()
        if not self._pending:
            return None
        return "unsaved mask edits: " + "; ".join(self.unsaved_lines())

    def _on_project_changed(self, _project: object) -> None:
        # Edits of the project that closed were saved, or the person chose to drop them.
        self._pending.clear()
        self._baselines.clear()
        self._errors.clear()
        self._failures = 0
        self._retry.stop()

    def shutdown(self) -> None:
        """Save what is pending and stop the worker thread (the window closes)."""
        self.flush()
        self._shut = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _describe(exc: BaseException) -> str:
    """The reason of a failed save in words: ``disk full``, ``permission denied``..."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc) or type(exc).__name__
