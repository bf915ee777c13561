"""Fixtures of the GUI tests: a tiny synthetic project and a workbench on napari's test viewer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic import synth_dataset
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.importing import import_images
from tests.conftest import run_job, write_rgb_png

#: Test delay of the autosave debounce (the product's default is 800 ms).
TEST_DELAY_MS = 150


@dataclass
class SynthProject:
    """A closed project folder and the synthetic truth of its images."""

    root: Path
    truth: dict[str, np.ndarray]  # exact masks by image name
    painted: list[str]  # images given a manual mask (the truth)


def make_project(root: Path, n: int = 8, painted: int = 0, seed: int = 1) -> SynthProject:
    """``n`` synthetic cells (64-96 px, classes in turn) imported; ``painted`` get manual masks."""
    truth = {}
    for name, sample in synth_dataset(n, seed=seed, size_range=(64, 96)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        truth[name] = sample.mask
    project = Project.init(root / "proj", actor="setup")
    try:
        run_job(import_images(project, root / "src", actor="setup"))
        names = sorted(truth)[:painted]
        for name in names:
            project.save_mask(project.image(name).id, truth[name], Provenance.MANUAL,
                              actor="setup")  # fmt: skip
    finally:
        project.close()
    return SynthProject(root / "proj", truth, names)


@pytest.fixture
def synth_project(tmp_path: Path) -> SynthProject:
    return make_project(tmp_path)


@pytest.fixture
def workbench(make_napari_viewer, synth_project: SynthProject):
    from cytoreview.gui.app import build_workbench

    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth_project.root, actor="tester",
                         autosave_delay_ms=TEST_DELAY_MS)  # fmt: skip
    wb.synth = synth_project
    yield wb
    wb.close()


def install_plugins(*targets: str):
    """Make the built-in methods and the plugins at ``targets`` ("module:attr") the catalog.

    As if they were installed, through the same discovery code; undo with ``reset_catalog()``.
    """
    from importlib.metadata import EntryPoint

    from cytoreview.plugin_api import ENTRY_POINT_GROUP, reset_catalog
    from cytoreview.plugin_api.discovery import discover

    found = discover([EntryPoint(t.partition(":")[0], t, ENTRY_POINT_GROUP) for t in targets])
    assert not found.broken, found.broken
    reset_catalog(found)
    return found


@pytest.fixture
def test_plugins():
    """The sample plugin (a mask generator) and the form-test methods, for one test."""
    from cytoreview.plugin_api import reset_catalog

    yield install_plugins("tests.plugins.sample_plugin:PLUGIN", "tests.plugins.form_methods:PLUGIN")
    reset_catalog()
