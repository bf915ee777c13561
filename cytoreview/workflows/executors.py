"""Batch drivers: one pure per-item function, run in this process or on Dask distributed workers.

The one module that knows Dask. A batch job (segment a project, classify it, the tiles of a
slide) is written as a top-level, importable, pure function ``fn(item, *shared)`` plus a driver
that feeds it items and consumes its results in one process, the only one that writes the
catalog. Three drivers share the :class:`Executor` interface:

- :class:`LocalExecutor`: this process (small jobs, tests, and where no cluster pays off);
- :class:`DaskExecutor` over a LocalCluster of worker *processes* (one thread each: the GIL
  serialises Python's share of the work, pre- and post-processing, between threads);
- :class:`DaskExecutor` connected to a running scheduler (``tcp://host:8786``), e.g. one that
  dask-jobqueue started on SLURM/PBS/LSF, or ``dask scheduler`` / ``dask worker`` on Kubernetes.

Where a job runs is decided once, by :func:`open_executor` from an :class:`ExecutorSpec`: an
explicit flag, else ``$CYTOREVIEW_SCHEDULER``, else :data:`cytoreview.defaults.COMPUTE`.

Large read-only inputs (a model's ONNX bytes) travel once: :meth:`Executor.share` broadcasts
them to every worker and returns a :class:`Shared` handle; the function receives the handle and
builds what it needs from the bytes with :func:`cached`, once per worker process.

``distributed`` is imported only when a cluster is really used: the command line starts fast.

A driver, e.g. for the tiles of a slide::

    def segment_tile(tile, model, *, job):        # top level, importable, pure
        session = cached(model, lambda data: OnnxPredictor(data, threads=job.threads))
        return labels_of(read_region(job.slide, *tile), session)

    with using(compute, len(tiles)) as executor:   # an ExecutorSpec, or an open executor
        model = executor.share(onnx_bytes)
        work = partial(segment_tile, job=replace(job, threads=executor.threads_per_task))
        for index, labels in executor.map_unordered(work, tiles, model, cancel=cancel):
            write_tile(tiles[index], labels)       # this process alone writes
            yield Progress(...)
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cytoreview.defaults import COMPUTE
from cytoreview.errors import ConfigError, SchedulerError
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.types import CancelToken
from cytoreview.workflows.executor_base import (
    CACHE_SIZE,
    ClosingContext,
    Executor,
    LocalExecutor,
    Shared,
    cached,
    sha256_of,
)

__all__ = [
    "CACHE_SIZE",
    "IN_PROCESS",
    "LOCAL_CLUSTER",
    "DaskExecutor",
    "Executor",
    "ExecutorSpec",
    "LocalExecutor",
    "Shared",
    "cached",
    "open_executor",
    "usable_cores",
    "using",
]

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

#: ``--scheduler`` values that name no address: a LocalCluster, or this process.
LOCAL_CLUSTER = "local"
IN_PROCESS = "none"


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: A LocalCluster's scheduler: no dashboard, and its HTTP routes (health, metrics) on a free
#: port, not on 8787, where a user's own cluster or another job's may already listen.
_SCHEDULER_HTTP = {"dashboard_address": ":0", "dashboard": False}


def _one_gpu(index: int) -> dict[str, str]:
    """The environment of a worker process that sees GPU ``index`` alone."""
    return {"CUDA_VISIBLE_DEVICES": str(index)}


class DaskExecutor(ClosingContext):
    """Runs items on Dask distributed workers (a LocalCluster it started, or a running one).

    Build with :meth:`local_cluster` or :meth:`connect` (or :func:`open_executor`).
    """

    def __init__(
        self, client: Any, cluster: Any | None, description: str, threads_per_task: int = 1
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.description = description
        self.threads_per_task: int | None = threads_per_task
        self._shared: dict[str, Any] = {}

    @property
    def workers(self) -> int:
        """Worker processes connected now."""
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def _worker_threads(self) -> int:
        infos = self.client.scheduler_info().get("workers", {}).values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in infos))

    @classmethod
    def local_cluster(cls, workers: int, gpus: int = 0) -> DaskExecutor:
        """Start a LocalCluster of ``workers`` processes with one thread each.

        With ``gpus`` > 0 each worker sees one GPU (``CUDA_VISIBLE_DEVICES``, round robin), so
        that a "cuda" device inside a worker is its own GPU.
        """
        from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

        quiet = {"silence_logs": logging.ERROR}
        if gpus > 0:
            specs = {
                i: {"cls": Nanny, "options": {"nthreads": 1, "env": _one_gpu(i % gpus)}}
                for i in range(workers)
            }
            scheduler = {"cls": Scheduler, "options": _SCHEDULER_HTTP}
            cluster = SpecCluster(workers=specs, scheduler=scheduler, **quiet)
            what = f"{workers} worker processes, one GPU each"
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs=_SCHEDULER_HTTP,
                **quiet,
            )
            what = f"{workers} worker process{'es' if workers != 1 else ''}"
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
        return cls(client, cluster, f"LocalCluster: {what}")

    @classmethod
    def connect(cls, address: str, timeout_s: float | None = None) -> DaskExecutor:
        """Connect to a running scheduler (waiting ``timeout_s``, default the COMPUTE one).

        Raises
        ------
        SchedulerError
            When nothing answers at ``address`` within ``timeout_s`` (one line naming it).
        """
        from distributed import Client

        timeout_s = COMPUTE.connect_timeout_s if timeout_s is None else timeout_s
        try:
            client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SchedulerError(
                f"Dask scheduler {address} does not answer within {timeout_s:g} s ({reason}); "
                f"check the address, or unset --scheduler / ${SCHEDULER_ENV} to run here"
            ) from None
        try:  # a cluster without workers would queue the job for ever
            client.wait_for_workers(1, timeout=timeout_s)
        except (OSError, TimeoutError):
            client.close()
            raise SchedulerError(
                f"Dask scheduler {address} has no workers (none joined within {timeout_s:g} s); "
                "start some (dask worker, cluster.scale) or unset --scheduler to run here"
            ) from None
        n = len(client.scheduler_info().get("workers", {}))
        return cls(client, None, f"scheduler {address} ({n} worker{'s' if n != 1 else ''})")

    def share(self, data: bytes) -> Shared:
        """Broadcast ``data`` to every worker once (same bytes twice: one broadcast)."""
        key = sha256_of(data)
        if key not in self._shared:
            future = self.client.scatter(bytes(data), broadcast=True, hash=False)
            self._shared[key] = future
        return Shared(key, b"")  # the bytes reach the function from the workers' copy

    def map_unordered(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *shared: Shared,
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, R]]:
        """See :meth:`Executor.map_unordered`."""
        from distributed import as_completed

        try:
            futures = [self._shared[s.key] for s in shared]
        except KeyError:
            raise ConfigError("a shared input was not shared through this executor") from None
        keys = tuple(s.key for s in shared)
        todo = iter(enumerate(items))
        name = getattr(getattr(fn, "func", fn), "__name__", "task")  # a partial: its function
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        index_of: dict[str, int] = {}
        running = as_completed()

        def stop() -> bool:
            return cancel is not None and cancel.cancelled

        def top_up() -> None:
            # The bound follows the workers connected now: a cluster that scales up (e.g.
            # dask-jobqueue jobs that start late) gets more items in flight as it grows.
            limit = max(1, COMPUTE.in_flight_per_worker * self._worker_threads())
            while running.count() < limit and not stop():
                step = next(todo, None)
                if step is None:
                    return
                index, item = step
                future = self.client.submit(
                    _call, fn, item, keys, *futures, key=f"{tag}-{index}", pure=False
                )
                index_of[future.key] = index
                running.add(future)

        try:
            top_up()
            for future in running:
                if stop():
                    return
                result = future.result()  # raises the worker's exception here
                index = index_of.pop(future.key)
                future.release()
                top_up()
                yield index, result
                if stop():
                    return
        finally:
            left = list(running.futures)
            running.clear()
            if left:
                self.client.cancel(left)

    def close(self) -> None:
        """Close the client; shut the LocalCluster down (a remote cluster keeps running)."""
        for future in self._shared.values():
            future.release()
        self._shared.clear()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a batch job should run, as the user asked (``None``: not said).

    Attributes
    ----------
    scheduler
        A scheduler address (``tcp://host:8786``; a bare ``host:port`` gets ``tcp://``),
        ``"local"`` (a LocalCluster of worker processes) or ``"none"`` (this process).
    workers
        Worker processes of a LocalCluster (default: the usable cores).
    """

    scheduler: str | None = None
    workers: int | None = None

    def resolved(self, environ: Mapping[str, str] | None = None) -> ExecutorSpec:
        """The spec with the rule applied: flag, else environment variable, else default.

        The scheduler is ``self.scheduler`` when given, else ``$CYTOREVIEW_SCHEDULER``, else
        :data:`cytoreview.defaults.COMPUTE`'s.
        """
        env = os.environ if environ is None else environ
        scheduler = self.scheduler or env.get(SCHEDULER_ENV, "").strip() or COMPUTE.scheduler
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        return ExecutorSpec(scheduler or None, self.workers)

    def driver(self, n_items: int) -> str:
        """``"process"``, ``"local"`` or ``"remote"`` for a job of ``n_items`` (resolved spec).

        The rule when nothing is named: a LocalCluster for jobs of at least
        ``COMPUTE.min_cluster_items`` items on a machine with at least
        ``COMPUTE.min_cluster_cores`` usable cores (or when ``workers`` > 1 is given), else this
        process (see :class:`~cytoreview.defaults.ComputeDefaults` for the measurement).
        """
        scheduler = (self.scheduler or "").strip().lower()
        if scheduler == IN_PROCESS:
            return "process"
        if scheduler == LOCAL_CLUSTER:
            return "local"
        if scheduler:
            return "remote"
        if self.workers is not None:
            return "local" if self.workers > 1 else "process"
        big = n_items >= COMPUTE.min_cluster_items and usable_cores() >= COMPUTE.min_cluster_cores
        return "local" if big else "process"


