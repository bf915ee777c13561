"""What every trainer needs from torch: a seeded start, autocast, and CPU threads.

The thread count matters on a shared machine: see :class:`ThreadTuner`.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (and make cuDNN deterministic) so a run can be repeated."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX).

    oneDNN then runs bf16 convolutions faster than fp32 (measured 2.7x for a U-Net training
    step at 256 px on a Xeon with AMX); on other CPUs bf16 is emulated and slower.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:  # not Linux: no cheap way to tell, stay in fp32
        return False
    words = set(flags.split())
    return bool(words & {"avx512_bf16", "amx_bf16"})


def autocast_for(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> Any:
    """Mixed precision where asked and the hardware has it, else plain fp32.

    On CUDA (``enabled``) bf16, else fp16; on the CPU only with ``cpu_bf16`` and a CPU that
    computes bf16 natively (:func:`cpu_has_fast_bf16`): 2.7x faster steps at 256 px, but on
    Herlev's 64 px no faster and behind fp32 at the same epoch, so it is opt-in.
    """
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and enabled and cpu_bf16 and cpu_has_fast_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def precision_name(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> str:
    """What :func:`autocast_for` computes in, for the run's description (``bf16``, ...)."""
    if not enabled:
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16 and cpu_has_fast_bf16() else "fp32"


def decay_lr(optimiser: torch.optim.Optimizer, factor: float, floor: float) -> None:
    """Multiply every parameter group's learning rate by ``factor``, not below ``floor``."""
    for group in optimiser.param_groups:
        group["lr"] = max(floor, group["lr"] * factor)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ThreadTuner:
    """Chooses torch's intra-op thread count on the CPU by timing real training steps.

    torch starts one OpenMP thread per core, and every operator waits for its slowest thread.
    When another process (the GUI, a browser, a second job) takes a core, that thread is
    descheduled and the whole step waits for it: a U-Net step measured 0.5 s alone and 3.4-6.6 s
    beside one busy process on 2 cores. With fewer threads than free cores the step only slows
    by the share of CPU it loses. No thread count is right for every moment, so this class
    measures: it tries each candidate for a few steps, keeps the fastest, and tries again when
    steps get slower than the chosen count had promised, or after a while (load comes and goes).

    Parameters
    ----------
    max_threads
        The most threads to try (default: the usable cores).
    probe_steps
        Timed steps per candidate (one more is run first and not counted: the thread pool
        resizes on the first step after a change).
    recheck_s
        Probe again at the latest after this many seconds of training; each probe that keeps
        the same count doubles the wait (up to 8x), a changed count resets it. A recheck times
        the chosen count first and drops a candidate after one step that is more than
        ``slower`` times slower: beside a busy process two threads cost 1.4-2.1 s a step where
        one costs 0.45 s (Herlev U-Net, 2 cores), and eleven full probes had cost a tenth of the
        run.
    slower
        Probe again when the recent median step time exceeds the chosen count's by this factor.
    set_threads, clock
        Injected for tests (default: ``torch.set_num_threads``, ``time.perf_counter``).
    """

    def __init__(
        self,
        max_threads: int | None = None,
        *,
        probe_steps: int = 3,
        recheck_s: float = 60.0,
        slower: float = 1.5,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.max_threads = max(1, max_threads or usable_cores())
        self.probe_steps = probe_steps
        self.recheck_s = recheck_s
        self.slower = slower
        self._set = set_threads
        self._clock = clock
        self.threads = self.max_threads
        #: The chosen count's median step time (None while probing).
        self.reference_s: float | None = None
        #: Every decision, (threads, median step seconds of each candidate), oldest first.
        self.decisions: list[tuple[int, dict[int, float]]] = []
        self._candidates = list(range(self.max_threads, 0, -1))
        self._probe: dict[int, list[float]] = {}
        self._dropped: set[int] = set()
        self._chosen_at = 0.0
        self._wait_s = recheck_s
        self._recent: list[float] = []
        self._started: float | None = None
        self._start_probe()

    @property
    def probing(self) -> bool:
        """True while candidates are being timed."""
        return self.reference_s is None

    def _start_probe(self) -> None:
        # A recheck times the chosen count first, so the others can be dropped after one step.
        first = self.decisions[-1][0] if self.decisions else self._candidates[0]
        self._order = [first, *(n for n in self._candidates if n != first)]
        self.reference_s = None
        self._probe = {n: [] for n in self._order}
        self._dropped = set()
        self._use(first)

    def _use(self, threads: int) -> None:
        self.threads = threads
        self._set(threads)

    def start_step(self) -> None:
        """Call before a training step."""
        self._started = self._clock()

    def end_step(self) -> None:
        """Call after a training step (after the optimiser's step)."""
        if self._started is None:
            return
        seconds = self._clock() - self._started
        self._started = None
        if self.probing:
            self._record_probe(seconds)
            return
        self._recent = [*self._recent[-(self.probe_steps * 2 - 1) :], seconds]
        assert self.reference_s is not None
        too_slow = (
            len(self._recent) >= self.probe_steps * 2
            and statistics.median(self._recent) > self.slower * self.reference_s
        )
        if self.max_threads > 1 and (too_slow or self._clock() - self._chosen_at > self._wait_s):
            self._start_probe()

    def _record_probe(self, seconds: float) -> None:
        times = self._probe[self.threads]
        times.append(seconds)
        finished = {
            n: statistics.median(t[1:])
            for n, t in self._probe.items()
            if len(t) > self.probe_steps and n not in self._dropped
        }
        if len(times) == 2 and finished and seconds > self.slower * min(finished.values()):
            self._dropped.add(self.threads)  # clearly slower after one counted step
        elif len(times) <= self.probe_steps:  # the first step after a change is not counted
            return
        remaining = [
            n
            for n in self._order
            if len(self._probe[n]) <= self.probe_steps and n not in self._dropped
        ]
        if remaining:
            self._use(remaining[0])
            return
        medians = {n: statistics.median(t[1:]) for n, t in self._probe.items()}
        best = min(medians, key=lambda n: (medians[n], n))
        same = bool(self.decisions) and self.decisions[-1][0] == best
        self._wait_s = min(self._wait_s * 2, 8 * self.recheck_s) if same else self.recheck_s
        self.decisions.append((best, medians))
        self.reference_s = medians[best]
        self._recent = []
        self._chosen_at = self._clock()
        self._use(best)


def cpu_threads(device: torch.device, threads: int | None) -> ThreadTuner | None:
    """Set torch's CPU threads for a training run: a tuner that measures them, or a fixed count.

    ``threads`` None on the CPU returns a :class:`ThreadTuner` (the trainer calls its
    ``start_step`` / ``end_step``); a number is applied at once, capped by the usable cores.
    Off the CPU nothing is set and None is returned.
    """
    if device.type != "cpu":
        return None
    if threads is None:
        return ThreadTuner()
    torch.set_num_threads(max(1, min(threads, usable_cores())))
    return None
