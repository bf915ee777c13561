"""Batches for training: a seeded order per epoch, augmentation off the training thread.

Augmenting (affine warps, colour jitter) on the thread that runs the network adds its time to
every step. A DataLoader worker process does it for the next batches while the current one
trains. Starting a worker costs seconds (a fresh interpreter imports torch: *spawn*, because
forking a process that runs Qt or other threads can deadlock the child), so short runs keep
augmentation in-process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cytoreview.training.runtime import usable_cores

#: A run with fewer training steps than this augments in-process (a worker's start-up, about
#: 3 s on two cores, would cost more than it saves).
MIN_STEPS_FOR_WORKER = 400


class EpochBatches(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` keys: a new seeded shuffle each epoch (set by the caller).

    The epoch travels inside each key, so a worker process draws exactly the augmentation the
    main process would (see :class:`~cytoreview.data.datasets.SegmentationDataset`): results do
    not depend on the number of workers.

    Shuffled (training) batches are even: the epoch's images are split into the whole number of
    batches nearest ``n / batch_size``, of sizes that differ by at most one, so every image is
    seen each epoch and no batch is a remainder. 65 seed cells in batches of 8 were eight
    batches of 8 and one of a single cell: a step that costs as much as a full one (the
    optimiser and the weight average touch every weight) and whose batch-norm statistics come
    from one image. They are now seven batches of 8 and one of 9. Unshuffled (validation)
    batches are plain slices of ``batch_size``.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, *, shuffle: bool = True) -> None:
        self.n, self.batch_size, self.seed, self.shuffle = n, max(1, batch_size), seed, shuffle
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration gives."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return max(1, round(self.n / self.batch_size)) if self.n else 0
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if not self.shuffle:
            for start in range(0, self.n, self.batch_size):
                yield [(self.epoch, i) for i in range(start, min(start + self.batch_size, self.n))]
            return
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for batch in np.array_split(order, len(self)) if self.n else ():
            yield [(self.epoch, int(i)) for i in batch]


def _quiet_worker(_: int) -> None:
    """A worker augments with one thread: its cores belong to the training threads."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def loader_workers(total_steps: int, requested: int | None = None) -> int:
    """Worker processes for a run: ``requested``, else 1 or 0.

    One when the run is long enough and the machine has a core to spare for it, else none
    (augment in-process).
    """
    if requested is not None:
        return max(0, requested)
    return 1 if usable_cores() >= 2 and total_steps >= MIN_STEPS_FOR_WORKER else 0


def make_loader(
    dataset: torch.utils.data.Dataset,
    batches: EpochBatches,
    total_steps: int,
    workers: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``batches`` with :func:`loader_workers` persistent worker(s)."""
    n = loader_workers(total_steps, workers)
    extra: dict[str, Any] = {}
    if n:
        extra = {
            "persistent_workers": True,
            "prefetch_factor": 4,
            "multiprocessing_context": "spawn",
            "worker_init_fn": _quiet_worker,
        }
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=n, **extra)
