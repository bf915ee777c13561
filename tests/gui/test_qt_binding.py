"""The Qt binding itself: signals must not corrupt Python's reference counts.

PySide6 6.12.0 drops one reference to ``True`` on every signal delivered to a Python slot; after
a few thousand signals (minutes of painting) Python aborts with "bool_dealloc". The tested
constraints pin 6.11.0; this test fails on a binding with that bug.
"""

from __future__ import annotations

import sys

import pytest
from qtpy.QtCore import QObject, Signal


class _Emitter(QObject):
    plain = Signal()
    payload = Signal(object)


@pytest.mark.gui
def test_signals_keep_reference_counts(qapp) -> None:
    emitter = _Emitter()
    received: list[object] = []
    emitter.plain.connect(lambda: received.append(1))
    emitter.payload.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(500):
        emitter.plain.emit()
        emitter.payload.emit(None)
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert len(received) == 1000
    # A few references may come and go; hundreds lost would be the binding's bug.
    assert abs(after[0] - before[0]) < 50, f"True lost {before[0] - after[0]} references"
    assert abs(after[1] - before[1]) < 600, f"None lost {before[1] - after[1]} references"
