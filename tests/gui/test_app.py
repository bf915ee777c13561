"""The workbench window: dock registry, shortcuts, screenshots, and ``launch`` under Xvfb."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication, QLabel

from cytoreview.errors import ProjectNotFoundError
from cytoreview.gui import app
from cytoreview.gui.shortcuts import WINDOW_SHORTCUTS, shortcut_help

pytestmark = pytest.mark.gui


def test_docks_come_from_the_registry(make_napari_viewer, monkeypatch, synth_project) -> None:
    monkeypatch.setattr(app, "_DOCKS", dict(app._DOCKS))  # registrations stay in this test
    builtin = ["project", "annotate", "train", "classifier", "review", "teach", "export", "help"]
    assert [d.key for d in app.registered_docks()] == builtin
    made = []

    def extra_panel(wb: app.Workbench) -> QLabel:
        made.append(wb.project_panel)  # later docks see the earlier panels
        return QLabel("extra")

    app.register_dock(app.DockSpec("extra", "Extra", extra_panel, tabify=True, order=90))
    with pytest.raises(ValueError, match="already registered"):
        app.register_dock(app.DockSpec("extra", "Extra", extra_panel))
    wb = app.build_workbench(make_napari_viewer(), synth_project.root, actor="t")
    assert set(wb.docks) == {*builtin, "extra"}
    assert made == [wb.project_panel] and wb.panels["extra"].text() == "extra"
    assert wb.viewer.title == "CytoReview"
    wb.close()
    wb.close()  # idempotent
    assert wb.state.project is None


def test_the_tab_in_front_sets_its_groups_height(make_napari_viewer, qtbot, synth_project) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    wb = app.build_workbench(viewer, synth_project.root, actor="t")
    project_dock = wb.docks["project"]

    def share(key: str) -> float:
        group = wb.docks[key].height()  # the tab in front of the group under the table
        return group / (group + project_dock.height())

    qtbot.wait(100)
    wb.docks["review"].raise_()
    qtbot.waitUntil(lambda: share("review") > 0.55, timeout=3000)  # review: 9 of 15
    wb.docks["annotate"].raise_()
    qtbot.waitUntil(lambda: share("annotate") < 0.5, timeout=3000)  # annotate: 5 of 11
    wb.close()


def test_shortcut_table_lists_every_key() -> None:
    text = shortcut_help()
    for shortcut in WINDOW_SHORTCUTS:
        for key in shortcut.keys:
            assert key in text
    assert "Control-z" in text and "polygon" in text


def test_screenshots_of_each_panel(make_napari_viewer, qtbot, tmp_path) -> None:
    """Grab the window with each panel in front (kept in $CYTOREVIEW_SHOTS_DIR if set)."""
    from tests.gui.conftest import make_project

    synth = make_project(tmp_path, n=12, painted=5)
    out = Path(os.environ.get("CYTOREVIEW_SHOTS_DIR", tmp_path / "shots"))
    out.mkdir(parents=True, exist_ok=True)
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    wb = app.build_workbench(viewer, synth.root, actor="t", autosave_delay_ms=60_000)
    wb.project_panel.pick_seeds(2)
    wb.state.open_image(wb.state.project.image(sorted(synth.truth)[6]).id)  # not painted yet
    wb.annotate_panel.apply_tool("initial")
    assert wb.autosave.is_pending()  # the debounce (60 s here) has not fired
    qtbot.wait(200)
    shots = {}
    for key in ("annotate",):
        wb.docks[key].raise_()
        qtbot.wait(200)
        path = out / f"workbench-{key}.png"
        assert window.grab().save(str(path))
        shots[key] = path
    # Switching to the training tab hides the annotate panel, which saves at once.
    image_id = wb.annotate_panel.image_id
    wb.docks["train"].raise_()
    qtbot.waitUntil(lambda: not wb.autosave.is_pending(), timeout=500)
    assert len(wb.state.project.mask_versions(image_id)) == 1
    # Closing the annotate dock saves too.
    wb.docks["annotate"].raise_()
    wb.viewer.layers["mask"].paint((3, 3), 2)  # one dab of nucleus
    assert wb.autosave.is_pending()
    wb.docks["annotate"].close()
    assert not wb.autosave.is_pending()
    assert len(wb.state.project.mask_versions(image_id)) == 2
    for path in shots.values():
        image = cv2.imread(str(path))
        assert image is not None and image.shape[:2] == (1000, 1600)
        assert np.std(image) > 20  # not a blank window
    wb.close()


def test_launch_runs_the_window_until_it_closes(qtbot, synth_project) -> None:
    import napari
    from napari._qt.qt_viewer import QtViewer

    seen: dict[str, object] = {}

    def look_and_close() -> None:
        viewer = napari.current_viewer()
        seen["title"] = viewer.title
        seen["docks"] = sorted(viewer.window.dock_widgets)
        viewer.close()

    def safety() -> None:  # never hang the test run
        seen["forced"] = True
        QApplication.quit()

    QTimer.singleShot(1500, look_and_close)
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(safety)
    guard.start(30_000)
    assert app.launch(synth_project.root) == 0
    guard.stop()
    assert "forced" not in seen
    assert seen["title"] == "CytoReview"
    assert {"Project", "Annotate", "Train segmentation"} <= set(seen["docks"])
    gc.collect()
    assert not QtViewer._instances  # closed and collected: napari's test fixture checks this


def test_launch_refuses_a_folder_that_is_no_project(tmp_path) -> None:
    with pytest.raises(ProjectNotFoundError, match="not a CytoReview project"):
        app.launch(tmp_path)
