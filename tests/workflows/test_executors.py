"""Executors: the same results here and on Dask workers, shared bytes once, Stop, bad addresses.

The LocalCluster tests share one cluster of 2 worker processes (module scope): starting one
costs seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from cytoreview.errors import ConfigError, ImageReadError, SchedulerError
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.types import CancelToken
from cytoreview.workflows import executors
from cytoreview.workflows.executors import (
    DaskExecutor,
    ExecutorSpec,
    LocalExecutor,
    Shared,
    cached,
    open_executor,
    using,
)
from tests.workflows.executor_fns import builds, environment, fails, slow, square


def test_the_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    env = {SCHEDULER_ENV: "tcp://cluster:8786"}
    assert ExecutorSpec("tcp://mine:8786").resolved(env).scheduler == "tcp://mine:8786"
    assert ExecutorSpec().resolved(env).scheduler == "tcp://cluster:8786"
    assert ExecutorSpec(workers=3).resolved({}) == ExecutorSpec(None, 3)
    with pytest.raises(ConfigError, match="--workers"):
        ExecutorSpec(workers=0).resolved({})


def test_small_jobs_run_here_and_large_ones_on_a_local_cluster(monkeypatch) -> None:
    monkeypatch.setattr(executors, "usable_cores", lambda: executors.COMPUTE.min_cluster_cores)
    many = executors.COMPUTE.min_cluster_items
    assert ExecutorSpec().driver(many - 1) == "process"
    assert ExecutorSpec().driver(many) == "local"
    assert ExecutorSpec("none").driver(10_000) == "process"
    assert ExecutorSpec("local").driver(1) == "local"
    assert ExecutorSpec("10.0.0.5:8786").driver(1) == "remote"
    assert ExecutorSpec(workers=2).driver(1) == "local"
    assert ExecutorSpec(workers=1).driver(10_000) == "process"
    # Fewer cores: ONNX Runtime uses them all in this process (see ComputeDefaults).
    monkeypatch.setattr(executors, "usable_cores", lambda: executors.COMPUTE.min_cluster_cores - 1)
    assert ExecutorSpec().driver(10_000) == "process"
    assert ExecutorSpec("local").driver(1) == "local"


def test_local_executor_gives_every_result_with_its_index() -> None:
    with LocalExecutor() as ex:
        handle = ex.share(b"abcd")
        assert isinstance(handle, Shared) and len(handle.key) == 64
        assert sorted(ex.map_unordered(square, [3, 1, 2], handle)) == [(0, 13), (1, 5), (2, 8)]
        assert list(ex.map_unordered(square, [])) == []


def test_local_executor_takes_items_only_as_it_starts_them() -> None:
    taken = []

    def items():
        for i in range(100):
            taken.append(i)
            yield (i, 0.0)

    for index, _ in LocalExecutor(ahead=1).map_unordered(slow, items()):
        assert len(taken) <= index + 2  # this item and the one computed meanwhile
        if index == 3:
            break
    assert len(taken) < 10


def test_local_executor_computes_ahead_items_at_once_and_gives_them_in_order() -> None:
    both = threading.Barrier(2, timeout=20)  # broken (an error) unless two items run together

    def together(item: int) -> int:
        both.wait()
        return item

    got = list(LocalExecutor(ahead=2).map_unordered(together, [0, 1, 2, 3]))
    assert got == [(0, 0), (1, 1), (2, 2), (3, 3)]
    with pytest.raises(ValueError, match="ahead"):
        LocalExecutor(ahead=0)
    with using(ExecutorSpec("none"), 10, ahead=2) as ex:
        assert isinstance(ex, LocalExecutor) and ex.ahead == 2
    with using(ExecutorSpec("none"), 10) as ex:
        assert isinstance(ex, LocalExecutor) and ex.ahead == 1


def test_built_objects_are_kept_once_and_the_oldest_let_go() -> None:
    built = []

    def build(data: bytes) -> bytes:
        built.append(data)
        return data.upper()

    here = LocalExecutor()
    first = here.share(b"first")
    assert cached(first, build) == b"FIRST" and cached(first, build) == b"FIRST"
    assert built == [b"first"]
    for i in range(executors.CACHE_SIZE):
        cached(here.share(b"model %d" % i), build)
    cached(first, build)  # pushed out by newer ones: built again
    assert built.count(b"first") == 2


def test_local_executor_stops_at_a_cancel() -> None:
    token = CancelToken()
    got = []
    for index, _ in LocalExecutor().map_unordered(
        slow, [(i, 0.0) for i in range(10)], cancel=token
    ):
        got.append(index)
        token.cancel()
    assert got == [0]


def test_an_open_executor_is_used_and_left_open() -> None:
    mine = LocalExecutor()
    with using(mine, 10_000) as ex:
        assert ex is mine
    with using(ExecutorSpec("none"), 10_000) as ex:
        assert isinstance(ex, LocalExecutor)


def test_a_scheduler_that_does_not_answer_is_one_line_naming_it() -> None:
    start = time.perf_counter()
    with pytest.raises(SchedulerError) as caught:
        DaskExecutor.connect("tcp://127.0.0.1:9", timeout_s=2)
    message = str(caught.value)
    assert "tcp://127.0.0.1:9" in message and "\n" not in message
    assert time.perf_counter() - start < 30  # a short timeout, not the default's minutes


def test_the_environment_variable_reaches_open_executor(monkeypatch) -> None:
    monkeypatch.setenv(SCHEDULER_ENV, "127.0.0.1:9")
    monkeypatch.setattr(executors, "COMPUTE", replace(executors.COMPUTE, connect_timeout_s=2.0))
    with pytest.raises(SchedulerError, match=r"tcp://127\.0\.0\.1:9 does not answer within 2 s"):
        open_executor(ExecutorSpec(), 1)


@pytest.fixture(scope="module")
def cluster():
    with DaskExecutor.local_cluster(2) as ex:
        yield ex


@pytest.mark.slow
def test_a_local_cluster_gives_what_this_process_gives(cluster) -> None:
    assert cluster.description == "LocalCluster: 2 worker processes" and cluster.workers == 2
    assert cluster.threads_per_task == 1
    items = list(range(20))
    here = LocalExecutor()
    expected = sorted(here.map_unordered(square, items, here.share(b"xyz")))
    assert sorted(cluster.map_unordered(square, items, cluster.share(b"xyz"))) == expected


@pytest.mark.slow
def test_shared_bytes_travel_once_and_are_built_once_per_worker(cluster) -> None:
    data = b"model-bytes-" + bytes(range(256)) * 64
    handle = cluster.share(data)
    assert cluster.share(data) == handle and len(cluster._shared) >= 1
    future = cluster._shared[handle.key]
    holders = [w for w, keys in cluster.client.has_what().items() if future.key in keys]
    assert len(holders) == 2  # broadcast: every worker holds its copy before any task runs
    results = [r for _, r in cluster.map_unordered(builds, range(16), handle)]
    per_worker: dict[int, int] = {}
    for pid, count, _ in results:
        per_worker[pid] = max(per_worker.get(pid, 0), count)
    assert per_worker and all(count == 1 for count in per_worker.values()), per_worker


@pytest.mark.slow
def test_a_cancel_stops_pending_work_on_the_cluster(cluster) -> None:
    token = CancelToken()
    start = time.perf_counter()
    got = []
    for index, _ in cluster.map_unordered(slow, [(i, 0.5) for i in range(40)], cancel=token):
        got.append(index)
        token.cancel()
    assert len(got) == 1
    assert time.perf_counter() - start < 10  # 40 x 0.5 s on 2 workers would take 10 s
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _tasks_named(cluster, "slow"):
        time.sleep(0.1)
    assert _tasks_named(cluster, "slow") == 0  # the pending items were cancelled


@pytest.mark.slow
def test_an_error_on_a_worker_reaches_the_caller_as_itself(cluster) -> None:
    with pytest.raises(ImageReadError, match=r"broken\.png: unreadable") as caught:
        list(cluster.map_unordered(fails, ["broken.png"]))
    assert caught.value.reason == "unreadable"


def _tasks_named(cluster: DaskExecutor, prefix: str) -> int:
    def count(dask_scheduler) -> int:
        return sum(str(key).startswith(prefix) for key in dask_scheduler.tasks)

    return cluster.client.run_on_scheduler(count)


@pytest.mark.slow
def test_gpu_workers_each_see_one_gpu() -> None:
    # No GPU needed: what is checked is the environment each worker process starts with.
    with DaskExecutor.local_cluster(2, gpus=2) as ex:
        assert ex.description == "LocalCluster: 2 worker processes, one GPU each"
        seen = ex.client.run(environment, "CUDA_VISIBLE_DEVICES")
    assert sorted(seen.values()) == ["0", "1"]


@pytest.mark.slow
def test_a_running_scheduler_is_used_by_its_address(cluster) -> None:
    address = cluster.cluster.scheduler_address
    with DaskExecutor.connect(address) as remote:
        assert remote.description == f"scheduler {address} (2 workers)"
        assert remote.cluster is None  # closing leaves the cluster running
        assert sorted(remote.map_unordered(square, [2, 3])) == [(0, 4), (1, 9)]
    assert cluster.workers == 2 and sorted(cluster.map_unordered(square, [1])) == [(0, 1)]


@pytest.mark.slow
def test_a_scheduler_without_workers_is_one_line() -> None:
    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        pytest.raises(SchedulerError, match="has no workers") as caught,
    ):
        DaskExecutor.connect(empty.scheduler_address, timeout_s=1)
    assert empty.scheduler_address in str(caught.value) and "\n" not in str(caught.value)