def _call(fn: Callable[..., R], item: Any, keys: tuple[str, ...], *datas: bytes) -> R:
    """Run ``fn`` on a worker with its shared inputs rebuilt as :class:`Shared` handles."""
    return fn(item, *(Shared(k, d) for k, d in zip(keys, datas, strict=True)))


def _address(scheduler: str) -> str:
    return scheduler if "://" in scheduler else f"tcp://{scheduler}"


def open_executor(spec: ExecutorSpec, n_items: int, *, gpus: int = 0, ahead: int = 1) -> Executor:
    """The executor for a job of ``n_items`` (see :meth:`ExecutorSpec.driver`).

    Parameters
    ----------
    spec
        What the user asked; resolved here (flag > environment variable > default).
    n_items
        The job's size: small jobs run in this process unless a cluster is named.
    gpus
        GPUs the job would use on this machine: a LocalCluster then gets one worker per GPU
        (unless ``workers`` says otherwise), each seeing one.
    ahead
        Items computed at once when the job runs in this process (see
        :class:`~cytoreview.workflows.executor_base.LocalExecutor`); workers ignore it.

    Raises
    ------
    SchedulerError
        When a named scheduler does not answer.
    """
    spec = spec.resolved()
    driver = spec.driver(n_items)
    if driver == "process":
        return LocalExecutor(ahead)
    if driver == "remote":
        return DaskExecutor.connect(_address(str(spec.scheduler)))
    workers = spec.workers or (gpus if gpus > 0 else usable_cores())
    return DaskExecutor.local_cluster(workers, gpus=gpus)


@contextlib.contextmanager
def using(
    compute: ExecutorSpec | Executor | None, n_items: int, *, gpus: int = 0, ahead: int = 1
) -> Iterator[Executor]:
    """The executor a job runs on: the caller's own (left open), or one opened for the job.

    Parameters
    ----------
    compute
        An open :class:`Executor` (e.g. one cluster kept for a session's jobs), or an
        :class:`ExecutorSpec` / None, which :func:`open_executor` turns into one that is
        closed when the job ends.
    n_items, gpus, ahead
        As for :func:`open_executor`.
    """
    if compute is not None and not isinstance(compute, ExecutorSpec):
        yield compute
        return
    with open_executor(compute or ExecutorSpec(), n_items, gpus=gpus, ahead=ahead) as executor:
        yield executor
