"""Herlev in a project, as the benchmarks need it (shared by the benchmarks).

The table ``herlev40/labels.csv`` names each image stem in ``id`` and its Bethesda class in
``bethesda``; the images stay in place (``copy=False``). The "painted" seed set is a stratified,
seeded pick whose true masks are imported as a pathologist's manual masks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from _drive import drain

from cytoreview.data.sampling import Candidate, stratified_pick
from cytoreview.storage.project import Project
from cytoreview.workflows.importing import import_images

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "herlev40"
_COLUMNS = {"path_column": "id", "class_column": "bethesda", "image_dir": DATA / "images"}


def import_herlev(project: Project) -> None:
    """Every Herlev image into ``project``, with its class, no mask."""
    drain(import_images(project, DATA / "labels.csv", actor="bench", copy=False, **_COLUMNS))


def seed_names(project: Project, seeds: int, split: int) -> set[str]:
    """The ``seeds`` images of a stratified pick (``split`` seeds the pick)."""
    images = project.images()
    per_class = -(-seeds // len({im.class_label for im in images}))
    picks = stratified_pick(
        [Candidate(im.id, im.class_label, im.sha256) for im in images], per_class, split
    )
    ids = set(sorted(i for v in picks.values() for i in v)[:seeds])
    return {im.name for im in images if im.id in ids}


def paint(project: Project, work: Path, names: set[str]) -> None:
    """Import the true masks of ``names`` as manual masks (the second pass adds only masks)."""
    masks = work / "painted"
    masks.mkdir()
    for name in names:
        shutil.copy(DATA / "masks" / f"{name}.png", masks / f"{name}.png")
    drain(import_images(project, DATA / "labels.csv", actor="pathologist", masks_dir=masks,
                        copy=False, **_COLUMNS))  # fmt: skip
