"""CPU threads chosen by measurement, and mixed-precision detection."""

from __future__ import annotations

import torch

from cytoreview.training.runtime import (
    ThreadTuner,
    autocast_for,
    cpu_has_fast_bf16,
    precision_name,
)


class FakeMachine:
    """A clock whose steps take ``cost[threads]`` seconds (the load can change mid-run)."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost = cost
        self.now = 0.0
        self.threads = 0
        self.calls: list[int] = []

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def clock(self) -> float:
        return self.now

    def step(self, tuner: ThreadTuner) -> None:
        tuner.start_step()
        self.now += self.cost[self.threads]
        tuner.end_step()


def test_the_tuner_keeps_the_fastest_thread_count() -> None:
    # A busy machine: two threads wait for each other (6x slower than one thread).
    machine = FakeMachine({2: 3.0, 1: 0.5})
    tuner = ThreadTuner(2, probe_steps=3, recheck_s=1e9, set_threads=machine.set_threads,
                        clock=machine.clock)  # fmt: skip
    assert tuner.probing and machine.threads == 2
    for _ in range(8):  # 4 steps per candidate, the first of each not counted
        machine.step(tuner)
    assert not tuner.probing and tuner.threads == 1 and machine.threads == 1
    assert tuner.decisions == [(1, {2: 3.0, 1: 0.5})]
    for _ in range(20):
        machine.step(tuner)
    assert tuner.threads == 1 and len(tuner.decisions) == 1  # steady: no new probe


def test_the_tuner_probes_again_when_steps_get_slower() -> None:
    machine = FakeMachine({2: 0.4, 1: 0.7})  # a quiet machine: two threads win
    tuner = ThreadTuner(2, probe_steps=2, recheck_s=1e9, set_threads=machine.set_threads,
                        clock=machine.clock)  # fmt: skip
    for _ in range(6):
        machine.step(tuner)
    assert tuner.threads == 2
    machine.cost = {2: 2.5, 1: 0.9}  # another process starts
    for _ in range(4):  # the recent median passes 1.5x the reference: probe again
        machine.step(tuner)
    assert tuner.probing
    for _ in range(6):
        machine.step(tuner)
    assert tuner.threads == 1 and [d[0] for d in tuner.decisions] == [2, 1]


def test_the_tuner_rechecks_after_a_while_and_one_core_needs_no_choice() -> None:
    machine = FakeMachine({2: 0.4, 1: 0.7})
    tuner = ThreadTuner(2, probe_steps=1, recheck_s=10.0, set_threads=machine.set_threads,
                        clock=machine.clock)  # fmt: skip
    for _ in range(4):
        machine.step(tuner)
    assert not tuner.probing
    for _ in range(30):  # 12 s of steady steps
        machine.step(tuner)
    assert len(tuner.decisions) >= 2
    single = FakeMachine({1: 1.0})
    one = ThreadTuner(1, probe_steps=1, set_threads=single.set_threads, clock=single.clock)
    for _ in range(10):
        single.step(one)
    assert one.threads == 1 and set(single.calls) == {1}


def test_cpu_precision_follows_the_hardware() -> None:
    fast = cpu_has_fast_bf16()
    cpu = torch.device("cpu")
    assert precision_name(cpu, True, cpu_bf16=True) == ("bf16" if fast else "fp32")
    assert precision_name(cpu, True) == precision_name(cpu, False) == "fp32"  # opt-in
    with autocast_for(cpu, True, cpu_bf16=True):
        out = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert out.dtype == (torch.bfloat16 if fast else torch.float32)
    for args in ((True,), (False, True)):
        with autocast_for(cpu, *args):
            assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.float32


def test_a_recheck_drops_a_clearly_slower_count_after_one_step_and_waits_longer() -> None:
    machine = FakeMachine({2: 3.0, 1: 0.5})  # a busy machine, as in the first test
    tuner = ThreadTuner(2, probe_steps=3, recheck_s=10.0, set_threads=machine.set_threads,
                        clock=machine.clock)  # fmt: skip
    for _ in range(8):
        machine.step(tuner)
    assert tuner.threads == 1 and tuner.decisions == [(1, {2: 3.0, 1: 0.5})]
    chosen_at = machine.now
    while len(tuner.decisions) == 1:  # steady steps until the recheck has been made
        machine.step(tuner)
    # The recheck timed 1 thread first (4 steps), then 2 threads for 2 steps only.
    assert tuner.decisions[1] == (1, {1: 0.5, 2: 3.0})
    assert machine.calls[-3:] == [1, 2, 1]
    recheck_at = machine.now - 4 * 0.5 - 2 * 3.0
    assert 10.0 < recheck_at - chosen_at <= 10.5
    # The count did not change: the next recheck comes after twice the wait.
    second = machine.now
    while len(tuner.decisions) == 2:
        machine.step(tuner)
    assert 20.0 < machine.now - 8.0 - second <= 20.5
