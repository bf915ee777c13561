"""Coalesced plot updates: the first at once, bursts merged into one call with the newest."""

from __future__ import annotations

import pytest

from cytoreview.gui.throttle import Throttle
from tests.conftest import PATIENCE_MS

pytestmark = pytest.mark.gui


def test_bursts_are_coalesced_and_flush_draws_the_last(qtbot) -> None:
    calls: list[int] = []
    throttle = Throttle(200, calls.append)
    throttle.push(1)
    assert calls == [1]  # quiet before: drawn at once
    for value in (2, 3, 4):
        throttle.push(value)
    assert calls == [1]  # within the interval: waiting
    qtbot.waitUntil(lambda: calls == [1, 4], timeout=PATIENCE_MS)  # one call, the newest value
    throttle.push(5)
    throttle.flush()
    assert calls == [1, 4, 5]
    throttle.flush()
    assert calls == [1, 4, 5]  # nothing pending: nothing drawn
