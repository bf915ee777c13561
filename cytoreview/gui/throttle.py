"""Coalescing frequent updates: a live plot redrawn at most once per interval.

Redrawing a matplotlib figure takes 50-150 ms of the GUI thread; epochs on a small data set can
end several times a second, so drawing every one would stall painting and typing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer


class Throttle(QObject):
    """Call ``callback`` with the newest pushed value, at most once per ``interval_ms``.

    The first push after a quiet spell is shown at once; pushes within the interval are
    coalesced into one call at its end, with the latest value. :meth:`flush` shows a pending
    value now (at the end of a job, so the final state is always drawn).
    """

    def __init__(
        self, interval_ms: int, callback: Callable[[Any], None], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._callback = callback
        self._pending: tuple[Any] | None = None
        self._last = -float("inf")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    def push(self, value: Any) -> None:
        """Show ``value`` now if the last call is old enough, else at the end of the interval."""
        self._pending = (value,)
        wait_ms = self.interval_ms - (time.perf_counter() - self._last) * 1000
        if wait_ms <= 0:
            self.flush()
        elif not self._timer.isActive():
            self._timer.start(int(wait_ms) + 1)

    def flush(self) -> None:
        """Call back with the pending value, if any."""
        self._timer.stop()
        if self._pending is None:
            return
        (value,), self._pending = self._pending, None
        self._last = time.perf_counter()
        self._callback(value)


def call_soon(owner: QObject, callback: Callable[[], object]) -> None:
    """Call ``callback`` once the event loop runs again, unless ``owner`` is deleted first.

    ``QTimer.singleShot(0, owner, callback)`` says the same in PySide6, but PyQt6 (another
    napari's binding) has no overload with a context object: a timer parented to ``owner`` works
    in both, and dies with it.
    """
    timer = QTimer(owner)
    timer.setSingleShot(True)
    timer.timeout.connect(callback)
    timer.timeout.connect(timer.deleteLater)
    timer.start(0)
