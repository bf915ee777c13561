"""The background-job runner: progress on the GUI thread, results, errors, cancellation, ETA."""

from __future__ import annotations

import threading
import time

import pytest

from cytoreview.errors import NotEnoughDataError
from cytoreview.gui.workers import EtaEstimator, JobRunner, format_duration
from cytoreview.types import CancelToken, Progress
from tests.conftest import PATIENCE_MS

pytestmark = pytest.mark.gui


def counting_job(n: int, delay: float = 0.0, seen_threads: list | None = None):
    def factory(token: CancelToken):
        done = 0
        for step in range(1, n + 1):
            if token.cancelled:
                break
            if seen_threads is not None:
                seen_threads.append(threading.get_ident())
            time.sleep(delay)
            done = step
            yield Progress("count", step, n, f"step {step}")
        return {"done": done, "cancelled": token.cancelled}

    return factory


def test_progress_arrives_on_the_gui_thread_and_the_result_comes_back(qtbot) -> None:
    runner = JobRunner("count")
    events, slot_threads, worker_threads, results = [], [], [], []
    runner.progress.connect(
        lambda e: (events.append(e), slot_threads.append(threading.get_ident()))
    )
    runner.succeeded.connect(results.append)
    with qtbot.waitSignal(runner.finished, timeout=PATIENCE_MS):
        runner.start(counting_job(5, seen_threads=worker_threads))
        assert runner.is_running
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert results == [{"done": 5, "cancelled": False}]
    main = threading.get_ident()
    assert set(slot_threads) == {main}  # widgets may be touched in the slots
    assert worker_threads and main not in worker_threads  # the work ran elsewhere
    assert not runner.is_running


def test_errors_are_reported_even_runtime_errors(qtbot) -> None:
    # superqt's worker would swallow a RuntimeError (e.g. from torch): the runner must not.
    for error in (RuntimeError("CUDA out of memory"), NotEnoughDataError("paint 2 images")):

        def failing(token: CancelToken, error=error):
            yield Progress("x", 1, 2)
            raise error

        runner = JobRunner("fail")
        failures, results = [], []
        runner.failed.connect(failures.append)
        runner.succeeded.connect(results.append)
        with qtbot.waitSignal(runner.finished, timeout=PATIENCE_MS):
            runner.start(failing)
        assert failures == [error] and results == []


def test_cancel_stops_the_job_at_its_next_check_and_wait_blocks_until_done(qtbot) -> None:
    runner = JobRunner("slow")
    results = []
    runner.succeeded.connect(results.append)
    first = []
    runner.progress.connect(first.append)
    runner.start(counting_job(5000, delay=0.01))
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(counting_job(1))
    qtbot.waitUntil(lambda: len(first) >= 2, timeout=PATIENCE_MS)
    runner.cancel()
    assert runner.cancel_requested
    assert runner.wait(PATIENCE_MS / 1000)
    assert not runner.is_running
    assert results and results[0]["cancelled"] and results[0]["done"] < 5000


def test_eta_from_recent_progress() -> None:
    now = [0.0]
    eta = EtaEstimator(window_s=100, clock=lambda: now[0])
    assert eta.update(0.0) is None  # one sample: unknown
    now[0] = 10.0
    assert eta.update(0.25) == pytest.approx(30.0)  # 25 % in 10 s: 30 s to go
    now[0] = 20.0
    assert eta.update(0.5) == pytest.approx(20.0)
    now[0] = 21.0
    assert eta.update(0.1) is None  # went backwards: a new stage, start over
    assert eta.update(1.0) == 0.0
    # A sliding window: an early slow phase stops weighing once it is old.
    windowed = EtaEstimator(window_s=10, clock=lambda: now[0])
    for t, f in ((0, 0.0), (100, 0.1), (105, 0.2), (110, 0.3)):
        now[0] = t
        last = windowed.update(f)
    assert last == pytest.approx(0.7 * 10 / 0.2)


def test_eta_never_exceeds_the_time_budget() -> None:
    now = [0.0]
    eta = EtaEstimator(window_s=100, clock=lambda: now[0])
    eta.set_budget(60.0)  # a 1-minute budget on a run of many epochs
    assert eta.update(0.0) == pytest.approx(60.0)  # no rate yet: the budget bounds it
    now[0] = 10.0
    assert eta.update(0.01) == pytest.approx(50.0)  # the rate says 990 s, the budget 50 s
    now[0] = 70.0
    assert eta.update(0.05) == 0.0  # past the budget: finishing now
    eta.reset()  # a new job forgets the budget
    now[0] = 80.0
    eta.update(0.0)
    now[0] = 90.0
    assert eta.update(0.5) == pytest.approx(10.0)


def test_format_duration() -> None:
    assert format_duration(None) == "—"
    assert format_duration(12.4) == "12 s"
    assert format_duration(245) == "4 min 05 s"
    assert format_duration(3725) == "1 h 02 min"
