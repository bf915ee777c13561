"""Running a workflow generator in a background thread, with progress on the GUI thread.

Workflows (:mod:`cytoreview.workflows`) are generators that yield :class:`Progress` events and
return a report. :class:`JobRunner` runs one in napari's ``thread_worker`` and re-emits its
events as Qt signals, which Qt delivers on the GUI thread: panels update widgets only in their
slots, never from the worker. Stopping goes through a :class:`CancelToken` that the workflow
checks between steps, so a stopped job still finishes cleanly (keeps its best model, its
imported files).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QApplication

from cytoreview.types import CancelToken, Progress

log = logging.getLogger(__name__)

#: A job: given the stop token, the workflow generator to run.
JobFactory = Callable[[CancelToken], Generator[Progress, Any, Any]]


class JobAbortedError(RuntimeError):
    """A job ended without a result because its worker was aborted from outside."""


class _Failure:
    """The exception of a job, passed back as its result (see :func:`_run_job`)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Relay(QObject):
    """Forwards one worker's signals to its runner, on the GUI thread, with the job number."""

    def __init__(self, runner: JobRunner, job: int) -> None:
        super().__init__()  # no Qt parent: the runner keeps it in a dict until the job ends
        self._runner = runner
        self._job = job

    def yielded(self, event: object) -> None:
        self._runner._on_yielded(self._job, event)

    def returned(self, result: object) -> None:
        self._runner._on_returned(self._job, result)

    def finished(self) -> None:
        self._runner._on_finished(self._job)


def _run_job(
    factory: JobFactory, token: CancelToken, done: threading.Event
) -> Generator[Progress, Any, Any]:
    """The worker thread's generator: every outcome comes back as a return value.

    superqt's generator worker swallows a ``RuntimeError`` (it takes it for a deleted Qt
    object) and napari relays other errors to its own notifications, so the job's exception
    is caught here and returned as a :class:`_Failure` instead.
    """
    try:
        result = yield from factory(token)
    except Exception as exc:
        log.debug("background job failed", exc_info=True)
        return _Failure(exc)
    finally:
        done.set()
    return result


class JobRunner(QObject):
    """Runs one workflow generator at a time in a worker thread.

    Signals
    -------
    started()
        The job began.
    progress(object)
        One :class:`Progress` event, on the GUI thread.
    succeeded(object)
        The workflow's return value (its report).
    failed(object)
        The exception that ended the job.
    finished()
        Emitted last, whatever the outcome.
    """

    started = Signal()
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    finished = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._token: CancelToken | None = None
        self._result: tuple[object] | None = None
        self._relays: dict[int, _Relay] = {}
        self._done = threading.Event()
        self._done.set()
        self._running = False
        self._job = 0

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until :attr:`finished` was emitted."""
        return self._running

    @property
    def cancel_requested(self) -> bool:
        """True once the running job was asked to stop."""
        return self._token is not None and self._token.cancelled

    def start(self, factory: JobFactory) -> None:
        """Run ``factory(token)`` in a worker thread.

        Raises
        ------
        RuntimeError
            If a job of this runner is still running.
        """
        if self._running:
            raise RuntimeError(f"{self.name}: a job is already running")
        token = CancelToken()
        self._token = token
        self._done.clear()
        self._running = True
        self._result = None
        self._job += 1
        # A plain function, not a method: napari formats it into its task-status texts, and
        # those may run after this runner's widget is gone. _ignore_errors: _run_job never
        # raises (napari would re-raise in the GUI thread).
        worker = create_worker(_run_job, factory, token, self._done, _ignore_errors=True)
        # Signals of an earlier worker may still be queued when the next job starts: each
        # worker reports through its own relay, tagged with its job number.
        relay = _Relay(self, self._job)
        self._relays[self._job] = relay
        worker.yielded.connect(relay.yielded)
        worker.returned.connect(relay.returned)
        worker.finished.connect(relay.finished)
        self.started.emit()
        worker.start()

    def _on_yielded(self, job: int, event: object) -> None:
        if job == self._job and isinstance(event, Progress):
            self.progress.emit(event)

    def _on_returned(self, job: int, result: object) -> None:
        if job == self._job:
            self._result = (result,)

    def _on_finished(self, job: int) -> None:
        # The job ends when its worker has finished, so nothing of it is left in flight.
        self._relays.pop(job, None)
        if job != self._job or not self._running:
            return
        self._running = False
        outcome = self._result
        self._result = None
        if outcome is None:  # no result: napari aborted the worker (its window closed)
            self.failed.emit(JobAbortedError(f"{self.name}: stopped before it could finish"))
        elif isinstance(outcome[0], _Failure):
            self.failed.emit(outcome[0].error)
        else:
            self.succeeded.emit(outcome[0])
        self.finished.emit()

    def cancel(self) -> None:
        """Ask the running job to stop at its next check (no effect when idle)."""
        if self._token is not None and self._running:
            self._token.cancel()

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until the job ended and its signals were delivered; False on timeout.

        Events are processed while waiting, so the window keeps painting.
        """
        deadline = time.monotonic() + timeout_s
        app = QApplication.instance()
        while self._running and time.monotonic() < deadline:
            self._done.wait(0.02)  # sleeps while the worker runs
            if app is not None:
                app.processEvents()  # paints the window, delivers the worker's signals
            if self._done.is_set():
                time.sleep(0.002)  # its last signals are on their way
        return not self._running


class EtaEstimator:
    """Remaining time of a job from its progress fraction, smoothed over recent progress.

    The rate is measured over a sliding window (the last ``window_s`` seconds) so that a slow
    start (loading data) does not distort the estimate for long.
    """

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._samples: list[tuple[float, float]] = []
        self._deadline: float | None = None

    def reset(self) -> None:
        """Forget the samples and the deadline (a new job)."""
        self._samples.clear()
        self._deadline = None

    def set_budget(self, seconds: float | None) -> None:
        """The job stops at the latest ``seconds`` from now (a training's time budget).

        A training's progress counts epochs up to its maximum, which a budget or early
        stopping usually cuts short: without this, a 10-minute run could announce hours.
        """
        self._deadline = None if not seconds else self._clock() + float(seconds)

    def update(self, fraction: float) -> float | None:
        """Record progress ``fraction`` (0..1) now; return the seconds left, or None if unknown."""
        now = self._clock()
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self._samples and fraction < self._samples[-1][1]:
            self._samples.clear()  # went backwards: a new stage started
        self._samples.append((now, fraction))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.pop(0)
        (t0, f0), (t1, f1) = self._samples[0], self._samples[-1]
        if f1 >= 1.0:
            return 0.0
        left = None if f1 <= f0 or t1 <= t0 else (1.0 - f1) * (t1 - t0) / (f1 - f0)
        if self._deadline is not None:
            budget_left = max(0.0, self._deadline - now)
            left = budget_left if left is None else min(left, budget_left)
        return left


def format_duration(seconds: float | None) -> str:
    """``"1 h 02 min"``, ``"4 min 05 s"``, ``"12 s"``; ``"—"`` when unknown."""
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
