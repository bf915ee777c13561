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


def dice_table(report: Any, classes: Iterable[str]) -> dict[str, dict[str, float]]:
    """Dice of ``classes`` in an evaluation report, as the mean over images and pooled."""
    return {
        kind: {c: round(getattr(report, kind)[c].dice, 4) for c in classes}
        for kind in ("mean", "pooled")
    }


def without_offsets(project: Any, model_id: str) -> bool:
    """Set a segmenter's decision offsets to 0; whether it had any.

    The same weights then make the plain arg-max's masks, to score them beside the offsets'.
    """
    from cytoreview.storage.model_store import ModelStore

    store = ModelStore(project)
    config, state = store.load(model_id)
    if not any(config.get("class_offsets") or ()):
        return False
    store.save_weights(model_id, state, {**config, "class_offsets": [0.0, 0.0, 0.0]})
    return True
