"""Two processes on one project: no corruption, and a clear message when it stays locked."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import ProjectLockedError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.types import Provenance
from tests.conftest import PATIENCE_S, cell_image, write_rgb_png


def _writer(root: str, image_id: int, author: str, n: int) -> None:
    with Project.open(root, busy_timeout_s=30) as project:
        for i in range(n):
            mask = np.zeros((40, 48), np.uint8)
            mask[: i + 1] = 1
            project.save_mask(image_id, mask, Provenance.CORRECTED, actor=author)


def _setup(tmp_path: Path) -> tuple[Path, int]:
    rgb, _ = cell_image()
    path = write_rgb_png(tmp_path / "a.png", rgb)
    with Project.init(tmp_path / "proj", actor="t") as project:
        record = project.add_image(path, read_image(path).info, file_sha256(path), actor="t")
    return tmp_path / "proj", record.id


def test_two_processes_saving_at_once(tmp_path: Path) -> None:
    root, image_id = _setup(tmp_path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), image_id, f"p{k}", 8)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Project.open(root) as project:
        versions = project.mask_versions(image_id)
        assert [v.version for v in versions] == list(range(1, 17))
        assert {v.author for v in versions} == {"p0", "p1"}
        # Every version's file is intact and matches its checksum.
        assert all(project.read_mask_version(v) is not None for v in versions)
        assert project.catalog.query("PRAGMA integrity_check")[0][0] == "ok"
        assert len([e for e in project.audit_entries() if e.action == "save_mask"]) == 16


def test_locked_project_gives_clear_message(tmp_path: Path) -> None:
    root, image_id = _setup(tmp_path)
    blocker = sqlite3.connect(root / CATALOG_FILE, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with Project.open(root, busy_timeout_s=0.2) as project:
            # Reading still works while someone else writes (WAL).
            assert len(project.images()) == 1
            with pytest.raises(ProjectLockedError, match="another CytoReview process"):
                project.save_mask(image_id, np.zeros((40, 48), np.uint8), "manual", actor="x")
            assert project.mask_versions(image_id) == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _import_rounds(
    root: Path, folders: list[Path], barrier: threading.Barrier, errors: list[BaseException]
) -> None:
    """One importer: its own connection, one folder per round, all importers start together."""
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job

    try:
        with Project.open(root, busy_timeout_s=60) as project:
            for folder in folders:
                barrier.wait(timeout=PATIENCE_S)
                _, report = run_job(import_images(project, folder, actor=folder.name))
                if report.problems:
                    raise AssertionError(report.problems)
    except Exception as exc:  # noqa: BLE001 - handed to the test thread, which fails with it
        errors.append(exc)
        barrier.abort()


def test_concurrent_imports_of_same_named_files_never_swap_bytes(tmp_path: Path) -> None:
    """Two importers, same file names, different pixels, many rounds: every row keeps its bytes.

    Before the name was chosen and the copy published inside the write transaction, two
    importers picked the same name: one copy replaced the other's file (the catalogued hash no
    longer matched) or the second insert died with sqlite3.IntegrityError.
    """
    rounds, names, importers = 8, ("a", "b", "cell"), 2
    with Project.init(tmp_path / "proj", actor="t"):
        pass
    sources: dict[str, str] = {}  # sha256 -> source file
    plans: list[list[Path]] = []
    for k in range(importers):
        plan = []
        for r in range(rounds):
            folder = tmp_path / f"src{k}" / f"round{r}"
            for i, name in enumerate(names):
                rgb, _ = cell_image(seed=1000 * k + 10 * r + i)
                path = write_rgb_png(folder / f"{name}.png", rgb)
                sources[file_sha256(path)] = str(path)
            plan.append(folder)
        plans.append(plan)
    barrier = threading.Barrier(importers)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_import_rounds, args=(tmp_path / "proj", plan, barrier, errors))
        for plan in plans
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE_S)
    assert not errors, errors
    with Project.open(tmp_path / "proj") as project:
        images = project.images()
        assert len(images) == importers * rounds * len(names) == len(sources)
        assert {im.sha256 for im in images} == set(sources)
        for image in images:  # the file under each name holds the bytes its row says
            assert file_sha256(project.image_path(image)) == image.sha256, image.name
        stored = sorted(p.name for p in (project.root / "images").iterdir())
        assert len(stored) == len(images) and not [p for p in stored if p.endswith(".partial")]
        assert project.catalog.query("PRAGMA integrity_check")[0][0] == "ok"
