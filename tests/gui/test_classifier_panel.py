"""Classifier training in the worker (progress, live curves, stop, a ticking event loop), then
Classify all, and a heatmap computed on demand by the review panel; plus the keys' help."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cytoreview.models.classifier_blocks import TINY_BACKBONE
from cytoreview.storage.predictions import PredictionStore
from cytoreview.workflows import executors
from cytoreview.workflows.classification import ClsTrainRequest
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import TEST_DELAY_MS, make_project
from tests.gui.test_train_panel import TickCounter

pytestmark = pytest.mark.gui

#: A tiny image-only classifier: 64 px input, two images per step so an epoch has steps.
TINY_CLS = {"arch": "image-only", "backbone": TINY_BACKBONE, "mask_backbone": TINY_BACKBONE,
            "input_size": 64, "batch_size": 2, "lr": 1e-3, "device": "cpu"}  # fmt: skip


@pytest.fixture
def cls_wb(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    synth = make_project(tmp_path, n=8, painted=8)
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth.root, actor="tester", autosave_delay_ms=TEST_DELAY_MS)
    yield wb
    wb.close()


def test_training_stops_then_classify_and_explain(cls_wb, qtbot, monkeypatch) -> None:
    wb = cls_wb
    panel = wb.panels["classifier"]
    review = wb.panels["review"]
    assert not panel.classify_button.isEnabled()  # no classifier yet
    counter = TickCounter()
    events = []
    panel.runner.progress.connect(events.append)
    assert panel.start_training(ClsTrainRequest(epochs=300, patience=300, **TINY_CLS))
    assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    # Two epochs go by (live curves), then Stop ends the run mid-way.
    qtbot.waitUntil(lambda: len(panel.history) >= 2, timeout=PATIENCE_MS)
    # The event loop keeps ticking while the worker trains (a 20 ms timer; how regularly is
    # measured by bench_gui_responsiveness.py, not here).
    before = counter.ticks
    qtbot.waitUntil(lambda: counter.ticks - before >= 10, timeout=PATIENCE_MS)
    assert panel.runner.is_running
    steps = [e for e in events if e.stage == "train" and e.total]
    assert steps and steps[-1].total > steps[0].step  # progress with a known total
    assert "ETA" in panel.eta_label.text() or panel.eta_label.text().startswith("train")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.stop()
    report = panel.last_report
    assert report.status == "cancelled" and 2 <= len(report.history) < 300
    assert [h["epoch"] for h in panel.history[:2]] == [1.0, 2.0]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(panel.history[0])
    assert len(panel.plot.loss_axes.lines) == 2
    assert len(panel.plot.acc_axes.lines[0].get_xdata()) == len(panel.history)
    assert panel.eta_label.text() == "stopped" and panel.classify_button.isEnabled()
    assert report.model_id in panel.model_label.text()

    # "Classify all" runs where the Train dock's Compute field says: a scheduler that does not
    # answer is one error line, and the dock stays usable.
    monkeypatch.setattr(executors, "COMPUTE", replace(executors.COMPUTE, connect_timeout_s=2.0))
    wb.train_panel.compute.setText("127.0.0.1:9")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.classify_all(device="cpu")
    level, text = wb.messages[-1]
    assert level == "error" and "Dask scheduler tcp://127.0.0.1:9 does not answer" in text
    wb.train_panel.compute.setText("none")  # this process
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.classify_all(device="cpu")
    project = wb.state.project
    preds = PredictionStore(project).latest_predictions("bethesda")
    assert len(preds) == 8 and {p.model_id for p in preds.values()} == {report.model_id}
    assert "8 image(s) classified" in panel.log_view.toPlainText()
    assert "on this process" in panel.log_view.toPlainText()
    # The review queue refreshed: every image now carries the model's call.
    assert all(it.pred_class is not None for it in review.items)
    table = wb.project_panel.model  # and so did the project table's prediction column
    assert all(table.row(i).prediction for i in range(table.rowCount()))

    # Heatmap on demand: no stored map, so the review panel explains in its worker.
    image_id = review.items[0].image_id
    wb.state.open_image(image_id)
    with qtbot.waitSignal(review.heatmap.shown, timeout=PATIENCE_MS):
        review.toggle_heatmap()
    layer = wb.viewer.layers["heatmap"]
    assert layer.data.shape == wb.viewer.layers["image"].data.shape[:2] and layer.visible
    assert float(layer.data.min()) >= 0.0 and float(layer.data.max()) <= 1.0
    stored = PredictionStore(project).heatmap_record(image_id)
    assert stored is not None and stored.model_id == report.model_id  # kept for next time
    counter.timer.stop()


def test_help_lists_every_shortcut(workbench) -> None:
    from cytoreview.gui.shortcuts import SHORTCUT_GROUPS

    table = workbench.panels["help"].table
    keys = {table.item(r, 1).text() for r in range(table.rowCount())}
    expected = {" / ".join(s.keys) for _, group in SHORTCUT_GROUPS for s in group}
    assert keys == expected and table.rowCount() == sum(len(g) for _, g in SHORTCUT_GROUPS)
    assert {"Alt+A", "Alt+S", "Alt+M", "1", "PgDown / ."} <= keys
