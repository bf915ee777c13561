"""The executor interface and its in-process driver; shared inputs and the per-process cache.

See :mod:`cytoreview.workflows.executors`, which chooses a driver and holds the Dask one. Kept
free of Dask: worker functions import :class:`Shared` and :func:`cached` from here (through
``executors``) without loading ``distributed``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cytoreview.types import CancelToken

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "CACHE_SIZE",
    "ClosingContext",
    "Executor",
    "LocalExecutor",
    "Shared",
    "cached",
    "sha256_of",
]

T = TypeVar("T")
R = TypeVar("R")
B = TypeVar("B")


@dataclass(frozen=True)
class Shared:
    """A read-only input every item of a job uses, by its content hash.

    Attributes
    ----------
    key
        The sha256 of ``data``: what :func:`cached` keeps a built object under.
    data
        The bytes themselves (on a worker: its copy of the broadcast).
    """

    key: str
    data: bytes


#: Objects built from shared bytes, per process: (key, builder's name) -> object, newest last.
_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Objects kept at most: a long-lived process (the workbench, a worker serving many jobs) sees
#: a new model after every training; the oldest sessions are let go.
CACHE_SIZE = 4


def cached(shared: Shared, build: Callable[[bytes], B], *, tag: str = "") -> B:
    """The object ``build(shared.data)``, built once per process and kept by content hash.

    A worker function calls this to turn a model's bytes into a session: the first item on a
    worker builds it, the others reuse it. ``tag`` separates different objects built from the
    same bytes (e.g. a session with other threads).
    """
    name = f"{getattr(build, '__module__', '')}.{getattr(build, '__qualname__', build)}:{tag}"
    with _CACHE_LOCK:  # threads of one worker must not build the same session twice
        key = (shared.key, name)
        if key not in _CACHE:
            _CACHE[key] = build(shared.data)
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        return _CACHE[key]


class Executor(Protocol):
    """Runs a pure function over items, here or on workers; what a batch driver talks to.

    Attributes
    ----------
    description
        Where the work runs, in words: ``"this process"``, ``"LocalCluster: 2 worker
        processes"``, ``"scheduler tcp://10.0.0.5:8786 (8 workers)"``.
    threads_per_task
        Intra-op threads one item's computation may use (ONNX Runtime, torch): 1 on Dask
        workers (their cores are shared out by running one task per thread), None in this
        process (all cores).
    workers
        Worker processes (1 in this process).
    """

    description: str
    threads_per_task: int | None
    workers: int

    def share(self, data: bytes) -> Shared:
        """Send ``data`` once to every worker; pass the handle to :meth:`map_unordered`."""
        ...

    def map_unordered(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *shared: Shared,
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, R]]:
        """``(index, fn(item, *shared))`` for each item, as they complete.

        Parameters
        ----------
        fn
            A top-level (importable) pure function: it gets the item and the :class:`Shared`
            handles, reads what it needs (files by path, through ``storage``) and returns a
            picklable result. It never opens the catalog; the caller writes the results.
            Small settings are bound with :func:`functools.partial` (they travel with each
            item); expected failures are best returned as messages (an exception ends the
            iteration, and it must be picklable to cross from a worker).
        items
            Picklable, small (paths, coordinates): they travel to the workers.
        shared
            Handles from :meth:`share`.
        cancel
            Checked before each new item is submitted and between results: once set, pending
            items are cancelled and the iteration ends (items already running finish unseen).

        Yields
        ------
        tuple
            The item's index in ``items`` and the result. Only a bounded number of items is
            in flight at once, so memory stays bounded however many items there are. An
            exception raised by ``fn`` is raised here.
        """
        ...

    def close(self) -> None:
        """Release the workers (a LocalCluster is shut down; a remote cluster is left running)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ClosingContext:
    """``with executor:`` closes it at the end."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.close()  # type: ignore[attr-defined]


def sha256_of(data: bytes) -> str:
    """The key of shared bytes: their sha256, in hex."""
    return hashlib.sha256(data).hexdigest()


class LocalExecutor(ClosingContext):
    """Runs items in this process, in order, computing the next ones in background threads.

    ``ahead`` items are computed in background threads while the caller consumes a result
    (e.g. writes a mask): ONNX Runtime, OpenCV and file reads release the GIL, so computing
    and writing overlap (measured for ``segment``: see :mod:`cytoreview.workflows.pipeline`).
    With ``ahead`` > 1 several items are computed at once, each in its own thread, so ``fn``
    must be safe to run concurrently (``segment`` uses 2, see
    :attr:`cytoreview.defaults.ComputeDefaults.segment_chunks_ahead`).
    """

    description = "this process"
    threads_per_task: int | None = None
    workers = 1

    def __init__(self, ahead: int = 1) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.ahead = ahead

    def share(self, data: bytes) -> Shared:
        """A handle on ``data`` itself (nothing to send)."""
        return Shared(sha256_of(data), bytes(data))

    def map_unordered(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *shared: Shared,
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, R]]:
        """See :meth:`Executor.map_unordered`; here results come in the items' order.

        Items are taken from ``items`` only as they are started (a generator of items that
        carry arrays is never held whole).
        """
        todo = iter(enumerate(items))

        def stop() -> bool:
            return cancel is not None and cancel.cancelled

        with ThreadPoolExecutor(self.ahead, thread_name_prefix="cytoreview-local") as pool:
            pending: deque[tuple[int, Future[R]]] = deque()

            def top_up() -> None:
                while len(pending) < self.ahead and not stop():
                    step = next(todo, None)
                    if step is None:
                        return
                    pending.append((step[0], pool.submit(fn, step[1], *shared)))

            top_up()
            while pending:
                index, future = pending.popleft()
                result = future.result()  # an error in ``fn`` is raised here, at its item
                if stop():
                    return
                top_up()
                yield index, result

    def close(self) -> None:
        """Nothing to release."""
