"""Reproducible, stratified picks of images (the seed set a pathologist paints by hand)."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """An image that may be picked: its id, its class and a stable key (the content hash)."""

    id: int
    class_label: str
    key: str


def stratified_pick(
    candidates: Sequence[Candidate],
    per_class: int,
    seed: int = 0,
    keep: Iterable[int] = (),
) -> dict[str, list[int]]:
    """Pick up to ``per_class`` images of every class, reproducibly.

    Parameters
    ----------
    candidates
        Labelled images to choose from.
    per_class
        Target number per class; a class with fewer images gives all it has.
    seed
        The same seed and candidates give the same pick, whatever their order.
    keep
        Ids that stay in the pick whatever the seed (images already painted: a person's work
        is never dropped from the seed set); they count towards the quota.

    Returns
    -------
    dict
        Class name to the sorted ids picked.
    """
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    kept = set(keep)
    by_class: dict[str, list[Candidate]] = defaultdict(list)
    for cand in candidates:
        by_class[cand.class_label].append(cand)
    picked: dict[str, list[int]] = {}
    for label, members in sorted(by_class.items()):
        # Sorting by content hash makes the pick independent of import order and of file names.
        members = sorted(members, key=lambda c: c.key)
        chosen = [c.id for c in members if c.id in kept]
        # One stream per class (seeded by its name) so adding a class leaves the others' picks
        # unchanged.
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        target = max(per_class, len(chosen))
        for index in rng.permutation(len(members)):
            if len(chosen) >= target:
                break
            if members[index].id not in kept:
                chosen.append(members[index].id)
        picked[label] = sorted(chosen)
    return picked


def stratified_split(
    labels: Sequence[str | None], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Split indices into train and validation sets with the same class mix.

    Every class with at least two members gives at least one validation image and keeps at
    least one for training; a class with a single member trains only. Unlabelled items form
    their own stratum.

    Returns
    -------
    tuple of lists
        Sorted train indices and sorted validation indices.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    strata: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        strata["" if label is None else label].append(index)
    train: list[int] = []
    val: list[int] = []
    for label, members in sorted(strata.items()):
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        shuffled = [members[i] for i in rng.permutation(len(members))]
        n_val = (
            0
            if len(members) < 2
            else min(len(members) - 1, max(1, round(val_fraction * len(members))))
        )
        val.extend(shuffled[:n_val])
        train.extend(shuffled[n_val:])
    return sorted(train), sorted(val)
