"""Writing a training run's best weights: often enough to survive a crash, not every epoch.

A U-Net checkpoint is ~55 MB written atomically with fsync. Small seed sets improve on most
early epochs, which last a second or two: writing each improvement made the disk, not the
network, set the pace. The writer keeps the newest best weights in memory and writes them when
the last write is at least ``min_interval_s`` old, and always at the end (:meth:`flush`, also
after a failure), so a crash loses at most that interval of improvements.

Reading a model's stored ONNX export back (:func:`stored_onnx`) lives here too: a damaged
export is made again from the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cytoreview.inference.onnx_export import onnx_model_problem
from cytoreview.storage.model_store import ModelStore

log = logging.getLogger(__name__)

Stats = TypeVar("Stats")

#: Seconds between two checkpoint writes of one run (at most this much progress is lost).
MIN_WRITE_INTERVAL_S = 30.0


class BestWeightsWriter(Generic[Stats]):
    """Throttles ``write(state, stats)`` calls offered at every improvement.

    Parameters
    ----------
    write
        Writes one checkpoint (storage's business).
    min_interval_s
        Least time between two writes; the first improvement is written at once.
    clock
        Injected for tests.
    """

    def __init__(
        self,
        write: Callable[[dict[str, Any], Stats], None],
        min_interval_s: float = MIN_WRITE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last: float | None = None
        self._pending: tuple[dict[str, Any], Stats] | None = None
        #: Checkpoints written so far.
        self.writes = 0

    @property
    def any(self) -> bool:
        """True once there is a checkpoint on disk (after :meth:`flush`, for every offer)."""
        return self.writes > 0

    def offer(self, state: dict[str, Any], stats: Stats) -> None:
        """A new best: write it now if the last write is old enough, else keep it for later."""
        self._pending = (state, stats)
        now = self._clock()
        if self._last is None or now - self._last >= self.min_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the kept best weights, if any are not on disk yet."""
        if self._pending is None:
            return
        state, stats = self._pending
        self._pending = None
        self._write(state, stats)
        self._last = self._clock()
        self.writes += 1


def stored_onnx(store: ModelStore, model_id: str) -> bytes | None:
    """The stored ONNX export of ``model_id``, or None when there is none or it is damaged.

    The export is derived from the checkpoint, so a damaged one (a disk error, a hand edit) is
    not an error: it is named in a warning and the caller exports the weights again, which
    replaces it.
    """
    data = store.load_onnx(model_id)
    if data is None:
        return None
    problem = onnx_model_problem(data)
    if problem is not None:
        log.warning("%s: %s; exporting the model again", store.onnx_path(model_id), problem)
        return None
    return data
