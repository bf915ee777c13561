"""Training and auto-segmenting from the GUI: progress, a responsive window, stop, table refresh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from qtpy.QtCore import QTimer

from cytoreview.workflows.segmentation import SegTrainRequest
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import make_project

pytestmark = pytest.mark.gui

#: A training run small enough for a test: 64 px input, resnet18, one step per epoch.
TINY = {"encoder": "resnet18", "input_size": 64, "batch_size": 8, "lr": 1e-3,
        "time_budget_min": 2.0, "device": "cpu"}  # fmt: skip


@pytest.fixture
def painted_workbench(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    project = make_project(tmp_path, n=8, painted=5)
    viewer = make_napari_viewer(show=True)  # shown: the run's screenshot shows real curves
    viewer.window._qt_window.resize(1600, 1000)
    wb = build_workbench(viewer, project.root, actor="tester")
    wb.synth = project
    yield wb
    wb.close()


class TickCounter:
    """A GUI-thread timer: if it keeps ticking, the event loop is not blocked."""

    def __init__(self, interval_ms: int = 20) -> None:
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.ticks += 1


def save_screenshot(wb, qtbot, name: str) -> None:
    """Keep a picture of the window in $CYTOREVIEW_SHOTS_DIR (for a person to look at)."""
    folder = os.environ.get("CYTOREVIEW_SHOTS_DIR")
    if folder:
        qtbot.wait(100)
        wb.viewer.window._qt_window.grab().save(str(Path(folder) / name))


def statuses(wb) -> dict[str, str]:
    model = wb.project_panel.model
    return {model.row(i).name: model.row(i).status for i in range(model.rowCount())}


def test_training_reports_progress_then_auto_segment_fills_the_table(painted_workbench,
                                                                     qtbot) -> None:  # fmt: skip
    wb = painted_workbench
    panel = wb.train_panel
    assert not panel.segment_button.isEnabled()  # no model yet
    counter = TickCounter()
    ticks_at_events = []
    events = []

    def on_progress(event) -> None:
        events.append(event)
        ticks_at_events.append(counter.ticks)

    panel.runner.progress.connect(on_progress)
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_training(SegTrainRequest(epochs=2, **TINY))
        assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    report = panel.last_training
    assert report is not None and report.status == "finished", panel.log_view.toPlainText()
    assert len(report.history) == 2 and report.n_train + report.n_val == 5
    stages = [e.stage for e in events]
    assert {"prepare", "train", "epoch", "export"} <= set(stages)
    # The live curves got one point per epoch, with the losses and per-class IoU.
    assert [h["epoch"] for h in panel.history] == [1.0, 2.0]
    assert {"train_loss", "val_loss", "iou_cytoplasm", "iou_nucleus"} <= set(panel.history[0])
    assert (
        len(panel.plot.loss_axes.lines) == 2 and len(panel.plot.iou_axes.lines[0].get_xdata()) == 2
    )
    assert panel.device_label.text().startswith("Device: CPU")
    # The event loop kept running while the worker trained: the timer ticked between the
    # first and the last progress event (how regularly is a benchmark's business).
    assert ticks_at_events[-1] > ticks_at_events[0], ticks_at_events
    assert panel.segment_button.isEnabled() and "Auto-segment now" in panel.log_view.toPlainText()
    wb.docks["train"].raise_()
    save_screenshot(wb, qtbot, "workbench-train.png")

    # Only the rows selected in the project table, when asked.
    project_panel = wb.project_panel
    project = wb.state.project
    unpainted = sorted(set(wb.synth.truth) - set(wb.synth.painted))
    panel.selected_only.setChecked(True)
    project_panel.table.clearSelection()
    assert not panel.start_segmentation(device="cpu")  # nothing selected: nothing runs
    assert "no image selected" in wb.messages[-1][1]
    chosen = project.image(unpainted[-1]).id
    project_panel.table.selectRow(project_panel.proxy.proxy_row_of(chosen))
    assert project_panel.selected_image_ids() == [chosen]
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    assert panel.last_segmentation.segmented == [unpainted[-1]]
    assert statuses(wb)[unpainted[0]] == "none"
    panel.selected_only.setChecked(False)

    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    seg = panel.last_segmentation
    assert seg is not None and len(seg.segmented) == 3, panel.log_view.toPlainText()
    table = statuses(wb)
    painted = set(wb.synth.painted)
    assert {table[n] for n in painted} == {"manual"}  # a person's masks are left alone
    assert {table[n] for n in set(table) - painted} == {"auto"}
    # Again with test-time augmentation from the panel's check box: new auto versions.
    panel.tta_choice.setCurrentText("on")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    assert "(8 views each)" in panel.log_view.toPlainText()
    assert panel.last_segmentation is not seg and len(panel.last_segmentation.segmented) == 3
    auto_image = sorted(set(table) - painted)[0]
    assert len(wb.state.project.mask_versions(wb.state.project.image(auto_image).id)) == 2
    wb.state.open_image(wb.state.project.image(auto_image).id)
    assert wb.viewer.layers["mask"].data.any()  # the auto mask is shown for correction
    assert "auto" in wb.annotate_panel.title.text()
    wb.docks["annotate"].raise_()
    save_screenshot(wb, qtbot, "workbench-after-auto-segment.png")
    counter.timer.stop()


def test_training_can_be_stopped_while_the_window_stays_responsive(painted_workbench,
                                                                   qtbot) -> None:  # fmt: skip
    wb = painted_workbench
    panel = wb.train_panel
    counter = TickCounter()
    steps = []
    panel.runner.progress.connect(lambda e: steps.append(e) if e.stage == "train" else None)
    # One image per step, so the stop lands inside an epoch (nothing to validate or export).
    panel.start_training(SegTrainRequest(epochs=500, **{**TINY, "batch_size": 1}))
    qtbot.waitUntil(lambda: any(e.step >= 1 for e in steps), timeout=PATIENCE_MS)
    # The window's event loop runs while the worker trains (its regularity: a benchmark).
    ticks = counter.ticks
    qtbot.waitUntil(lambda: counter.ticks > ticks + 5, timeout=PATIENCE_MS)
    assert panel.runner.is_running
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.stop()
    report = panel.last_training
    assert report is not None and report.status == "cancelled"
    assert report.stop_reason == "cancelled" and len(report.history) < 500
    assert panel.eta_label.text() == "stopped" and panel.start_button.isEnabled()
    # Only whole epochs are in the history (the one the stop interrupted is not validated),
    # however many a slow GUI thread let pass before the stop arrived.
    assert [h.epoch for h in report.history] == list(range(1, len(report.history) + 1))
    assert (report.best is None) == (report.history == [])
    counter.timer.stop()


def test_not_enough_painted_masks_is_reported_not_raised(workbench, qtbot) -> None:
    panel = workbench.train_panel
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.start_training(SegTrainRequest(epochs=1, **TINY))
    assert "training needs at least 2" in panel.log_view.toPlainText()
    assert any(level == "error" for level, _ in workbench.messages)
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
