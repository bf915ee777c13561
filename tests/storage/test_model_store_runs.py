"""Finding the training run that made a model."""

from __future__ import annotations

from pathlib import Path

from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project


def test_run_of_gives_the_newest_run_of_that_model_only(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "proj", actor="t")
    try:
        store = ModelStore(project)
        first = store.new_model_id("cls", "a")
        other = store.new_model_id("seg", "b")
        store.start_run("classification-bethesda", first, {"try": 1}, actor="t")
        store.start_run("segmentation", other, {"try": 2}, actor="t")
        newest = store.start_run("classification-bethesda", first, {"try": 3}, actor="t")
        run = store.run_of(first)
        assert run is not None and run.id == newest and run.config["try"] == 3
        assert store.run_of(other).config["try"] == 2
        assert store.run_of("cls-none") is None
    finally:
        project.close()
