"""Driving a workflow generator from a benchmark script (shared by the benchmarks)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable
from typing import Any


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def drain(
    job: Generator[Any, None, Any],
    log: bool | Callable[[str], None] = False,
    stages: Iterable[str] = ("epoch",),
) -> Any:
    """Run ``job`` to its end and return its value.

    Parameters
    ----------
    job
        A workflow generator of ``Progress`` events.
    log
        False: silent; True: the messages of ``stages`` go to standard error (standard output
        is the benchmark's JSON); a callable receives them instead.
    stages
        Which events are logged.
    """
    writer = _to_stderr if log is True else (log or None)
    wanted = set(stages)
    try:
        while True:
            event = next(job)
            if writer is not None and event.stage in wanted and event.message:
                writer(event.message)
    except StopIteration as stop:
        return stop.value
