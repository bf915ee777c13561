"""Training batches: a seeded order per epoch, the same with or without a worker process."""

from __future__ import annotations

import numpy as np
import torch

from cytoreview.data.datasets import SegmentationDataset
from cytoreview.data.transforms import AugmentConfig
from cytoreview.training.loader import (
    MIN_STEPS_FOR_WORKER,
    EpochBatches,
    loader_workers,
    make_loader,
)
from tests.conftest import cell_image


def test_epoch_batches_are_seeded_per_epoch_and_cover_every_sample() -> None:
    batches = EpochBatches(11, 4, seed=3)
    assert len(batches) == 3
    first = list(batches)
    assert [len(b) for b in first] == [4, 4, 3]
    assert sorted(i for b in first for _, i in b) == list(range(11))
    batches = EpochBatches(10, 4, seed=3)
    first = list(batches)
    assert sorted(i for b in first for _, i in b) == list(range(10))
    assert all(e == 1 for b in first for e, _ in b)
    assert list(batches) == first  # same epoch, same order
    batches.set_epoch(2)
    second = list(batches)
    assert [i for b in second for _, i in b] != [i for b in first for _, i in b]
    assert all(e == 2 for b in second for e, _ in b)
    plain = EpochBatches(5, 2, shuffle=False)
    assert [i for b in plain for _, i in b] == [0, 1, 2, 3, 4]
    assert [len(b) for b in plain] == [2, 2, 1]


def test_training_batches_are_even_and_leave_no_remainder() -> None:
    """65 seed cells in batches of 8: eight batches (one of 9), not a ninth of one cell."""
    sizes = {
        (n, size): [len(b) for b in EpochBatches(n, size, seed=1)]
        for n, size in ((65, 8), (70, 8), (12, 8), (4, 8), (16, 8), (0, 8))
    }
    assert sorted(sizes[65, 8]) == [8] * 7 + [9]
    assert sorted(sizes[70, 8]) == [7, 7] + [8] * 7
    assert sizes[12, 8] == [6, 6]
    assert sizes[4, 8] == [4]  # fewer images than a batch: one batch of them all
    assert sizes[16, 8] == [8, 8]
    assert sizes[0, 8] == [] and len(EpochBatches(0, 8)) == 0
    for n in range(1, 40):
        batches = EpochBatches(n, 8, seed=n)
        keys = [i for b in batches for _, i in b]
        assert sorted(keys) == list(range(n)) and len(list(batches)) == len(batches)


def test_workers_only_for_runs_long_enough() -> None:
    assert loader_workers(10) == 0
    assert loader_workers(10, requested=2) == 2
    assert loader_workers(MIN_STEPS_FOR_WORKER) in (0, 1)  # 1 where a core is to spare


def test_a_worker_process_gives_the_same_augmented_batches() -> None:
    pairs = [cell_image(40, 48, seed=s) for s in range(6)]
    dataset = SegmentationDataset([p[0] for p in pairs], [p[1] for p in pairs], 64,
                                  AugmentConfig(), seed=5)  # fmt: skip
    got = {}
    for workers in (0, 1):
        batches = EpochBatches(len(dataset), 4, seed=5)
        loader = make_loader(dataset, batches, 0, workers)
        epochs = []
        for epoch in (1, 2):
            batches.set_epoch(epoch)
            epochs.append([(x.clone(), y.clone()) for x, y in loader])
        got[workers] = epochs
        del loader
    for a, b in zip(got[0], got[1], strict=True):
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(got[0][0][0][0], got[0][1][0][0])  # epochs differ
    assert np.isfinite(got[0][0][0][0].numpy()).all()
