"""Top-level worker functions for the executor tests (workers import them by name)."""

from __future__ import annotations

import os
import time

from cytoreview.errors import ImageReadError
from cytoreview.workflows.executors import Shared, cached

#: Builds done in this process, by shared key (each worker process has its own).
BUILDS: dict[str, int] = {}


def square(item: int, *shared: Shared) -> int:
    """``item`` squared plus the total length of the shared inputs (a pure function)."""
    return item * item + sum(len(s.data) for s in shared)


def _build(data: bytes) -> str:
    BUILDS[data[:8].hex()] = BUILDS.get(data[:8].hex(), 0) + 1
    return data[:8].hex()


def builds(item: int, model: Shared) -> tuple[int, int, int]:
    """(process id, builds of ``model`` in this process so far, item) after using it."""
    key = cached(model, _build)
    return os.getpid(), BUILDS[key], item


def slow(item: tuple[int, float]) -> int:
    """The number of ``item`` (number, seconds) after sleeping (pending work to cancel)."""
    time.sleep(item[1])
    return item[0]


def fails(path: str) -> None:
    """Raise the error a worker gives for an unreadable image."""
    raise ImageReadError(path, "unreadable")


def environment(name: str) -> str | None:
    """An environment variable of the process this runs in."""
    return os.environ.get(name)
