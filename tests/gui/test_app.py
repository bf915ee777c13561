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

import cytoreview
from cytoreview.errors import ProjectNotFoundError
from cytoreview.gui import app
from cytoreview.gui.shortcuts import WINDOW_SHORTCUTS, shortcut_help
from tests.conftest import PATIENCE_MS

pytestmark = pytest.mark.gui


def test_docks_come_from_the_registry(make_napari_viewer, monkeypatch, synth_project) -> None:
    monkeypatch.setattr(app, "_DOCKS", dict(app._DOCKS))  # registrations stay in this test
    builtin = [
        "project",
        "annotate",
        "train",
        "classifier",
        "review",
        "teach",
        "export",
        "slides",
        "help",
    ]
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
    assert wb.viewer.title == f"CytoReview {cytoreview.__version__}"
    assert not wb.window.windowIcon().isNull()  # CytoReview's icon, not napari's
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
    qtbot.waitUntil(lambda: share("review") > 0.55, timeout=PATIENCE_MS)  # review: 9 of 15
    wb.docks["annotate"].raise_()
    qtbot.waitUntil(lambda: share("annotate") < 0.5, timeout=PATIENCE_MS)  # annotate: 5 of 11
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
    qtbot.waitUntil(lambda: not wb.autosave.is_pending(), timeout=PATIENCE_MS)
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


def _launch_with(monkeypatch, project_root, *, after_build=None, guard_ms=300_000):
    """Run ``app.launch`` on ``project_root``; return (exit status, workbenches built, forced).

    ``after_build(workbench)`` runs right after ``build_workbench`` returned (before the event
    loop). A guard timer quits the event loop if the window never closes, so a fault fails the
    test instead of hanging the run; its limit is far above any start-up, as it only bounds a
    hang.
    """
    built: list[app.Workbench] = []
    real_build = app.build_workbench

    def build(*args, **kwargs):
        wb = real_build(*args, **kwargs)
        built.append(wb)
        if after_build is not None:
            after_build(wb)
        return wb

    monkeypatch.setattr(app, "build_workbench", build)
    forced: list[bool] = []
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(lambda: (forced.append(True), QApplication.quit()))
    guard.start(guard_ms)
    try:
        status = app.launch(project_root)
    finally:
        guard.stop()
    return status, built, forced


def _no_viewer_left() -> bool:
    from napari._qt.qt_viewer import QtViewer

    gc.collect()
    return not QtViewer._instances  # closed and collected: napari's test fixture checks this


def test_launch_runs_the_window_until_it_closes(qtbot, monkeypatch, synth_project) -> None:
    import napari

    seen: dict[str, object] = {}

    def when_ready(wb: app.Workbench) -> None:
        # Look and close once the window runs its event loop with everything in place; the
        # poll waits for that state, however slow the machine.
        poll = QTimer(wb.window)

        def look_and_close() -> None:
            if not wb.ready or wb.state.project is None:
                return
            poll.stop()
            viewer = napari.current_viewer()
            seen["title"] = viewer.title
            seen["docks"] = sorted(viewer.window.dock_widgets)
            viewer.close()

        poll.timeout.connect(look_and_close)
        poll.start(20)

    status, built, forced = _launch_with(monkeypatch, synth_project.root, after_build=when_ready)
    assert status == 0 and not forced
    assert seen["title"] == f"CytoReview {cytoreview.__version__}"
    assert {"Project", "Annotate", "Train segmentation"} <= set(seen["docks"])
    assert built[0].closed and built[0].state.project is None
    assert _no_viewer_left()


def _close_viewer(wb: app.Workbench) -> None:
    wb.viewer.close()  # napari's close (File > Close Window, or a script)


def _close_qt_window(wb: app.Workbench) -> None:
    wb.window.close()  # what the window's close button does


# Where the close comes during start-up: (dock order of a probe dock, how it closes, when).
# "now" closes inside the probe dock's factory; "posted" posts the close to the event queue,
# so that it arrives in the middle of a later step (the layout pass, the project opening).
_START_UP_POINTS = {
    "before-first-dock": (5, _close_viewer, "now"),
    "between-docks": (35, _close_qt_window, "now"),
    "after-the-last-dock": (99, _close_viewer, "now"),
    "in-the-layout-pass": (99, _close_viewer, "posted"),
    "in-the-layout-pass-by-the-button": (99, _close_qt_window, "posted"),
}


@pytest.mark.parametrize("point", [*_START_UP_POINTS, "before-build", "after-build"])
def test_closing_the_window_at_any_point_of_start_up_is_safe(
    qtbot, monkeypatch, tmp_path, point
) -> None:
    """The window closes before, during or after the docks are built: launch returns 0, no
    exception in any callback (pytest-qt fails the test on one), the project is closed and
    can be opened for writing again, and no viewer is left behind."""
    from cytoreview.storage.project import Project
    from tests.gui.conftest import make_project

    synth = make_project(tmp_path)
    monkeypatch.setattr(app, "_DOCKS", dict(app._DOCKS))
    after_build = None
    if point in _START_UP_POINTS:
        order, close, when = _START_UP_POINTS[point]

        def probe(wb: app.Workbench) -> QLabel:
            if when == "now":
                close(wb)
            else:
                QTimer.singleShot(0, lambda: close(wb))
            return QLabel("probe")

        app.register_dock(app.DockSpec("probe", "Probe", probe, order=order, tabify=True))
    elif point == "before-build":
        real_build = app.build_workbench

        def build_on_a_closed_window(viewer, *args, **kwargs):
            viewer.close()
            return real_build(viewer, *args, **kwargs)

        monkeypatch.setattr(app, "build_workbench", build_on_a_closed_window)
    else:  # after-build: the first thing the event loop does is the close

        def after_build(wb: app.Workbench) -> None:
            QTimer.singleShot(0, lambda: _close_viewer(wb))

    status, built, forced = _launch_with(monkeypatch, synth.root, after_build=after_build)
    assert status == 0 and not forced
    for wb in built:
        assert wb.closed and wb.state.project is None
        assert wb.ready == (point == "after-build")
    assert _no_viewer_left()
    project = Project.open(synth.root)  # not left locked or half-written
    try:
        project.set_seeds([project.images()[0].id], actor="t")
    finally:
        project.close()


def test_launch_refuses_a_folder_that_is_no_project(tmp_path) -> None:
    with pytest.raises(ProjectNotFoundError, match="not a CytoReview project"):
        app.launch(tmp_path)
