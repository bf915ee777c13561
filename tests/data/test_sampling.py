"""Seed-set picking: stratified, reproducible, order-independent, keeps painted images."""

from __future__ import annotations

import random

from cytoreview.data.sampling import Candidate, stratified_pick


def _pool() -> list[Candidate]:
    sizes = {"NILM": 30, "LSIL": 12, "HSIL": 3}
    out, k = [], 0
    for label, n in sizes.items():
        for _ in range(n):
            out.append(Candidate(k, label, f"{(k * 7919) % 1000:04d}-{k}"))
            k += 1
    return out


def test_quota_per_class_and_shortfall() -> None:
    picked = stratified_pick(_pool(), per_class=5, seed=1)
    assert {k: len(v) for k, v in picked.items()} == {"NILM": 5, "LSIL": 5, "HSIL": 3}
    labels = {c.id: c.class_label for c in _pool()}
    assert all(labels[i] == label for label, ids in picked.items() for i in ids)


def test_reproducible_and_order_independent() -> None:
    pool = _pool()
    shuffled = pool[:]
    random.Random(3).shuffle(shuffled)
    assert stratified_pick(pool, 5, seed=7) == stratified_pick(shuffled, 5, seed=7)
    assert stratified_pick(pool, 5, seed=7) != stratified_pick(pool, 5, seed=8)


def test_adding_a_class_leaves_other_picks_alone() -> None:
    pool = _pool()
    extra = [*pool, *(Candidate(100 + i, "ASC-US", f"z{i}") for i in range(9))]
    a, b = stratified_pick(pool, 4, seed=2), stratified_pick(extra, 4, seed=2)
    assert all(a[k] == b[k] for k in a) and len(b["ASC-US"]) == 4


def test_kept_images_stay_and_count() -> None:
    pool = _pool()
    keep = {0, 1, 2, 3, 4, 5, 6}  # seven painted NILM images, more than the quota
    picked = stratified_pick(pool, 5, seed=0, keep=keep)
    assert set(picked["NILM"]) == keep
    two = stratified_pick(pool, 5, seed=0, keep={0, 1})
    assert {0, 1} <= set(two["NILM"]) and len(two["NILM"]) == 5
