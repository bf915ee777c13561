"""prefetched: results in order, the next item computed while the caller handles this one."""

from __future__ import annotations

import threading

import pytest

from cytoreview.types import CancelToken
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.pipeline import prefetched
from cytoreview.workflows.segmentation import segment_project
from tests.conftest import PATIENCE_MS, run_job
from tests.inference.int8_models import add_grey_model, grey_net_onnx, write_grey_cells


def test_results_come_in_order_with_their_items() -> None:
    assert list(prefetched([3, 1, 2], lambda x: x * 10)) == [(3, 30), (1, 10), (2, 20)]
    assert list(prefetched([], lambda x: x)) == []


def test_the_next_item_is_computed_while_the_caller_holds_this_one() -> None:
    started = {1: threading.Event(), 2: threading.Event()}

    def work(item: int) -> int:
        if item in started:
            started[item].set()
        return item

    for item, _ in prefetched([0, 1, 2], work):
        if item + 1 in started:  # the caller has not asked for it yet: it runs anyway
            assert started[item + 1].wait(PATIENCE_MS / 1000)


def test_an_error_in_the_work_reaches_the_caller_at_its_item() -> None:
    def work(item: int) -> int:
        if item == 1:
            raise ValueError("bad item")
        return item

    seen = []
    with pytest.raises(ValueError, match="bad item"):
        for item, _ in prefetched([0, 1, 2], work):
            seen.append(item)
    assert seen == [0]


def test_stop_starts_no_further_work() -> None:
    done: list[int] = []
    stop = threading.Event()

    def work(item: int) -> int:
        done.append(item)
        return item

    got = []
    for item, _ in prefetched(list(range(10)), work, stop=stop.is_set):
        got.append(item)
        stop.set()
    # Item 1 had started before the stop: it finishes and is handed over, nothing after it.
    assert got == [0, 1] and done == [0, 1]


def test_segment_stops_at_a_cancel_and_saves_nothing_more(project, tmp_path) -> None:
    run_job(import_images(project, write_grey_cells(tmp_path / "cells", 6, seed=5), actor="t"))
    add_grey_model(project, grey_net_onnx())
    token = CancelToken()
    job = segment_project(project, actor="bot", precision="fp32", batch_size=2, cancel=token)
    events = []
    try:
        while True:
            events.append(next(job))
            if events[-1].step == 2:
                token.cancel()
    except StopIteration as stop:
        report = stop.value
    assert report.cancelled and len(report.segmented) == 2
    assert len(project.current_versions()) == 2


def test_two_items_ahead_still_come_in_order() -> None:
    both_running = threading.Barrier(2, timeout=PATIENCE_MS / 1000)

    def work(item: int) -> int:
        if item < 2:  # items 0 and 1 must be worked on at the same time to pass the barrier
            both_running.wait()
        return item * 10

    assert list(prefetched([0, 1, 2, 3], work, ahead=2)) == [(0, 0), (1, 10), (2, 20), (3, 30)]
    with pytest.raises(ValueError, match="ahead"):
        list(prefetched([0], work, ahead=0))
